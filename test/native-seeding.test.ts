// The native seeding (used to fill tensors) against the TS reference (src/seeds), on thousands
// of random cases: integer results bit-exact, floats within 1e-5 relative.
import seedrandom from 'seedrandom';
import { describe, expect, it } from 'vitest';

import { addon } from '../src/engine/native.js';
import { mm, normal, normalStrong, seed32, uniform, unit } from '../src/seeds/rng.js';

const rng = seedrandom('native-seeding');
const u32 = () => Math.floor(rng() * 2 ** 32) >>> 0;
const randomString = () => {
  const n = Math.floor(rng() * 80);
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCodePoint(rng() < 0.9 ? 32 + Math.floor(rng() * 95) : 0xa0 + Math.floor(rng() * 0x2000));
  return s;
};

function expectClose(native: Float32Array, ts: Float32Array, what: string) {
  expect(native.length).toBe(ts.length);
  let bad = 0;
  for (let i = 0; i < ts.length; i++) {
    const tol = 1e-5 * Math.max(Math.abs(ts[i]), 1e-1);
    if (!(Math.abs(native[i] - ts[i]) <= tol)) bad++;
  }
  expect(bad, `${what}: ${bad} of ${ts.length} values differ`).toBe(0);
}

describe('native seeding matches the TypeScript reference', () => {
  const a = addon();

  it('seed32 on 3000 random strings (unicode included)', () => {
    for (let i = 0; i < 3000; i++) {
      const s = randomString();
      expect(a.seed32(s)).toBe(seed32(s));
    }
  });

  it('mm on 5000 random (key, seed) pairs', () => {
    for (let i = 0; i < 5000; i++) {
      const key = u32(), seed = u32();
      expect(a.murmur(key, seed)).toBe(mm(key, seed));
    }
  });

  it('U bit patterns on 1000 seeds', () => {
    for (let i = 0; i < 1000; i++) {
      const seed = u32();
      const n = 1 + Math.floor(rng() * 40);
      expect(Array.from(new Uint32Array(a.uniform(seed, n).buffer))).toEqual(Array.from(new Uint32Array(uniform(seed, n).buffer)));
    }
  });

  it('N on 2000 seeds and lengths (odd and even)', () => {
    for (let i = 0; i < 2000; i++) {
      const seed = u32();
      const n = 1 + Math.floor(rng() * 64);
      expectClose(a.normal(seed, n), normal(seed, n), `N(${seed}, ${n})`);
    }
    expectClose(a.normal(7, 300001), normal(7, 300001), 'N(7, 300001) (threaded fill)');
  });

  it('N8 on 500 strings', () => {
    for (let i = 0; i < 500; i++) {
      const s = randomString();
      const n = 1 + Math.floor(rng() * 100);
      expectClose(a.normalStrong(s, n), normalStrong(s, n), `N8(${JSON.stringify(s)}, ${n})`);
    }
  });

  it('Householder vectors unit(N(seed, D)) on 200 seeds', () => {
    for (let i = 0; i < 200; i++) {
      const seed = u32();
      const d = [8, 64, 256, 1536][i % 4];
      expectClose(a.householderVector(seed, d), unit(normal(seed, d)), `w(${seed}, ${d})`);
    }
  });

  it('rejects bad arguments with clear errors', () => {
    expect(() => a.murmur(-1, 0)).toThrow(/key must be an integer/);
    expect(() => a.normal(1, 1.5)).toThrow(/n must be an integer/);
    expect(() => a.uniform(2 ** 32, 3)).toThrow(/seed/);
    expect(() => (a.seed32 as unknown as (x: number) => number)(3)).toThrow(/string expected/);
  });
});
