// The native denoiser forward (SPEC §13 step 4) on wan-tiny: against the independent float64
// reference (test/reference), batch and thread independence, the precision modes and weight
// transforms, cancellation, and clear errors for bad requests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { addon, type NativeDenoiseRequest, type NativeModel } from '../src/engine/native.js';
import { normal } from '../src/seeds/rng.js';
import { bitsEqual, cachedWeights, loadTiny, refConfigOf, relL2 } from './helpers/native-model.js';
import { referenceDenoise, type RefConfig } from './reference/forward64.js';

// A non-square latent grid (F, H, W all different) so a transposed unpatchify cannot pass.
const SHAPE: [number, number, number, number] = [16, 3, 4, 6];
const CTX = 16;
const OUT_PER = 16 * 3 * 4 * 6;

let model: NativeModel;
let cfg: RefConfig;
let weights: (expert: number, key: string) => Float32Array;
const latent = normal(101, SHAPE[0] * SHAPE[1] * SHAPE[2] * SHAPE[3]);
const ctxA = normal(202, CTX * 4096);
const ctxB = normal(303, CTX * 4096);

beforeAll(async () => {
  model = await loadTiny(2);
  cfg = refConfigOf(model);
  weights = cachedWeights(model);
});
afterAll(() => model.dispose());

function request(over: Partial<NativeDenoiseRequest> = {}): NativeDenoiseRequest {
  return { latentShape: SHAPE, latent, timestep: 731, expert: 0, ctxLen: CTX, contexts: [ctxA, ctxB], ...over };
}

function reference(context: Float32Array, expert: number, timestep: number, roundBf16: boolean): Float64Array {
  return referenceDenoise(cfg, weights, { latentShape: SHAPE, latent, context, ctxLen: CTX, timestep, expert }, { roundBf16 });
}

describe('native denoise vs the float64 reference (wan-tiny, two contexts, both experts)', () => {
  it('fp32 precision: relative L2 < 1e-5 per context', async () => {
    for (const [expert, timestep] of [[0, 931], [1, 412]] as const) {
      const y = await model.denoise(request({ expert, timestep, precision: 'fp32' }));
      expect(y.length).toBe(2 * OUT_PER);
      for (const [i, ctx] of [ctxA, ctxB].entries()) {
        const err = relL2(y.subarray(i * OUT_PER, (i + 1) * OUT_PER), reference(ctx, expert, timestep, false));
        console.log(`denoise expert ${expert} t ${timestep} context ${i}: fp32 engine vs float64 reference, relative L2 ${err.toExponential(2)}`);
        expect(err).toBeLessThan(1e-5);
      }
    }
  });

  it('bf16 precision (SPEC §7): within the usual bf16 gap of the reference with the same roundings', async () => {
    for (const [expert, timestep] of [[0, 999], [1, 0]] as const) {
      const y = await model.denoise(request({ expert, timestep }));
      for (const [i, ctx] of [ctxA, ctxB].entries()) {
        const ref = reference(ctx, expert, timestep, true);
        const err = relL2(y.subarray(i * OUT_PER, (i + 1) * OUT_PER), ref);
        console.log(`denoise expert ${expert} t ${timestep} context ${i}: bf16 engine vs bf16 reference, relative L2 ${err.toExponential(2)}`);
        expect(err).toBeLessThan(1e-2);
      }
    }
  });

  it('the reference distinguishes what the engine must get right (unpatchify layout, expert, reflections off)', async () => {
    const y = (await model.denoise(request({ contexts: [ctxA], precision: 'fp32' })));
    const ref = reference(ctxA, 0, 731, false);
    expect(relL2(y, ref)).toBeLessThan(1e-5);
    // The head's own token order (no unpatchify) is far off: the layout is checked.
    const [, F, H, W] = SHAPE;
    const perm = new Float64Array(ref.length);
    let k = 0;
    for (let f = 0; f < F; f++)
      for (let h = 0; h < H / 2; h++)
        for (let w = 0; w < W / 2; w++)
          for (let i = 0; i < 2; i++)
            for (let j = 0; j < 2; j++)
              for (let c = 0; c < 16; c++) perm[k++] = ref[((c * F + f) * H + 2 * h + i) * W + 2 * w + j]!;
    expect(relL2(y, perm)).toBeGreaterThan(0.1);
    expect(relL2(y, reference(ctxA, 1, 731, false))).toBeGreaterThan(1e-2);
  });
});

describe('denoise batching and determinism', () => {
  it('contexts [a, b] give bit for bit what [a] and [b] give alone, in either order', async () => {
    for (const precision of ['bf16', 'bf16-flash', 'fp32'] as const) {
      const both = await model.denoise(request({ precision }));
      const a = await model.denoise(request({ precision, contexts: [ctxA] }));
      const b = await model.denoise(request({ precision, contexts: [ctxB] }));
      expect(bitsEqual(both.subarray(0, OUT_PER), a), precision).toBe(true);
      expect(bitsEqual(both.subarray(OUT_PER), b), precision).toBe(true);
      const swapped = await model.denoise(request({ precision, contexts: [ctxB, ctxA] }));
      expect(bitsEqual(swapped.subarray(0, OUT_PER), b), precision).toBe(true);
    }
  });

  it('the same bits for 1 and 2 threads; the same context twice gives the same output twice', async () => {
    const base = await model.denoise(request());
    const m1 = await loadTiny(1);
    try {
      expect(bitsEqual(await m1.denoise(request()), base)).toBe(true);
    } finally {
      m1.dispose();
    }
    const twice = await model.denoise(request({ contexts: [ctxA, ctxA] }));
    expect(bitsEqual(twice.subarray(0, OUT_PER), twice.subarray(OUT_PER))).toBe(true);
    expect(bitsEqual(twice.subarray(0, OUT_PER), base.subarray(0, OUT_PER))).toBe(true);
  });

  it('writes every element of a given output buffer (poisoned) and resolves to it', async () => {
    const out = new Float32Array(2 * OUT_PER).fill(NaN);
    const y = await model.denoise(request(), out);
    expect(y).toBe(out);
    expect(out.every(Number.isFinite)).toBe(true);
  });

  it('timestep, context and expert each change the output', async () => {
    const y = await model.denoise(request({ contexts: [ctxA] }));
    const t = await model.denoise(request({ contexts: [ctxA], timestep: 732 }));
    const e = await model.denoise(request({ contexts: [ctxA], expert: 1 }));
    const c = await model.denoise(request({ contexts: [ctxB] }));
    expect(relL2(t, y)).toBeGreaterThan(1e-6);
    expect(relL2(e, y)).toBeGreaterThan(1e-2);
    expect(relL2(c, y)).toBeGreaterThan(1e-3);
  });
});

describe('denoise precision modes and weight transforms', () => {
  it('bf16-flash stays near bf16; fp8 attention and fp8 weights move further', async () => {
    const bf16 = await model.denoise(request());
    const fp32 = await model.denoise(request({ precision: 'fp32' }));
    const flash = await model.denoise(request({ precision: 'bf16-flash' }));
    const fp8a = await model.denoise(request({ precision: 'fp8-attention' }));
    const gap = relL2(bf16, fp32);
    console.log(`denoise gaps to fp32: bf16 ${gap.toExponential(2)}, bf16-flash ${relL2(flash, fp32).toExponential(2)}, fp8-attention ${relL2(fp8a, fp32).toExponential(2)}`);
    expect(gap).toBeGreaterThan(0);
    expect(relL2(flash, bf16)).toBeGreaterThan(0);
    expect(relL2(fp8a, fp32)).toBeGreaterThan(gap);
    const fp8w = await addon().loadModel({ model: 'wan-tiny', weights: 'random', weightsSeed: 'test-weights', threads: 2, weightTransform: 'fp8' });
    try {
      const y = await fp8w.denoise(request());
      console.log(`denoise with fp8 weights vs bf16 weights: relative L2 ${relL2(y, bf16).toExponential(2)}`);
      expect(relL2(y, bf16)).toBeGreaterThan(gap);
    } finally {
      fp8w.dispose();
    }
  });
});

describe('denoise cancellation and bad requests', () => {
  it('cancel() rejects a denoise in flight; the model keeps working', async () => {
    // A latent of 1280 tokens: seconds of work, so the cancel lands while it runs.
    const big: [number, number, number, number] = [16, 5, 32, 32];
    const p = model.denoise(request({ latentShape: big, latent: normal(404, 16 * 5 * 32 * 32) }));
    model.cancel();
    await expect(p).rejects.toThrow(/cancelled/);
    expect((await model.denoise(request())).every(Number.isFinite)).toBe(true);
  });

  const bad: [string, () => unknown, RegExp][] = [
    ['wrong channel count', () => request({ latentShape: [4, 3, 4, 6], latent: latent.subarray(0, 4 * 72) }), /channels, model wan-tiny takes 16/],
    ['odd H', () => request({ latentShape: [16, 3, 3, 8] }), /H must be a positive multiple of the patch size 2/],
    ['F = 0', () => request({ latentShape: [16, 0, 4, 6], latent: new Float32Array(0) }), /F must be a positive multiple/],
    ['latent of the wrong length', () => request({ latent: latent.subarray(1) }), /latent has 1151 elements, expected 1152/],
    ['latent not a Float32Array', () => request({ latent: Array.from(latent) as unknown as Float32Array }), /latent must be a Float32Array/],
    ['a negative latent axis', () => request({ latentShape: [16, 3, -4, 6] }), /denoise: latentShape\[2\] must be an integer/],
    ['latentShape not 4 numbers', () => request({ latentShape: [16, 3, 4] as unknown as [number, number, number, number] }), /latentShape must be \[C_in, F, H, W\]/],
    ['timestep 1000', () => request({ timestep: 1000 }), /timestep must be an integer in \[0, 999\]/],
    ['timestep -1', () => request({ timestep: -1 }), /timestep must be an integer in \[0, 999\]/],
    ['fractional timestep', () => request({ timestep: 500.5 }), /timestep must be an integer/],
    ['expert 2 of a two-expert model', () => request({ expert: 2 }), /expert 2 out of range: model wan-tiny has 2 expert/],
    ['ctxLen 0', () => request({ ctxLen: 0 }), /ctx_len must be in \[1, 4096\]/],
    ['ctxLen 5000', () => request({ ctxLen: 5000 }), /ctxLen must be an integer in \[0, 4096\]/],
    ['a context of the wrong length', () => request({ contexts: [ctxA, ctxB.subarray(4096)] }), /contexts\[1\] has 61440 elements, expected 65536/],
    ['no contexts', () => request({ contexts: [] }), /at least one context/],
    ['contexts not an array', () => request({ contexts: ctxA as unknown as Float32Array[] }), /contexts must be an array/],
    ['unknown precision', () => request({ precision: 'fp16' as never }), /precision must be bf16, fp32, bf16-flash or fp8-attention/],
  ];
  for (const [what, make, message] of bad) {
    it(`rejects ${what} with a clear error`, async () => {
      await expect(async () => model.denoise(make() as NativeDenoiseRequest)).rejects.toThrow(message);
    });
  }

  it('rejects an output buffer of the wrong length, and a disposed model', async () => {
    await expect(async () => model.denoise(request(), new Float32Array(OUT_PER))).rejects.toThrow(
      /out has 1152 elements, expected 2304/,
    );
    const m = await loadTiny(1);
    m.dispose();
    await expect(async () => m.denoise(request())).rejects.toThrow(/disposed/);
  });
});
