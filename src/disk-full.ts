// A write that failed because the disk (or the user's quota) is full: not a bug and not bad
// input, but a condition that passes once space is freed.
export function isDiskFull(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export class DiskFullError extends Error {
  override name = 'DiskFullError';
}
