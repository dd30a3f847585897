// The engine's own nonce derivation and artifact (forwardArtifacts, the path `generate` and the
// server's sprints take) against their TypeScript references: the same bits, nonce by nonce,
// on Gonka's golden vectors, random outputs at every scale, and whole wan-tiny batches.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import seedrandom from 'seedrandom';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { computeArtifact } from '../src/artifact/artifact.js';
import { addon, type NativeModel } from '../src/engine/native.js';
import { NonceRunner } from '../src/engine/nonce-runner.js';
import { deriveNonceInputs } from '../src/inputs/nonce-inputs.js';
import { makeRound, type RoundParams } from '../src/round/params.js';
import { closeWorkers } from '../src/workers/pool.js';
import { BLOCK_HASH, PUBLIC_KEY, conformanceDir, loadTiny } from './helpers/native-model.js';

const golden = JSON.parse(readFileSync(resolve(conformanceDir, 'rng.json'), 'utf8'));
const b64 = (bytes: Uint8Array | null) => (bytes ? Buffer.from(bytes).toString('base64') : null);
const INT32_EDGES = [0, 1, -1, -5, 2147483647, -2147483648];

describe('addon.nonceInputs: deriveNonceInputs in the engine', () => {
  it('gives the same seeds, timestep and routing', () => {
    const nonces = [...INT32_EDGES, ...Array.from({ length: 300 }, (_, i) => i * 7919 - 1000)];
    for (const strongerRng of [false, true]) {
      for (const numLayers of [1, 4, 40]) {
        const round = { blockHash: BLOCK_HASH, publicKey: PUBLIC_KEY, numLayers, strongerRng };
        for (const n of nonces) {
          const want = deriveNonceInputs(round, n);
          const got = addon().nonceInputs(round, n);
          expect(got.latentSeed).toBe(want.latentSeed);
          expect(got.contextSeed).toBe(want.contextSeed);
          expect(got.timestep).toBe(want.timestep);
          expect(Array.from(got.experts)).toEqual(Array.from(want.experts));
          expect(got.latentWords && Array.from(got.latentWords)).toEqual(want.latentSeedWords && Array.from(want.latentSeedWords));
        }
      }
    }
  });

  it('refuses what the TS twin refuses', () => {
    const round = { blockHash: BLOCK_HASH, publicKey: PUBLIC_KEY, numLayers: 4 };
    expect(() => addon().nonceInputs(round, 2 ** 31)).toThrow(/int32/);
    expect(() => addon().nonceInputs(round, 1.5)).toThrow(/int32/);
    expect(() => addon().nonceInputs({ ...round, blockHash: '' }, 0)).toThrow(/block hash/);
    expect(() => addon().nonceInputs({ ...round, numLayers: 0 }, 0)).toThrow(/num_layers/);
  });
});

describe('addon.artifact: computeArtifact in the engine', () => {
  it("gives Gonka's golden artifacts", () => {
    for (const c of golden.artifact) {
      expect(b64(addon().artifact(Float32Array.from(c.output_vector), c.block_hash, c.public_key, c.nonce, c.k))).toBe(c.vector_b64);
    }
  });

  it('gives the same bits on random outputs of every length, scale and k', () => {
    const rng = seedrandom('native-artifacts');
    let compared = 0;
    for (let t = 0; t < 400; t++) {
      const k = [1, 2, 12, 12, 12, 33][t % 6];
      const m = k + Math.floor(rng() * [4, 64, 3000][t % 3]);
      const scale = 10 ** (Math.floor(rng() * 16) - 8); // 1e-8 .. 1e7: normalization at every magnitude
      // A few outputs with one dominant coordinate: the norm is its, the rest shrinks to tiny values.
      const spike = t % 7 === 0 ? Math.floor(rng() * m) : -1;
      const y = Float32Array.from({ length: m }, (_, i) => (i === spike ? 1e4 : 1) * scale * (rng() * 2 - 1));
      const edge = INT32_EDGES[t % INT32_EDGES.length];
      const nonce = edge > 0 ? edge - t : edge + t; // near the int32 edges, inside them
      const want = computeArtifact(y, BLOCK_HASH, PUBLIC_KEY, nonce, k);
      expect(b64(addon().artifact(y, BLOCK_HASH, PUBLIC_KEY, nonce, k)), `case ${t}: m ${m}, k ${k}`).toBe(want?.vectorB64 ?? null);
      compared++;
    }
    expect(compared).toBe(400);
  });

  it('gives no artifact for a non-finite output, and refuses k past the output', () => {
    const y = Float32Array.from(golden.artifact[0].output_vector as number[]);
    for (const bad of [NaN, Infinity, -Infinity]) {
      const z = Float32Array.from(y);
      z[5] = bad;
      expect(addon().artifact(z, BLOCK_HASH, PUBLIC_KEY, 3, 12)).toBeNull();
    }
    expect(() => addon().artifact(y.subarray(0, 4), BLOCK_HASH, PUBLIC_KEY, 3, 12)).toThrow(/output length 4 is smaller than k = 12/);
    expect(() => addon().artifact(y, BLOCK_HASH, PUBLIC_KEY, 3, 0)).toThrow(/k must be a positive integer/);
    expect(() => addon().artifact(y, '', PUBLIC_KEY, 3, 12)).toThrow(/block hash/);
    expect(() => addon().artifact(new Float64Array(4) as unknown as Float32Array, BLOCK_HASH, PUBLIC_KEY, 3, 2)).toThrow(/Float32Array/);
  });
});

describe('model.forwardArtifacts: a batch of bare nonces end to end', () => {
  let model: NativeModel;
  beforeAll(async () => {
    model = await loadTiny(2);
  });
  afterAll(async () => {
    model.dispose();
    await closeWorkers();
  });

  // The same round through the TypeScript path: a stand-in engine without forwardArtifacts.
  const viaTypeScript = (round: RoundParams) =>
    new NonceRunner({ ...pick(model), forward: (req) => model.forward(req), cancel: () => model.cancel() } as NativeModel, round);
  const pick = (m: NativeModel) => ({ config: m.config, identity: m.identity, backend: m.backend, threads: m.threads, disposed: false });

  for (const [name, opts] of [
    ['bf16', {}],
    ['fp32, stronger RNG, k = 20', { precision: 'fp32', strongerRng: true, kDim: 20 }],
  ] as const) {
    it(`gives the TypeScript path's artifacts (${name})`, async () => {
      const round = makeRound({ model: 'wan-tiny', blockHash: BLOCK_HASH, publicKey: PUBLIC_KEY, grid: [1, 2, 2], ...opts });
      const nonces = [...INT32_EDGES, 17, 18, 19, 20, 21, 22];
      const native = new NonceRunner(model, round);
      const got = await native.artifacts(nonces);
      expect(got.every((v) => typeof v === 'string' && Buffer.from(v, 'base64').length === 2 * round.kDim)).toBe(true);
      expect(got).toEqual(await viaTypeScript(round).artifacts(nonces));
      // Batch composition does not change a nonce's artifact (SPEC §8).
      expect([...(await native.artifacts(nonces.slice(0, 5))), ...(await native.artifacts(nonces.slice(5)))]).toEqual(got);
    });
  }

  it('refuses malformed requests before anything runs', () => {
    const req = { grid: [1, 2, 2] as [number, number, number], ctxLen: 16, blockHash: BLOCK_HASH, publicKey: PUBLIC_KEY, kDim: 12, nonces: [1, 2] };
    const run = (over: object) => () => model.forwardArtifacts!({ ...req, ...over });
    expect(run({ kDim: 0 })).toThrow(/k must be a positive integer/);
    expect(run({ kDim: 1000 })).toThrow(/output length 256 is smaller than k = 1000/);
    expect(run({ nonces: [1, 2 ** 31] })).toThrow(/nonces\[1\] must be an int32/);
    expect(run({ nonces: 'abc' })).toThrow(/nonces must be an array/);
    expect(run({ blockHash: '' })).toThrow(/block hash/);
    expect(run({ publicKey: 7 })).toThrow(/publicKey must be a string/);
    expect(run({ grid: [0, 2, 2] })).toThrow(/grid/);
    expect(run({ precision: 'fp4' })).toThrow(/precision/);
  });

  it('an empty batch resolves to empty results', async () => {
    const r = await model.forwardArtifacts!({ grid: [1, 2, 2], ctxLen: 16, blockHash: BLOCK_HASH, publicKey: PUBLIC_KEY, kDim: 12, nonces: [] });
    expect(r.vectors.length).toBe(0);
    expect(r.finite.length).toBe(0);
  });
});
