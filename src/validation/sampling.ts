// Validator-side sampling of dense leaf indices (SPEC §10).
//
// Gonka PoC v2 (research/gonka-poc.md §5.4, decentralized-api/poc/validator.go) seeds its sample
// with the first 8 bytes (big-endian) of SHA-256("{validatorPubKey}:{samplingBlockHash}:{pocHeight}
// :{modelId}") and draws 200 indices in [0, count) with Go's math/rand (lazy Fisher–Yates), where
// samplingBlockHash is the *current* block hash at validation time (a fresh hash the prover cannot
// predict when it commits). Go's math/rand generator is not reproduced here, so the indices are not
// bit-identical to Gonka's; nothing requires that (only the validator samples; the prover answers
// whatever indices it is asked for). The seed string keeps Gonka's colon-joined layout, and the
// draw uses seedrandom (ARC4) with Floyd's algorithm.
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import seedrandom from 'seedrandom';

/** Gonka's ValidationSampleSize / PocParams.validation_sample_size. */
export const DEFAULT_N_SAMPLES = 200;

/** Largest supported leaf count: dense indices are drawn from one 32-bit word. */
export const MAX_SAMPLE_COUNT = 2 ** 32;

/**
 * Seed for sampleDenseIndices: lowercase hex SHA-256 of the UTF-8 string
 * `${validatorKey}:${samplingHash}` followed by `:${c}` for each extra context component, i.e.
 * Gonka's "{validatorPubKey}:{samplingBlockHash}:{pocHeight}:{modelId}" when called as
 * samplingSeed(pubKey, freshBlockHash, pocHeight, modelId). Components must be non-empty and free of
 * ':' so that distinct inputs always give distinct strings.
 */
export function samplingSeed(
  validatorKey: string,
  samplingHash: string,
  ...context: Array<string | number>
): string {
  const parts: string[] = [validatorKey, samplingHash];
  for (const c of context) {
    if (typeof c === 'number') {
      if (!Number.isSafeInteger(c)) throw new RangeError(`samplingSeed: numeric context must be an integer, got ${c}`);
      parts.push(String(c));
    } else {
      parts.push(c);
    }
  }
  parts.forEach((s, i) => {
    if (typeof s !== 'string' || s.length === 0 || s.includes(':')) {
      throw new RangeError(`samplingSeed: component ${i} must be a non-empty string without ':', got ${JSON.stringify(s)}`);
    }
  });
  return bytesToHex(sha256(utf8ToBytes(parts.join(':'))));
}

/** Uniform integer in [0, m) for 1 ≤ m ≤ 2^32, exact (rejection on 32-bit words). */
function uniformBelow(rng: seedrandom.PRNG, m: number): number {
  const limit = Math.floor(MAX_SAMPLE_COUNT / m) * m; // largest multiple of m ≤ 2^32
  for (;;) {
    const u = rng.int32() >>> 0;
    if (u < limit) return u % m;
  }
}

/**
 * min(nSamples, count) distinct dense indices in [0, count), uniformly distributed over subsets,
 * deterministic for a seed, in ascending order. Robert Floyd's algorithm: O(nSamples) time and
 * memory whatever count is. count must be an integer in [0, 2^32], nSamples a non-negative integer.
 */
export function sampleDenseIndices(seed: string, count: number, nSamples: number): number[] {
  if (typeof seed !== 'string' || seed.length === 0) {
    throw new TypeError('sampleDenseIndices: seed must be a non-empty string');
  }
  if (!Number.isSafeInteger(count) || count < 0 || count > MAX_SAMPLE_COUNT) {
    throw new RangeError(`sampleDenseIndices: count must be an integer in [0, 2^32], got ${count}`);
  }
  if (!Number.isSafeInteger(nSamples) || nSamples < 0) {
    throw new RangeError(`sampleDenseIndices: nSamples must be a non-negative integer, got ${nSamples}`);
  }
  if (nSamples >= count) return Array.from({ length: count }, (_, i) => i);
  const rng = seedrandom(seed);
  const chosen = new Set<number>();
  for (let j = count - nSamples; j < count; j++) {
    const t = uniformBelow(rng, j + 1);
    chosen.add(chosen.has(t) ? j : t);
  }
  return Array.from(chosen).sort((a, b) => a - b);
}
