// The FLOP model (SPEC §12), latent patches, price units, the α/β fit and `dit-poc price`.
// Reference numbers come from research/wan22-architecture.md §4.3 (rounded to 4 digits there).
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it, vi } from 'vitest';

import { priceCommand } from '../src/cli/price-command.js';
import { InputError } from '../src/errors.js';
import {
  fitAlphaBeta,
  gpuSeconds,
  parseBenchFile,
  pricedModelIds,
  priceRequest,
  referenceSize,
  supportedSizes,
  type PricingModel,
} from '../src/pricing/cost-model.js';
import { flopCoefficients, forwardFlops, latentGrid, latentPatches, nonceFlops } from '../src/pricing/flops.js';

// SPEC §3 configs, written out so these tests need no addon.
const common = { textDim: 4096, patch: [1, 2, 2] as [number, number, number] };
const A14B: PricingModel = {
  ...common,
  id: 'wan2.2-t2v-a14b',
  dim: 5120,
  ffnDim: 13824,
  numLayers: 40,
  inChannels: 16,
  outChannels: 16,
  experts: ['high_noise_model', 'low_noise_model'],
  vaeStride: [4, 8, 8],
};
const I2V: PricingModel = { ...A14B, id: 'wan2.2-i2v-a14b', inChannels: 36 };
const TI2V5B: PricingModel = {
  ...common,
  id: 'wan2.2-ti2v-5b',
  dim: 3072,
  ffnDim: 14336,
  numLayers: 30,
  inChannels: 48,
  outChannels: 48,
  experts: ['model'],
  vaeStride: [4, 16, 16],
};
const W13B: PricingModel = {
  ...common,
  id: 'wan2.1-t2v-1.3b',
  dim: 1536,
  ffnDim: 8960,
  numLayers: 30,
  inChannels: 16,
  outChannels: 16,
  experts: ['model'],
  vaeStride: [4, 8, 8],
};

// ---- an independent count: every Linear as 2·M·K·N, attention per head ----------------------------

const linear = (M: number, K: number, N: number): number => 2 * M * K * N;

function countForward(m: PricingModel, L: number, Lc: number, expertsUsed: number) {
  const D = m.dim;
  const headDim = 128;
  const heads = D / headDim;
  let gemm = 0;
  gemm += 4 * linear(L, D, D); // self-attn q, k, v, o
  gemm += linear(L, D, D) + linear(L, D, D); // cross-attn q (video), o
  gemm += linear(Lc, D, D) + linear(Lc, D, D); // cross-attn k, v (text)
  gemm += linear(L, D, m.ffnDim) + linear(L, m.ffnDim, D); // FFN up, down
  let attn = 0;
  for (let h = 0; h < heads; h++) {
    attn += linear(L, headDim, L) + linear(L, L, headDim); // self QKᵀ [L,hd]·[hd,L], PV [L,L]·[L,hd]
    attn += linear(L, headDim, Lc) + linear(L, Lc, headDim); // cross QKᵀ, PV
  }
  const patchEmbed = linear(L, m.inChannels * 1 * 2 * 2, D); // Conv3d(1,2,2) as a Linear over patches
  const head = linear(L, D, 1 * 2 * 2 * m.outChannels);
  const textEmbed = expertsUsed * (linear(Lc, 4096, D) + linear(Lc, D, D)); // Linear(4096→D), Linear(D→D)
  const block = gemm + attn;
  return { gemm, attn, block, total: m.numLayers * block + patchEmbed + head + textEmbed };
}

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);
const TF = 1e12;
const PF = 1e15;

describe('forwardFlops (SPEC §12)', () => {
  it('matches an independent per-Linear / per-head count for A14B, 5B and 1.3B', () => {
    for (const [m, L] of [
      [A14B, 32_760],
      [A14B, 75_600],
      [I2V, 75_600],
      [TI2V5B, 27_280],
      [W13B, 32_760],
    ] as const) {
      for (const used of m.experts.length === 2 ? [1, 2] : [1]) {
        const f = forwardFlops(m, L, 512, used);
        const c = countForward(m, L, 512, used);
        expect(rel(f.total, c.total)).toBeLessThan(1e-12);
        expect(rel(f.gemm, m.numLayers * c.gemm)).toBeLessThan(1e-12);
        expect(rel(f.attention, m.numLayers * c.attn)).toBeLessThan(1e-12);
        expect(f.blocks).toBe(f.gemm + f.attention);
        expect(f.total).toBe(f.blocks + f.patchEmbed + f.head + f.textEmbed);
      }
    }
  });

  it('reproduces the research §4.3 numbers (A14B 480p / 720p, 5B 720p, 1.3B 480p)', () => {
    // The research table uses Lc = 512 and counts text K/V in the block, as SPEC §12 does; its
    // "per forward" is layers × block (patch embed, head, text MLP add < 0.01 %). It rounds to
    // 4 significant digits, hence the 0.1 % tolerance.
    const cases: { m: PricingModel; w: number; h: number; T: number; L: number; block: number; fwd: number; attnShare: number }[] = [
      { m: A14B, w: 832, h: 480, T: 81, L: 32_760, block: 41.96 * TF, fwd: 1.678 * PF, attnShare: 0.53 },
      { m: A14B, w: 1280, h: 720, T: 81, L: 75_600, block: 163.08 * TF, fwd: 6.523 * PF, attnShare: 0.72 },
      { m: TI2V5B, w: 1280, h: 704, T: 121, L: 27_280, block: 17.23 * TF, fwd: 0.517 * PF, attnShare: 0.54 },
      { m: W13B, w: 832, h: 480, T: 81, L: 32_760, block: 9.43 * TF, fwd: 0.283 * PF, attnShare: 0.71 },
    ];
    for (const c of cases) {
      expect(latentPatches(c.m, c.w, c.h, c.T)).toBe(c.L);
      const f = forwardFlops(c.m, c.L, 512, 1);
      expect(rel(f.blocks / c.m.numLayers, c.block)).toBeLessThan(1e-3);
      expect(rel(f.total, c.fwd)).toBeLessThan(2e-3);
      expect(Math.abs(f.attention / f.blocks - c.attnShare)).toBeLessThan(0.01);
    }
    // A14B 480p components: self QKVO 6.870, FFN 9.275, GEMM/block 19.63, self-attn core 21.98 TF
    const D = 5120;
    const L = 32_760;
    expect(rel(8 * L * D * D, 6.87 * TF)).toBeLessThan(1e-3);
    expect(rel(4 * L * D * 13824, 9.275 * TF)).toBeLessThan(1e-3);
    const f = forwardFlops(A14B, L, 512, 1);
    expect(rel(f.gemm / 40, 19.63 * TF)).toBeLessThan(1e-3);
    expect(rel(4 * L * L * D, 21.98 * TF)).toBeLessThan(1e-3);
  });

  it('is exactly α·L² + β·L + γ (flopCoefficients)', () => {
    for (const m of [A14B, TI2V5B, W13B]) {
      const co = flopCoefficients(m, 512, 1);
      expect(co.alpha).toBe(4 * m.dim * m.numLayers);
      for (const L of [1, 1024, 32_760, 75_600]) {
        expect(rel(co.alpha * L * L + co.beta * L + co.gamma, forwardFlops(m, L, 512, 1).total)).toBeLessThan(1e-14);
      }
    }
  });

  it('nonceFlops: a forward on L = F·H·W; each distinct expert embeds the text once', () => {
    const one = nonceFlops(A14B, [4, 16, 16], 512, 1);
    const two = nonceFlops(A14B, [4, 16, 16], 512, 2);
    expect(one).toEqual(forwardFlops(A14B, 1024, 512, 1));
    expect(two.textEmbed).toBe(2 * one.textEmbed);
    expect(two.total - one.total).toBe(one.textEmbed);
    expect(() => nonceFlops(A14B, [4, 16, 16], 512, 3)).toThrow(InputError);
    expect(() => nonceFlops(W13B, [4, 16, 16], 512, 2)).toThrow(InputError);
    expect(() => nonceFlops(A14B, [0, 16, 16], 512, 1)).toThrow(InputError);
    expect(() => forwardFlops(A14B, 1.5, 512, 1)).toThrow(InputError);
  });
});

describe('latentPatches', () => {
  it('N = (1 + (T−1)/4)·(H/s/2)·(W/s/2)', () => {
    expect(latentPatches(A14B, 1280, 720, 81)).toBe(75_600);
    expect(latentGrid(A14B, 1280, 720, 81)).toEqual([21, 45, 80]);
    expect(latentPatches(A14B, 832, 480, 81)).toBe(32_760);
    expect(latentGrid(A14B, 832, 480, 81)).toEqual([21, 30, 52]);
    expect(latentPatches(A14B, 720, 1280, 81)).toBe(75_600);
    expect(latentPatches(A14B, 1280, 720, 121)).toBe(111_600);
    expect(latentPatches(TI2V5B, 1280, 704, 121)).toBe(27_280);
    expect(latentPatches(TI2V5B, 832, 480, 81)).toBe(8_190);
    expect(latentPatches(A14B, 64, 64, 5)).toBe(32); // wan-tiny's default PoC grid [2,4,4]
  });

  it('rejects sizes the VAE and patchify cannot divide with an InputError', () => {
    const bad: [PricingModel, number, number, number, RegExp][] = [
      [A14B, 1280, 720, 80, /frames − 1 must be divisible by/],
      [A14B, 1280, 721, 81, /height must be divisible by 16/],
      [A14B, 1288, 720, 81, /width must be divisible by 16/],
      [TI2V5B, 1280, 720, 121, /height must be divisible by 32/],
      [A14B, 0, 720, 81, /width must be a positive integer/],
      [A14B, 1280, 720.5, 81, /height must be a positive integer/],
    ];
    for (const [m, w, h, t, msg] of bad) {
      expect(() => latentPatches(m, w, h, t)).toThrow(InputError);
      expect(() => latentPatches(m, w, h, t)).toThrow(msg);
    }
  });
});

describe('priceRequest', () => {
  it('supported sizes per model, from research §3', () => {
    expect(supportedSizes('wan2.2-t2v-a14b').map((s) => `${s.width}x${s.height}x${s.frames}/${s.steps}`)).toEqual([
      '1280x720x81/40',
      '720x1280x81/40',
      '832x480x81/40',
      '480x832x81/40',
    ]);
    expect(supportedSizes('wan2.2-i2v-a14b')).toEqual(supportedSizes('wan2.2-t2v-a14b'));
    expect(supportedSizes('wan2.2-ti2v-5b').map((s) => `${s.width}x${s.height}x${s.frames}/${s.steps}`)).toEqual([
      '1280x704x121/50',
      '704x1280x121/50',
    ]);
    expect(supportedSizes('wan2.1-t2v-1.3b').map((s) => `${s.width}x${s.height}x${s.frames}/${s.steps}`)).toEqual(['832x480x81/50']);
    for (const id of pricedModelIds()) expect(supportedSizes(id).every((s) => s.cfg)).toBe(true);
    expect(() => supportedSizes('nope')).toThrow(InputError);
    expect(referenceSize(A14B)).toMatchObject({ width: 832, height: 480, frames: 81, latent_patches: 32_760 });
    expect(referenceSize(TI2V5B)).toMatchObject({ width: 1280, height: 704, frames: 121, latent_patches: 27_280 });
  });

  it('one unit = one forward at the smallest supported size', () => {
    for (const m of [A14B, I2V, TI2V5B, W13B]) {
      const r = referenceSize(m);
      const p = priceRequest({ model: m, width: r.width, height: r.height, frames: r.frames, steps: 1, cfg: false });
      expect(p.units).toBe(1);
      expect(p.forward_passes).toBe(1);
    }
    const portrait = priceRequest({ model: A14B, width: 480, height: 832, frames: 81, steps: 1, cfg: false });
    expect(portrait.units).toBe(1);
    const video = priceRequest({ model: A14B, width: 832, height: 480, frames: 81, steps: 40, cfg: true });
    expect(video.forward_passes).toBe(80);
    expect(video.units).toBeCloseTo(80, 10);
  });

  it('units equal FLOPs relative to the reference forward; per-video totals match research §4.3', () => {
    const p480 = priceRequest({ model: A14B, width: 832, height: 480, frames: 81, steps: 40, cfg: true });
    const p720 = priceRequest({ model: A14B, width: 1280, height: 720, frames: 81, steps: 40, cfg: true });
    expect(rel(p480.flops, 134.3 * PF)).toBeLessThan(1e-3);
    expect(rel(p720.flops, 521.9 * PF)).toBeLessThan(1e-3);
    expect(rel(p720.units, p720.flops / forwardFlops(A14B, 32_760, 512, 1).total)).toBeLessThan(1e-12);
    const p5b = priceRequest({ model: TI2V5B, width: 1280, height: 704, frames: 121, steps: 50, cfg: true });
    expect(rel(p5b.flops, 51.7 * PF)).toBeLessThan(2e-3);
    const p13 = priceRequest({ model: W13B, width: 832, height: 480, frames: 81, steps: 50, cfg: true });
    expect(rel(p13.flops, 28.3 * PF)).toBeLessThan(2e-3);
    expect(priceRequest({ model: A14B, width: 832, height: 480, frames: 81, steps: 40, cfg: false }).forward_passes).toBe(40);
    // at the H100 dense BF16 peak (989 TFLOP/s): 136 s and 528 s (research §4.3)
    expect(gpuSeconds(p480.flops, 989)).toBeCloseTo(135.8, 0);
    expect(gpuSeconds(p720.flops, 989)).toBeCloseTo(527.7, 0);
    expect(() => gpuSeconds(1, 0)).toThrow(InputError);
  });

  it('T2V-A14B 1280×720×81 costs 3.887× 832×480×81, more than the 2.31× token ratio', () => {
    const p480 = priceRequest({ model: A14B, width: 832, height: 480, frames: 81, steps: 40, cfg: true });
    const p720 = priceRequest({ model: A14B, width: 1280, height: 720, frames: 81, steps: 40, cfg: true });
    const tokenRatio = p720.latent_patches / p480.latent_patches; // 75,600 / 32,760 = 2.3077
    const ratio = p720.units / p480.units; // 310.94 / 80 units = 3.887
    expect(tokenRatio).toBeCloseTo(2.3077, 4);
    expect(p480.units).toBeCloseTo(80, 6);
    expect(p720.units).toBeCloseTo(310.94, 2);
    expect(ratio).toBeCloseTo(3.8868, 4);
    // Why more than 2.31×: every Linear (QKVO, cross Q/O, FFN, patch embed, head) and the
    // cross-attention core are linear in N and grow 2.31×, but the self-attention core
    // (QKᵀ and PV, 4·N²·D per block) grows with N²: 2.31² = 5.33×. At 480p that quadratic term
    // is already 52 % of a forward's FLOPs (72 % at 720p), so the blend is
    // 0.476·2.31 + 0.524·5.33 ≈ 3.89×. The ratio lies strictly between the linear and the
    // quadratic growth.
    expect(p480.quadratic_share).toBeCloseTo(0.524, 2);
    expect(p720.quadratic_share).toBeCloseTo(0.718, 2);
    const blend = (1 - p480.quadratic_share) * tokenRatio + p480.quadratic_share * tokenRatio ** 2;
    expect(rel(ratio, blend)).toBeLessThan(1e-3); // γ (text K/V + text MLP) is the small rest
    expect(ratio).toBeGreaterThan(tokenRatio);
    expect(ratio).toBeLessThan(tokenRatio ** 2);
  });

  it('uses fitted coefficients when given, keeping one unit = one reference forward', () => {
    const fit = { alpha: 1e-9, beta: 2e-5, gamma: 0.1 };
    const r = priceRequest({ model: A14B, width: 832, height: 480, frames: 81, steps: 1, cfg: false, fit });
    expect(r.units).toBe(1);
    expect(r.coefficients).toBe('fit');
    const p = priceRequest({ model: A14B, width: 1280, height: 720, frames: 81, steps: 40, cfg: true, fit });
    const c = (n: number) => fit.alpha * n * n + fit.beta * n + fit.gamma;
    expect(p.units).toBeCloseTo((80 * c(75_600)) / c(32_760), 9);
    expect(p.fitted_seconds).toBeCloseTo(80 * c(75_600), 9);
    expect(p.flops).toBe(priceRequest({ model: A14B, width: 1280, height: 720, frames: 81, steps: 40, cfg: true }).flops);
    expect(() => priceRequest({ ...p, model: A14B, width: 832, height: 480, frames: 81, steps: 1, cfg: false, fit: { alpha: -1, beta: 1 } })).toThrow(InputError);
    expect(() => priceRequest({ model: A14B, width: 832, height: 480, frames: 81, steps: 0, cfg: false })).toThrow(InputError);
  });
});

describe('fitAlphaBeta', () => {
  const tokens = [8_190, 16_380, 27_280, 32_760, 75_600, 111_600];

  it('recovers known α, β, γ from synthetic points', () => {
    const [a, b, g] = [2.4e-9, 3.1e-5, 0.07];
    const fit = fitAlphaBeta(tokens.map((n) => ({ tokens: n, seconds: a * n * n + b * n + g })));
    expect(rel(fit.alpha, a)).toBeLessThan(1e-8);
    expect(rel(fit.beta, b)).toBeLessThan(1e-8);
    expect(rel(fit.gamma, g)).toBeLessThan(1e-6);
    expect(fit.rmse).toBeLessThan(1e-9);
    const noIntercept = fitAlphaBeta(tokens.map((n) => ({ tokens: n, seconds: a * n * n + b * n })), { intercept: false });
    expect(rel(noIntercept.alpha, a)).toBeLessThan(1e-8);
    expect(rel(noIntercept.beta, b)).toBeLessThan(1e-8);
    expect(noIntercept.gamma).toBe(0);
  });

  it('recovers the FLOP model from timings at a constant achieved rate', () => {
    const rate = 450e12; // FLOP/s
    const co = flopCoefficients(A14B, 512, 1);
    const fit = fitAlphaBeta(tokens.map((n) => ({ tokens: n, seconds: forwardFlops(A14B, n, 512, 1).total / rate })));
    expect(rel(fit.alpha * rate, co.alpha)).toBeLessThan(1e-6);
    expect(rel(fit.beta * rate, co.beta)).toBeLessThan(1e-6);
  });

  it('tolerates noise and keeps every coefficient non-negative', () => {
    const [a, b] = [2e-9, 4e-5];
    let s = 1;
    const noise = () => ((s = (s * 16807) % 2147483647) / 2147483647 - 0.5) * 0.02; // ±1 %
    const fit = fitAlphaBeta(tokens.flatMap((n) => [0, 1, 2].map(() => ({ tokens: n, seconds: (a * n * n + b * n) * (1 + noise()) }))));
    expect(rel(fit.alpha, a)).toBeLessThan(0.05);
    expect(rel(fit.beta, b)).toBeLessThan(0.2);
    expect(fit.gamma).toBeGreaterThanOrEqual(0);
    // a concave-looking set would want a negative α: it is clamped to 0
    const concave = fitAlphaBeta(tokens.map((n) => ({ tokens: n, seconds: Math.sqrt(n) })));
    expect(concave.alpha).toBe(0);
    expect(concave.beta).toBeGreaterThanOrEqual(0);
    expect(concave.gamma).toBeGreaterThanOrEqual(0);
  });

  it('clear errors for too few or bad points', () => {
    expect(() => fitAlphaBeta([{ tokens: 1, seconds: 1 }, { tokens: 2, seconds: 2 }])).toThrow(/at least 3 bench points/);
    expect(() => fitAlphaBeta([{ tokens: 1, seconds: 1 }, { tokens: 1, seconds: 2 }, { tokens: 2, seconds: 2 }])).toThrow(/distinct token counts/);
    expect(() => fitAlphaBeta([{ tokens: -1, seconds: 1 }, { tokens: 1, seconds: 2 }, { tokens: 2, seconds: 2 }])).toThrow(InputError);
    expect(() => fitAlphaBeta(tokens.map((n) => ({ tokens: n, seconds: 0 })))).toThrow(InputError);
    expect(() => parseBenchFile('{"points": [{"tokens": 1}]}')).toThrow(InputError);
    expect(() => parseBenchFile('nope')).toThrow(InputError);
    expect(parseBenchFile('{"model":"m","points":[{"tokens":1,"seconds":2}]}')).toEqual({ model: 'm', points: [{ tokens: 1, seconds: 2 }] });
  });
});

// ---- the command (uses the native addon for model configs) -----------------------------------------

async function runPrice(args: string[]): Promise<string> {
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
    chunks.push(String(s));
    return true;
  });
  try {
    await priceCommand().exitOverride().parseAsync(args, { from: 'user' });
  } finally {
    spy.mockRestore();
  }
  return chunks.join('');
}

describe('dit-poc price', () => {
  it('--json for one size starts with {latent_patches, forward_passes, flops, units}', async () => {
    const j = JSON.parse(await runPrice(['--model', 'wan2.2-t2v-a14b', '--width', '1280', '--height', '720', '--json', '--tflops', '500']));
    expect(Object.keys(j).slice(0, 4)).toEqual(['latent_patches', 'forward_passes', 'flops', 'units']);
    expect(j.latent_patches).toBe(75_600);
    expect(j.forward_passes).toBe(80);
    expect(j.units).toBeCloseTo(310.94, 2);
    expect(j.gpu_seconds).toBeCloseTo(j.flops / 500e12, 6);
    const nocfg = JSON.parse(await runPrice(['--model', 'wan2.1-t2v-1.3b', '--width', '832', '--height', '480', '--no-cfg', '--steps', '1', '--json']));
    expect(nocfg.units).toBe(1);
    expect(nocfg.forward_passes).toBe(1);
  });

  it('the addon configs agree with the ones these tests use', async () => {
    const { addon } = await import('../src/engine/native.js');
    for (const m of [A14B, I2V, TI2V5B, W13B]) expect(addon().models().find((x) => x.id === m.id)).toMatchObject(m);
  });

  it('prints a table of every supported size without a size, and text for one size', async () => {
    const table = await runPrice([]);
    for (const id of pricedModelIds()) expect(table).toContain(id);
    expect(table).toMatch(/wan2\.2-t2v-a14b\s+1280×720×81\s+40\s+80\s+75,600/);
    const one = await runPrice(['--model', 'wan2.2-ti2v-5b', '--width', '1280', '--height', '704']);
    expect(one).toContain('latent patches   27,280');
    expect(one).toContain('forward passes   100');
  });

  it('--fit fits α, β, γ from a bench file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'price-'));
    const file = join(dir, 'bench.json');
    const [a, b, g] = [3e-9, 2e-5, 0.05];
    writeFileSync(file, JSON.stringify({ model: 'wan2.2-t2v-a14b', points: [8190, 32760, 75600].map((n) => ({ tokens: n, seconds: a * n * n + b * n + g })) }));
    const j = JSON.parse(await runPrice(['--fit', file, '--width', '1280', '--height', '720', '--json']));
    expect(j.coefficients).toBe('fit');
    expect(rel(j.alpha, a)).toBeLessThan(1e-6);
    expect(j.fitted_seconds).toBeCloseTo(80 * (a * 75600 ** 2 + b * 75600 + g), 3);
    await expect(runPrice(['--fit', file, '--model', 'wan2.1-t2v-1.3b'])).rejects.toThrow(/measured on model/);
  });

  it('input errors', async () => {
    await expect(runPrice(['--model', 'wan2.2-t2v-a14b', '--width', '1280'])).rejects.toThrow(InputError);
    await expect(runPrice(['--model', 'nope'])).rejects.toThrow(/unknown model/);
    await expect(runPrice(['--model', 'wan2.2-t2v-a14b', '--width', '1280', '--height', '721'])).rejects.toThrow(/height must be divisible/);
    await expect(runPrice(['--width', '1280', '--height', '720'])).rejects.toThrow(/needs --model/);
  });

  it.skipIf(!existsSync(new URL('../src/report/plots.ts', import.meta.url)))('--plot writes a PNG', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'price-')), 'cost.png');
    await runPrice(['--plot', file]);
    expect(readFileSync(file).subarray(1, 4).toString()).toBe('PNG');
  });
});
