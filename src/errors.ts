/** An error caused by the caller's input (bad argument, malformed file): never a bug. */
export class InputError extends Error {
  override name = 'InputError';
}
