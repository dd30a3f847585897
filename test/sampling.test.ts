import { createHash } from 'node:crypto';
import seedrandom from 'seedrandom';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_N_SAMPLES,
  MAX_SAMPLE_COUNT,
  sampleDenseIndices,
  samplingSeed,
} from '../src/validation/sampling.js';

const sha256Hex = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

function expectValidSample(out: number[], count: number, nSamples: number): void {
  expect(out.length).toBe(Math.min(count, nSamples));
  for (let i = 0; i < out.length; i++) {
    expect(Number.isInteger(out[i])).toBe(true);
    expect(out[i]).toBeGreaterThanOrEqual(0);
    expect(out[i]).toBeLessThan(count);
    if (i > 0) expect(out[i]).toBeGreaterThan(out[i - 1]); // ascending ⇒ distinct
  }
}

function chiSquare(observed: number[], expectedEach: number): number {
  return observed.reduce((s, o) => s + (o - expectedEach) ** 2 / expectedEach, 0);
}

describe('samplingSeed', () => {
  it("is the hex SHA-256 of Gonka's colon-joined string", () => {
    expect(samplingSeed('vk', 'hash')).toBe(sha256Hex('vk:hash'));
    const s = samplingSeed('gonka1validatorpubkey', 'ABCDEF0123', 12345, 'Qwen/Qwen3-235B');
    expect(s).toBe(sha256Hex('gonka1validatorpubkey:ABCDEF0123:12345:Qwen/Qwen3-235B'));
    expect(s).toBe('0555820ba5746291d36fcb2b65d91f52cdc58451f71fb3b123c2285c19826f0b');
    expect(s).toMatch(/^[0-9a-f]{64}$/);
  });

  it('depends on every component', () => {
    const base = samplingSeed('vk', 'h1', 10, 'm');
    expect(samplingSeed('vk2', 'h1', 10, 'm')).not.toBe(base);
    expect(samplingSeed('vk', 'h2', 10, 'm')).not.toBe(base);
    expect(samplingSeed('vk', 'h1', 11, 'm')).not.toBe(base);
    expect(samplingSeed('vk', 'h1', 10, 'm2')).not.toBe(base);
    expect(samplingSeed('vk', 'h1', 10)).not.toBe(base);
  });

  it('rejects ambiguous or empty components', () => {
    expect(() => samplingSeed('a:b', 'h')).toThrow(/without ':'/);
    expect(() => samplingSeed('a', 'h:x')).toThrow(/without ':'/);
    expect(() => samplingSeed('', 'h')).toThrow(/non-empty/);
    expect(() => samplingSeed('a', 'h', '')).toThrow(/non-empty/);
    expect(() => samplingSeed('a', 'h', 1.5)).toThrow(/integer/);
  });
});

describe('sampleDenseIndices', () => {
  it('returns distinct, in-range, ascending indices, min(nSamples, count) of them', () => {
    for (const [count, n] of [[1, 1], [2, 1], [10, 3], [1000, 200], [201, 200], [1_000_000, 200], [2 ** 31, 500]]) {
      expectValidSample(sampleDenseIndices(`s-${count}-${n}`, count, n), count, n);
    }
    expect(DEFAULT_N_SAMPLES).toBe(200);
  });

  it('returns every index when count ≤ nSamples, and nothing for count 0 or nSamples 0', () => {
    expect(sampleDenseIndices('x', 5, 200)).toEqual([0, 1, 2, 3, 4]);
    expect(sampleDenseIndices('x', 200, 200)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(sampleDenseIndices('x', 0, 200)).toEqual([]);
    expect(sampleDenseIndices('x', 1000, 0)).toEqual([]);
  });

  it('is deterministic for a seed and differs between seeds', () => {
    const a = sampleDenseIndices('seed-a', 1_000_000, 200);
    expect(sampleDenseIndices('seed-a', 1_000_000, 200)).toEqual(a);
    const b = sampleDenseIndices('seed-b', 1_000_000, 200);
    expect(b).not.toEqual(a);
    const overlap = b.filter((x) => a.includes(x)).length;
    expect(overlap).toBeLessThan(5); // expected 0.04
  });

  it('pinned vector (guards against accidental changes of the sampling algorithm)', () => {
    const seed = samplingSeed('gonka1validatorpubkey', 'ABCDEF0123', 12345, 'Qwen/Qwen3-235B');
    expect(sampleDenseIndices(seed, 1_000_000, 12)).toEqual([
      69530, 86932, 167799, 342025, 422677, 448894, 593519, 633244, 738909, 839715, 890555, 951941,
    ]);
    expect(sampleDenseIndices('seed', 100, 10)).toEqual([3, 7, 16, 20, 22, 26, 29, 33, 43, 55]);
  });

  it('one sample is the first seedrandom 32-bit word reduced exactly (independent re-derivation)', () => {
    for (const seed of ['alpha', 'beta', 'gamma', 'delta']) {
      // count = 2^32: no rejection, the index is the word itself.
      const w = seedrandom(seed).int32() >>> 0;
      expect(sampleDenseIndices(seed, 2 ** 32, 1)).toEqual([w]);
      // count = 1000: rejection only above floor(2^32/1000)·1000.
      const rng = seedrandom(seed);
      let u = rng.int32() >>> 0;
      while (u >= Math.floor(2 ** 32 / 1000) * 1000) u = rng.int32() >>> 0;
      expect(sampleDenseIndices(seed, 1000, 1)).toEqual([u % 1000]);
    }
  });

  it('is efficient: 10^4 samples out of 10^8 quickly, without arrays of size count', () => {
    const t0 = performance.now();
    const out = sampleDenseIndices('big', 100_000_000, 10_000);
    expect(performance.now() - t0).toBeLessThan(2000);
    expectValidSample(out, 100_000_000, 10_000);
    expectValidSample(sampleDenseIndices('max', MAX_SAMPLE_COUNT, 1000), MAX_SAMPLE_COUNT, 1000);
  });

  it('is roughly uniform: 100k draws over 100 buckets (chi-square, 99 dof)', () => {
    const count = 1_000_000;
    const buckets = new Array<number>(100).fill(0);
    for (let s = 0; s < 500; s++) {
      for (const i of sampleDenseIndices(`uniform-${s}`, count, 200)) buckets[Math.floor(i / (count / 100))]++;
    }
    // mean 99, sd 14; a biased sampler (e.g. one favouring low or high indices) lands far above.
    expect(chiSquare(buckets, 1000)).toBeLessThan(170);
  });

  it('is uniform over subsets (count 5, 2 samples: 10 subsets, 20k seeds)', () => {
    const freq = new Map<string, number>();
    for (let s = 0; s < 20_000; s++) {
      const key = sampleDenseIndices(`subset-${s}`, 5, 2).join(',');
      freq.set(key, (freq.get(key) ?? 0) + 1);
    }
    expect(freq.size).toBe(10);
    expect(chiSquare([...freq.values()], 2000)).toBeLessThan(35); // 9 dof, p ≈ 1e-4
  });

  it('has no modulo bias for counts near 2^32 (count = ⌊2/3·2^32⌋)', () => {
    const count = Math.floor((2 / 3) * 2 ** 32);
    let low = 0;
    let total = 0;
    for (let s = 0; s < 200; s++) {
      for (const i of sampleDenseIndices(`mod-${s}`, count, 500)) {
        if (i < count / 2) low++;
        total++;
      }
    }
    // Reducing a 32-bit word mod count without rejection would put 2/3 of draws in the lower half.
    expect(Math.abs(low / total - 0.5)).toBeLessThan(0.01); // sd 0.0016
  });

  it('rejects bad arguments', () => {
    expect(() => sampleDenseIndices('x', -1, 10)).toThrow(/count must be an integer/);
    expect(() => sampleDenseIndices('x', 1.5, 10)).toThrow(/count must be/);
    expect(() => sampleDenseIndices('x', MAX_SAMPLE_COUNT + 1, 10)).toThrow(/count must be/);
    expect(() => sampleDenseIndices('x', 10, -1)).toThrow(/nSamples must be/);
    expect(() => sampleDenseIndices('x', 10, NaN)).toThrow(/nSamples must be/);
    expect(() => sampleDenseIndices('', 10, 1)).toThrow(/seed must be a non-empty string/);
  });
});
