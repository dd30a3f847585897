import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  artifactString,
  deriveNonceInputs,
  householderSeeds,
  nonceString,
} from '../src/inputs/nonce-inputs.js';
import { mm, normal, normalStrong, seed32, sha256Words, unit } from '../src/seeds/rng.js';

const golden = JSON.parse(
  readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/conformance/rng.json'), 'utf8'),
);
const { block_hash: BLOCK, public_key: KEY } = golden.pick[0];
const round = { blockHash: BLOCK, publicKey: KEY, numLayers: 40, strongerRng: false };

describe('seed strings', () => {
  it('formats P and Q as Gonka does', () => {
    expect(nonceString('bh', 'pk', 7)).toBe('bh_pk_nonce7');
    expect(artifactString('bh', 'pk', 7)).toBe('bh_pk_nonce_7');
  });

  it('P reproduces the golden seed32 and normal_strong strings', () => {
    expect(seed32(nonceString(BLOCK, KEY, 0))).toBe(golden.seed32[3].seed);
    for (const c of golden.normal_strong) {
      const nonce = Number(/_nonce(\d+)$/.exec(c.string)![1]);
      expect(nonceString(BLOCK, KEY, nonce)).toBe(c.string);
    }
  });
});

describe('deriveNonceInputs', () => {
  it('derives the latent and context seeds from P', () => {
    for (const nonce of [0, 1, 77, 2 ** 31 - 1]) {
      const p = nonceString(BLOCK, KEY, nonce);
      const plain = deriveNonceInputs(round, nonce);
      expect(plain.nonce).toBe(nonce);
      expect(plain.latentSeed).toBe(seed32(p));
      expect(plain.latentSeedWords).toBeNull();
      expect(plain.contextSeed).toBe(seed32(`${p}_context`));
      const strong = deriveNonceInputs({ ...round, strongerRng: true }, nonce);
      expect(Array.from(strong.latentSeedWords!)).toEqual(Array.from(sha256Words(p)));
      expect(strong.latentSeedWords![0]).toBe(strong.latentSeed);
    }
  });

  it('stronger-rng words reproduce the golden N8 latents', () => {
    for (const c of golden.normal_strong) {
      const nonce = Number(/_nonce(\d+)$/.exec(c.string)![1]);
      const words = deriveNonceInputs({ ...round, strongerRng: true }, nonce).latentSeedWords!;
      const seg = Math.ceil(c.n / 8);
      const z: number[] = [];
      for (let t = 0; t < 8 && t * seg < c.n; t++) z.push(...normal(words[t], Math.min(seg, c.n - t * seg)));
      expect(z).toEqual(Array.from(normalStrong(c.string, c.n)));
      z.forEach((x, i) => expect(Math.abs(x - c.values[i])).toBeLessThanOrEqual(1e-5 * Math.abs(c.values[i])));
    }
  });

  it('timestep is floor(1000·u) clamped to [0, 999]', () => {
    const timesteps: number[] = [];
    for (let nonce = 0; nonce < 2000; nonce++) {
      const { timestep } = deriveNonceInputs(round, nonce);
      const p = nonceString(BLOCK, KEY, nonce);
      const u = Math.fround(mm(0, seed32(`${p}_timestep`))) / 2 ** 32;
      expect(Number.isInteger(timestep)).toBe(true);
      expect(timestep).toBeGreaterThanOrEqual(0);
      expect(timestep).toBeLessThanOrEqual(999);
      expect(timestep).toBe(Math.min(999, Math.floor(1000 * u)));
      timesteps.push(timestep);
    }
    expect(Math.min(...timesteps)).toBeLessThan(10);
    expect(Math.max(...timesteps)).toBeGreaterThan(990);
  });

  it('expert bits are the top bit of mm(i, seed32(P + "_experts"))', () => {
    let ones = 0;
    let total = 0;
    for (let nonce = 0; nonce < 500; nonce++) {
      const { experts } = deriveNonceInputs(round, nonce);
      const seed = seed32(`${nonceString(BLOCK, KEY, nonce)}_experts`);
      expect(experts.length).toBe(40);
      experts.forEach((r, i) => expect(r).toBe(mm(i, seed) >= 2 ** 31 ? 1 : 0));
      ones += experts.reduce((s, r) => s + r, 0);
      total += experts.length;
    }
    expect(Math.abs(ones / total - 0.5)).toBeLessThan(0.02);
  });

  it('is deterministic and nonce-specific', () => {
    const a = deriveNonceInputs(round, 3);
    expect(deriveNonceInputs(round, 3)).toEqual(a);
    expect(deriveNonceInputs(round, 4).latentSeed).not.toBe(a.latentSeed);
    expect(deriveNonceInputs({ ...round, publicKey: 'other' }, 3).latentSeed).not.toBe(a.latentSeed);
  });

  it('takes negative int32 nonces, seeded by their decimal form (Python\'s f"{nonce}")', () => {
    expect(nonceString(BLOCK, KEY, -5)).toBe(`${BLOCK}_${KEY}_nonce-5`);
    expect(deriveNonceInputs(round, -5).latentSeed).not.toBe(deriveNonceInputs(round, 5).latentSeed);
  });

  it('rejects bad nonces and round parameters', () => {
    for (const bad of [-(2 ** 31) - 1, 2 ** 31, 1.5, NaN, Infinity]) {
      expect(() => deriveNonceInputs(round, bad), `${bad}`).toThrow(/nonce must be an int32/);
      expect(() => nonceString(BLOCK, KEY, bad)).toThrow(/nonce/);
      expect(() => artifactString(BLOCK, KEY, bad)).toThrow(/nonce/);
    }
    expect(() => deriveNonceInputs({ ...round, blockHash: '' }, 0)).toThrow(/blockHash/);
    expect(() => deriveNonceInputs({ ...round, publicKey: '' }, 0)).toThrow(/publicKey/);
    expect(() => deriveNonceInputs({ ...round, numLayers: 0 }, 0)).toThrow(/numLayers/);
    expect(() => deriveNonceInputs({ ...round, numLayers: 2.5 }, 0)).toThrow(/numLayers/);
  });
});

describe('householderSeeds', () => {
  it('are seed32(block_hash + "_layer_" + i + "_householder") and give the golden vectors', () => {
    const seeds = householderSeeds(BLOCK, 3);
    expect(seeds.length).toBe(3);
    for (const c of golden.householder) {
      const layer = Number(/_layer_(\d+)_householder$/.exec(c.string)![1]);
      expect(seeds[layer]).toBe(seed32(c.string));
      const w = unit(normal(seeds[layer], c.dim));
      w.forEach((x, i) => expect(Math.abs(x - c.values[i])).toBeLessThanOrEqual(1e-5 * Math.abs(c.values[i])));
    }
  });

  it('rejects bad arguments', () => {
    expect(() => householderSeeds('', 3)).toThrow(/blockHash/);
    expect(() => householderSeeds(BLOCK, -1)).toThrow(/numLayers/);
  });
});
