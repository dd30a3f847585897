// The native forward on wan-tiny: against the independent float64 reference (test/reference),
// across thread counts, and batch independence (SPEC §8).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { computeArtifact } from '../src/artifact/artifact.js';
import type { NativeModel } from '../src/engine/native.js';
import { normal, unit } from '../src/seeds/rng.js';
import { BLOCK_HASH, PUBLIC_KEY, TINY_CTX, TINY_GRID, bitsEqual, cachedWeights, loadTiny, refConfigOf, relL2, tinyRequest } from './helpers/native-model.js';
import { referenceForward, type RefConfig } from './reference/forward64.js';

let model: NativeModel;
let cfg: RefConfig;
let weights: (expert: number, key: string) => Float32Array;

beforeAll(async () => {
  model = await loadTiny(2);
  cfg = refConfigOf(model);
  weights = cachedWeights(model);
});
afterAll(() => model.dispose());

// The reference gets the inputs the engine draws from the same seeds, computed in TS.
function reference(nonce: number, roundBf16: boolean): Float64Array {
  const req = tinyRequest([nonce]);
  const n = req.nonces[0];
  const [F, H, W] = TINY_GRID;
  return referenceForward(
    cfg,
    weights,
    {
      grid: TINY_GRID,
      latent: normal(n.latentSeed!, cfg.inChannels * F * 2 * H * 2 * W),
      context: normal(n.contextSeed!, TINY_CTX * cfg.textDim),
      ctxLen: TINY_CTX,
      timestep: n.timestep,
      experts: n.experts,
      householder: Array.from(req.householderSeeds, (s) => unit(normal(s, cfg.dim))),
    },
    { roundBf16 },
  );
}

describe('native forward vs the float64 reference (wan-tiny)', () => {
  it('fp32 path: relative L2 error < 1e-5 for whole nonces', async () => {
    for (const nonce of [0, 1, 77]) {
      const y = await model.forward({ ...tinyRequest([nonce]), precision: 'fp32' });
      const err = relL2(y, reference(nonce, false));
      console.log(`nonce ${nonce}: fp32 engine vs float64 reference, relative L2 ${err.toExponential(2)}`);
      expect(err).toBeLessThan(1e-5);
    }
  });

  it('bf16 path (SPEC §7): close to the reference with the same roundings, artifacts far inside the threshold', async () => {
    for (const nonce of [0, 5]) {
      const y = await model.forward(tinyRequest([nonce]));
      const ref = reference(nonce, true);
      const err = relL2(y, ref);
      const a = computeArtifact(y, BLOCK_HASH, PUBLIC_KEY, nonce)!;
      const b = computeArtifact(Float32Array.from(ref), BLOCK_HASH, PUBLIC_KEY, nonce)!;
      let d = 0;
      for (let i = 0; i < 12; i++) d += (a.values[i] - b.values[i]) ** 2;
      console.log(`nonce ${nonce}: bf16 engine vs reference, relative L2 ${err.toExponential(2)}, artifact distance ${Math.sqrt(d).toExponential(2)}`);
      expect(err).toBeLessThan(1e-2);
      expect(Math.sqrt(d)).toBeLessThan(0.01);
    }
  });

  it('the bf16 roundings matter: the fp32 engine is measurably off the bf16 reference', async () => {
    const y = await model.forward({ ...tinyRequest([3]), precision: 'fp32' });
    expect(relL2(y, reference(3, true))).toBeGreaterThan(1e-4);
  });
});

describe('determinism and independence (SPEC §8)', () => {
  it('the same bits for 1, 2 and 3 threads', async () => {
    const req = tinyRequest([0, 1, 2, 3]);
    const base = await model.forward(req);
    for (const threads of [1, 3]) {
      const m = await loadTiny(threads);
      try {
        expect(bitsEqual(await m.forward(req), base), `${threads} threads`).toBe(true);
      } finally {
        m.dispose();
      }
    }
  });

  it('a nonce computed alone equals the same nonce inside a batch of 5 (mixed experts), at every position', async () => {
    const nonces = [10, 11, 12, 13, 14];
    const req = tinyRequest(nonces);
    // The batch mixes experts at some layer, so grouped GEMMs are exercised.
    const layer0 = new Set(req.nonces.map((n) => n.experts[0]));
    expect(layer0.size).toBe(2);
    const batch = await model.forward(req);
    const m = batch.length / nonces.length;
    for (let i = 0; i < nonces.length; i++) {
      const alone = await model.forward(tinyRequest([nonces[i]]));
      expect(bitsEqual(alone, batch.subarray(i * m, (i + 1) * m)), `nonce ${nonces[i]}`).toBe(true);
      const a1 = computeArtifact(alone, BLOCK_HASH, PUBLIC_KEY, nonces[i])!;
      const a2 = computeArtifact(batch.subarray(i * m, (i + 1) * m), BLOCK_HASH, PUBLIC_KEY, nonces[i])!;
      expect(a1.vectorB64).toBe(a2.vectorB64);
    }
    const reversed = await model.forward(tinyRequest([...nonces].reverse()));
    expect(bitsEqual(reversed.subarray(0, m), batch.subarray(4 * m, 5 * m))).toBe(true);
  });

  it('writes every output element (poisoned buffer)', async () => {
    const req = tinyRequest([4, 5]);
    const out = new Float32Array(2 * 32 * 64).fill(NaN);
    await model.forward(req, out);
    expect(out.every(Number.isFinite)).toBe(true);
  });

  it('routing matters: flipping one layer\'s expert changes the output', async () => {
    const req = tinyRequest([6]);
    const y = await model.forward(req);
    const flipped = req.nonces[0].experts.slice();
    flipped[2] ^= 1;
    const y2 = await model.forward({ ...req, nonces: [{ ...req.nonces[0], experts: flipped }] });
    expect(relL2(y2, y)).toBeGreaterThan(1e-3);
  });
});
