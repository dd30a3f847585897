// The whole generation loop (scheduler port, CFG, expert switch) on the native engine against
// an independent float64 reference of the official pipeline with the float64 reference forward.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { NativeModel } from '../src/engine/native.js';
import { nativeDenoiser } from '../src/inference/denoiser.js';
import { initialNoise, prepareGeneration } from '../src/inference/generation-setup.js';
import { runLoop } from '../src/inference/loop.js';
import type { InferenceRequest } from '../src/inference/manifest.js';
import { initialSolverState } from '../src/inference/scheduler.js';
import { cachedWeights, loadTiny, refConfigOf, relL2 } from './helpers/native-model.js';
import { referenceDenoise } from './reference/forward64.js';
import { pipeline64 } from './reference/pipeline64.js';

const REQUEST: InferenceRequest = {
  model: 'wan-tiny', width: 32, height: 32, frames: 5, steps: 8, shift: 5, guide: [3, 4], boundary: 0.875, seed: '3',
  noise: { source: 'spec' }, context: { source: 'seeded', prompt_seed: 'reference', tokens: 4 },
};

let model: NativeModel;
beforeAll(async () => {
  model = await loadTiny(2);
});
afterAll(() => model.dispose());

describe('generation loop vs the float64 reference pipeline', () => {
  it('wan-tiny, two experts, 8 steps: final latent within the engine\'s bf16-vs-fp32 gap', async () => {
    const c = model.config;
    const prepared = prepareGeneration(REQUEST, c, '.');
    const experts = new Set(prepared.setup.plan.map((p) => p.expert));
    expect([...experts].sort()).toEqual([0, 1]); // the switch happens inside the run
    const noise = initialNoise(REQUEST, prepared.setup, '.');
    const engine = async (precision: 'bf16' | 'fp32') =>
      (await runLoop(prepared.setup, nativeDenoiser(model, precision), { latent: noise, solver: initialSolverState() }, { until: REQUEST.steps })).latent;
    const bf16 = await engine('bf16');
    const fp32 = await engine('fp32');

    const cfg = refConfigOf(model);
    const weights = cachedWeights(model);
    const ref = await pipeline64(REQUEST, noise, (x, t, expert, which) =>
      referenceDenoise(cfg, weights, {
        latentShape: prepared.setup.latentShape, latent: Float32Array.from(x), timestep: t, expert, ctxLen: 512,
        context: which === 'cond' ? prepared.setup.context : prepared.setup.contextNull,
      }, { roundBf16: false }));

    const gapPrecision = relL2(bf16, fp32);
    const errFp32 = relL2(fp32, ref);
    const errBf16 = relL2(bf16, ref);
    console.log(`final latent: fp32 engine vs float64 pipeline ${errFp32.toExponential(2)}, bf16 engine vs float64 ${errBf16.toExponential(2)}, engine bf16 vs fp32 ${gapPrecision.toExponential(2)}`);
    expect(gapPrecision).toBeGreaterThan(0);
    expect(errFp32).toBeLessThan(gapPrecision);
    expect(errBf16).toBeLessThan(2 * gapPrecision);
  }, 120_000);
});
