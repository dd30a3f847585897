import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import { describe, expect, it } from 'vitest';
import {
  haar,
  mm,
  normal,
  normalStrong,
  pick,
  reflect,
  seed32,
  sha256Words,
  uniform,
  unit,
} from '../src/seeds/rng.js';

const golden = JSON.parse(
  readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/conformance/rng.json'), 'utf8'),
);
const REL = 1e-5;

const f32Bits = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0];
const qString = (c: { block_hash: string; public_key: string; nonce: number }): string =>
  `${c.block_hash}_${c.public_key}_nonce_${c.nonce}`;

function expectRelClose(actual: ArrayLike<number>, expected: number[], label: string): void {
  expect(actual.length, label).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    if (!(err <= REL * Math.abs(expected[i]))) {
      throw new Error(`${label}[${i}]: got ${actual[i]}, want ${expected[i]} (rel err ${err / Math.abs(expected[i])})`);
    }
  }
}

const norm = (v: ArrayLike<number>): number => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));

function randomVector(rng: () => number, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => (rng() - 0.5) * 4);
}

describe('golden vectors (conformance/rng.json)', () => {
  it('seed32', () => {
    for (const c of golden.seed32) expect(seed32(c.string), JSON.stringify(c.string)).toBe(c.seed);
  });

  it('murmur', () => {
    for (const c of golden.murmur) {
      expect(c.keys.map((k: number) => mm(k, c.seed)), `seed ${c.seed}`).toEqual(c.hashes);
    }
  });

  it('uniform bit patterns', () => {
    for (const c of golden.uniform) {
      expect(Array.from(uniform(c.seed, c.n), f32Bits), `seed ${c.seed}`).toEqual(c.f32_bits);
    }
  });

  it('normal values and bit patterns (within transcendental ulps)', () => {
    for (const c of golden.normal) {
      const v = normal(c.seed, c.n);
      expectRelClose(v, c.values, `N(${c.seed}, ${c.n})`);
      // The reference's log/cos/sin are not correctly rounded, so allow a couple of ulps.
      v.forEach((x, i) => expect(Math.abs(f32Bits(x) - c.f32_bits[i]), `N(${c.seed}, ${c.n})[${i}] ulps`).toBeLessThanOrEqual(2));
    }
  });

  it('normal_strong', () => {
    for (const c of golden.normal_strong) expectRelClose(normalStrong(c.string, c.n), c.values, `N8(${c.string}, ${c.n})`);
  });

  it('pick', () => {
    for (const c of golden.pick) {
      expect(pick(seed32(`${qString(c)}_pick_${c.k}`), c.dim, c.k), `nonce ${c.nonce} dim ${c.dim}`).toEqual(
        c.indices_by_ascending_score,
      );
    }
  });

  it('householder vectors', () => {
    for (const c of golden.householder) expectRelClose(unit(normal(seed32(c.string), c.dim)), c.values, `${c.string} dim ${c.dim}`);
  });

  it('haar', () => {
    for (const c of golden.haar) expectRelClose(haar(qString(c), Float32Array.from(c.x)), c.y, `haar nonce ${c.nonce}`);
  });
});

describe('seed32 / sha256Words', () => {
  it('the first SHA-256 word is seed32', () => {
    for (const s of ['', 'abc', 'ünïcode_✓', 'x'.repeat(1000)]) {
      const w = sha256Words(s);
      expect(w.length).toBe(8);
      expect(w[0]).toBe(seed32(s));
    }
  });
});

describe('uniform / normal', () => {
  it('uniform values lie in [0, 1] and equal float32(mm)/2^32', () => {
    const u = uniform(0xdeadbeef, 1000);
    u.forEach((x, i) => {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(1);
      expect(x).toBe(Math.fround(mm(i, 0xdeadbeef)) / 2 ** 32);
    });
  });

  it('normal of odd n is the truncation of n + 1 (half/half layout)', () => {
    for (const n of [1, 7, 33, 101]) {
      expect(Array.from(normal(42, n))).toEqual(Array.from(normal(42, n + 1)).slice(0, n));
    }
  });

  it('normal sample statistics are standard', () => {
    const v = normal(7, 200_000);
    const mean = v.reduce((s, x) => s + x, 0) / v.length;
    const variance = v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1)).toBeLessThan(0.02);
    expect(v.every(Number.isFinite)).toBe(true);
  });

  it('normalStrong concatenates N segments seeded by the SHA-256 words', () => {
    const s = 'block_pub_nonce3';
    const words = sha256Words(s);
    for (const n of [1, 8, 9, 100, 257]) {
      const v = normalStrong(s, n);
      const seg = Math.ceil(n / 8);
      const expected: number[] = [];
      for (let t = 0; t < 8 && t * seg < n; t++) expected.push(...normal(words[t], Math.min(seg, n - t * seg)));
      expect(Array.from(v), `n ${n}`).toEqual(expected);
    }
  });

  it('rejects bad sizes and seeds', () => {
    expect(() => normal(1, -1)).toThrow(/n must be/);
    expect(() => uniform(1, 1.5)).toThrow(/n must be/);
    expect(() => uniform(-1, 4)).toThrow(/seed/);
    expect(() => normal(2 ** 32, 4)).toThrow(/seed/);
  });
});

describe('unit / reflect / haar', () => {
  const rng = seedrandom('reflect');

  it('unit gives a unit vector', () => {
    for (const d of [3, 64, 5120]) expect(norm(unit(normal(d, d)))).toBeCloseTo(1, 6);
  });

  it('reflect is a norm-preserving involution', () => {
    for (const d of [2, 12, 256, 5120]) {
      const x = randomVector(rng, d);
      const w = unit(normal(Math.floor(rng() * 2 ** 32), d));
      const rx = reflect(x, w);
      const nx = norm(x);
      expect(Math.abs(norm(rx) - nx) / nx).toBeLessThan(1e-5);
      const back = reflect(rx, w);
      for (let i = 0; i < d; i++) expect(Math.abs(back[i] - x[i])).toBeLessThan(1e-5 * nx);
    }
  });

  it('reflect negates w and fixes vectors orthogonal to it', () => {
    const w = unit(Float32Array.of(3, 4, 0));
    expectRelClose(reflect(w, w), Array.from(w, (x) => -x), 'reflect(w, w)');
    expect(Array.from(reflect(Float32Array.of(0, 0, 5), w))).toEqual([0, 0, 5]);
    expect(() => reflect(Float32Array.of(1, 2), w)).toThrow(/length mismatch/);
  });

  it('haar preserves the norm and depends on the prefix', () => {
    for (const k of [2, 12, 33]) {
      const x = randomVector(rng, k);
      const y = haar('prefix', x);
      expect(Math.abs(norm(y) - norm(x)) / norm(x)).toBeLessThan(1e-5);
      expect(Array.from(haar('other', x))).not.toEqual(Array.from(y));
    }
    expect(Array.from(haar('prefix', Float32Array.of(2.5)))).toEqual([2.5]);
  });
});

describe('pick', () => {
  const brute = (seed: number, dim: number, k: number): number[] =>
    Array.from({ length: dim }, (_, j) => [mm(j, seed), j])
      .sort((a, b) => a[0] - b[0] || a[1] - b[1])
      .slice(0, k)
      .map(([, j]) => j);

  it('matches a brute-force sort on random seeds', () => {
    const rng = seedrandom('pick');
    for (let trial = 0; trial < 40; trial++) {
      const seed = Math.floor(rng() * 2 ** 32);
      const dim = 1 + Math.floor(rng() * 3000);
      const k = Math.min(dim, [1, 5, 12, 64][trial % 4]);
      const p = pick(seed, dim, k);
      expect(p, `seed ${seed} dim ${dim} k ${k}`).toEqual(brute(seed, dim, k));
      expect(new Set(p).size).toBe(k);
      for (let i = 0; i < k; i++) {
        expect(p[i]).toBeGreaterThanOrEqual(0);
        expect(p[i]).toBeLessThan(dim);
        if (i > 0) expect(mm(p[i - 1], seed) < mm(p[i], seed) || (mm(p[i - 1], seed) === mm(p[i], seed) && p[i - 1] < p[i])).toBe(true);
      }
    }
  });

  it('handles k = 0 and k = dim', () => {
    expect(pick(9, 10, 0)).toEqual([]);
    expect(pick(9, 17, 17)).toEqual(brute(9, 17, 17));
  });

  it('rejects k out of range and bad dims', () => {
    expect(() => pick(1, 10, 11)).toThrow(/k must be/);
    expect(() => pick(1, 10, -1)).toThrow(/k must be/);
    expect(() => pick(1, 10, 1.5)).toThrow(/k must be/);
    expect(() => pick(1, -3, 0)).toThrow(/dim must be/);
  });

  it('is fast on large outputs', () => {
    const t = performance.now();
    const p = pick(0x12345678, 4_000_000, 12);
    expect(p.length).toBe(12);
    expect(performance.now() - t).toBeLessThan(2000);
  });
});
