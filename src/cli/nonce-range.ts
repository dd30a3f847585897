import { InputError } from '../errors.js';

// Parses the --nonces argument: "A..B" (both ends included), "A,B,C", or a single nonce.
const INT32_MAX = 2 ** 31 - 1;

function parseNonce(text: string): number {
  const s = text.trim();
  if (!/^\d+$/.test(s)) throw new InputError(`nonce '${text}' is not a non-negative integer`);
  const n = Number(s);
  if (n > INT32_MAX) throw new InputError(`nonce ${s} exceeds the int32 range`);
  return n;
}

export const MAX_NONCES_PER_CALL = 10_000_000;

export function parseNonces(text: string): number[] {
  const range = /^\s*(\d+)\s*\.\.\s*(\d+)\s*$/.exec(text);
  if (range) {
    const a = parseNonce(range[1]);
    const b = parseNonce(range[2]);
    if (b < a) throw new InputError(`nonce range ${text} is empty (end before start)`);
    if (b - a + 1 > MAX_NONCES_PER_CALL) throw new InputError(`nonce range ${text} is larger than ${MAX_NONCES_PER_CALL}`);
    return Array.from({ length: b - a + 1 }, (_, i) => a + i);
  }
  const list = text.split(',').map(parseNonce);
  if (new Set(list).size !== list.length) throw new InputError(`nonce list ${text} repeats a nonce`);
  return list;
}
