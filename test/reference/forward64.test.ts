/**
 * Self-checks of the float64 reference forward (test/reference/forward64.ts).
 * These test the reference against math facts, not against the native engine.
 */
import seedrandom from 'seedrandom';
import { describe, expect, it } from 'vitest';
import {
  applyRope3d,
  attention,
  householderInPlace,
  layerNorm,
  referenceDenoise,
  referenceForward,
  roundToBf16,
  ropePairs,
  sinusoidalEmbedding,
  unpatchify,
  weightShapes,
  type RefConfig,
  type RefInputs,
  type WeightGetter,
} from './forward64.js';

// ---------------------------------------------------------------------------------------------
// Seeded helpers
// ---------------------------------------------------------------------------------------------

function gaussian(seed: string, n: number): Float64Array {
  const rng = seedrandom(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = Math.max(rng(), 1e-12);
    const u2 = rng();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** Random bf16-exact weights with SPEC §6's σ/μ rules (seedrandom instead of the SPEC RNG). */
function randomWeights(cfg: RefConfig, seed: string): WeightGetter {
  const shapes = weightShapes(cfg);
  const cache = new Map<string, Float32Array>();
  return (expert, key) => {
    const ck = `${expert}:${key}`;
    const hit = cache.get(ck);
    if (hit) return hit;
    const shape = shapes.get(key);
    if (!shape) throw new Error(`no such key ${key}`);
    const numel = shape.reduce((a, b) => a * b, 1);
    let mu = 0;
    let sigma: number;
    if (key.endsWith('modulation')) sigma = 1 / Math.sqrt(cfg.dim);
    else if (key.includes('norm')) (mu = 1), (sigma = 0.02);
    else if (key.endsWith('.bias')) sigma = 0.02;
    else sigma = 1 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1));
    const g = gaussian(`${seed}_${expert}_${key}`, numel);
    const w = new Float32Array(numel);
    for (let i = 0; i < numel; i++) w[i] = roundToBf16(mu + sigma * g[i]!);
    cache.set(ck, w);
    return w;
  };
}

function unitF32(seed: string, n: number): Float32Array {
  const g = gaussian(seed, n);
  let s = 0;
  for (const v of g) s += v * v;
  const inv = 1 / Math.sqrt(s);
  return Float32Array.from(g, (v) => v * inv);
}

function randomInputs(cfg: RefConfig, grid: [number, number, number], ctxLen: number, seed: string): RefInputs {
  const [F, H, W] = grid;
  const [pt, ph, pw] = cfg.patch;
  return {
    grid,
    latent: Float32Array.from(gaussian(`${seed}_latent`, cfg.inChannels * F * pt * H * ph * W * pw)),
    context: Float32Array.from(gaussian(`${seed}_context`, ctxLen * cfg.textDim)),
    ctxLen,
    timestep: 637,
    experts: new Array<number>(cfg.numLayers).fill(0),
    householder: Array.from({ length: cfg.numLayers }, (_, i) => unitF32(`${seed}_hh_${i}`, cfg.dim)),
  };
}

function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

const TINY: RefConfig = {
  dim: 256,
  ffnDim: 64,
  numHeads: 2,
  numLayers: 1,
  inChannels: 4,
  outChannels: 4,
  headDim: 128,
  textDim: 64,
  freqDim: 256,
  eps: 1e-6,
  patch: [1, 2, 2],
};

// ---------------------------------------------------------------------------------------------
// Op-level checks
// ---------------------------------------------------------------------------------------------

describe('roundToBf16', () => {
  it('rounds to nearest even and is idempotent', () => {
    expect(roundToBf16(1)).toBe(1);
    expect(roundToBf16(1 + 2 ** -8)).toBe(1); // tie → even (1)
    expect(roundToBf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6); // tie → even (1 + 2ulp)
    expect(roundToBf16(1 + 2 ** -8 + 2 ** -12)).toBe(1 + 2 ** -7); // above tie → up
    expect(roundToBf16(-1.00390625)).toBe(-1);
    expect(roundToBf16(0)).toBe(0);
    expect(Object.is(roundToBf16(-0), -0)).toBe(true);
    expect(roundToBf16(Infinity)).toBe(Infinity);
    expect(Number.isNaN(roundToBf16(NaN))).toBe(true);
    expect(roundToBf16(3.4028234663852886e38)).toBe(Infinity); // max f32 overflows bf16
    const g = gaussian('bf16', 1000);
    for (const v of g) {
      const r = roundToBf16(v);
      expect(roundToBf16(r)).toBe(r);
      expect(Math.abs(r - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8 * 1.0000001);
    }
  });
});

describe('sinusoidalEmbedding', () => {
  it('is cos-first with ω_i = 10000^(−i/128)', () => {
    const e0 = sinusoidalEmbedding(0, 256);
    for (let i = 0; i < 128; i++) {
      expect(e0[i]).toBe(1);
      expect(e0[128 + i]).toBe(0);
    }
    const e = sinusoidalEmbedding(500, 256);
    expect(e[0]).toBeCloseTo(Math.cos(500), 12);
    expect(e[128]).toBeCloseTo(Math.sin(500), 12);
    expect(e[64]).toBeCloseTo(Math.cos(500 * 10000 ** -0.5), 12);
  });
});

describe('RoPE 3D', () => {
  it('splits 64 pairs as 22/21/21 with the band-local frequencies', () => {
    const { axis, omega } = ropePairs(128);
    const counts = [0, 0, 0];
    for (const a of axis) counts[a]!++;
    expect(counts).toEqual([22, 21, 21]);
    expect(omega[0]).toBe(1);
    expect(omega[1]).toBeCloseTo(10000 ** (-2 / 44), 15);
    expect(omega[22]).toBe(1);
    expect(omega[23]).toBeCloseTo(10000 ** (-2 / 42), 15);
    expect(omega[43]).toBe(1);
    expect(omega[63]).toBeCloseTo(10000 ** (-40 / 42), 15);
  });

  it('preserves every pair norm, leaves position 0 alone, rotates by pos·ω', () => {
    const grid: [number, number, number] = [2, 3, 4];
    const L = 24;
    const H = 2;
    const d = 128;
    const x0 = gaussian('rope', L * H * d);
    const x = Float64Array.from(x0);
    applyRope3d(x, grid, H, d);
    for (let l = 0; l < L; l++) {
      for (let p = 0; p < (H * d) / 2; p++) {
        const o = l * H * d + 2 * p;
        const n0 = Math.hypot(x0[o]!, x0[o + 1]!);
        const n1 = Math.hypot(x[o]!, x[o + 1]!);
        expect(Math.abs(n1 - n0)).toBeLessThan(1e-12 * Math.max(1, n0));
      }
    }
    // token 0 is (0,0,0): identity
    for (let i = 0; i < H * d; i++) expect(x[i]).toBe(x0[i]);
    // token (f=1, h=2, w=3) = l 23: pair 0 (frame, ω=1) rotates by 1; pair 22 (height, ω=1) by 2;
    // pair 43 (width, ω=1) by 3; the same in head 1.
    const l = 1 * 12 + 2 * 4 + 3;
    for (const [pair, ang] of [[0, 1], [22, 2], [43, 3], [64 + 0, 1], [64 + 22, 2], [64 + 43, 3]] as const) {
      const o = l * H * d + 2 * pair;
      const a = x0[o]!;
      const b = x0[o + 1]!;
      expect(x[o]).toBeCloseTo(a * Math.cos(ang) - b * Math.sin(ang), 12);
      expect(x[o + 1]).toBeCloseTo(a * Math.sin(ang) + b * Math.cos(ang), 12);
    }
    // a height-only token leaves frame and width pairs untouched
    const lh = 1 * 4; // (0,1,0)
    for (let p = 0; p < 64; p++) {
      const o = lh * H * d + 2 * p;
      if (p < 22 || p >= 43) {
        expect(x[o]).toBe(x0[o]);
        expect(x[o + 1]).toBe(x0[o + 1]);
      } else {
        expect(x[o] === x0[o] && x[o + 1] === x0[o + 1]).toBe(false);
      }
    }
  });
});

describe('attention', () => {
  it('returns v when there is a single key', () => {
    const H = 2;
    const d = 128;
    const Lq = 5;
    const q = gaussian('att_q', Lq * H * d);
    const k = gaussian('att_k', H * d);
    const v = gaussian('att_v', H * d);
    const out = attention(q, k, v, Lq, 1, H, d);
    for (let i = 0; i < Lq; i++) {
      for (let e = 0; e < H * d; e++) expect(out[i * H * d + e]).toBeCloseTo(v[e]!, 14);
    }
  });

  it('averages v uniformly for a zero query and is per head', () => {
    const H = 2;
    const d = 128;
    const Lk = 4;
    const q = new Float64Array(H * d);
    const k = gaussian('att_k2', Lk * H * d);
    const v = gaussian('att_v2', Lk * H * d);
    const out = attention(q, k, v, 1, Lk, H, d);
    for (let e = 0; e < H * d; e++) {
      let m = 0;
      for (let j = 0; j < Lk; j++) m += v[j * H * d + e]!;
      expect(out[e]).toBeCloseTo(m / Lk, 13);
    }
  });
});

describe('layerNorm', () => {
  it('gives mean 0 and variance ≈ 1 per row', () => {
    const D = 256;
    const rows = 7;
    const x = gaussian('ln', rows * D).map((v, i) => 3 * v + (i % 5) - 10);
    const y = layerNorm(x, rows, D, 1e-6);
    for (let r = 0; r < rows; r++) {
      let m = 0;
      for (let i = 0; i < D; i++) m += y[r * D + i]!;
      m /= D;
      let v = 0;
      for (let i = 0; i < D; i++) v += (y[r * D + i]! - m) ** 2;
      v /= D;
      expect(Math.abs(m)).toBeLessThan(1e-12);
      expect(Math.abs(v - 1)).toBeLessThan(1e-6);
    }
  });
});

describe('householder', () => {
  it('preserves token norms and is an involution', () => {
    const D = 256;
    const rows = 6;
    const w = unitF32('hh', D);
    const x0 = gaussian('hx', rows * D);
    const x = householderInPlace(Float64Array.from(x0), rows, D, w);
    for (let r = 0; r < rows; r++) {
      let n0 = 0;
      let n1 = 0;
      for (let i = 0; i < D; i++) {
        n0 += x0[r * D + i]! ** 2;
        n1 += x[r * D + i]! ** 2;
      }
      // w is float32-normalised, so ‖w‖ = 1 only to ~1e-7
      expect(Math.abs(Math.sqrt(n1) - Math.sqrt(n0))).toBeLessThan(1e-6 * Math.sqrt(n0));
    }
    expect(relL2(x, x0)).toBeGreaterThan(1e-3);
    householderInPlace(x, rows, D, w);
    expect(relL2(x, x0)).toBeLessThan(1e-6);
  });
});

// ---------------------------------------------------------------------------------------------
// Whole-forward checks
// ---------------------------------------------------------------------------------------------

describe('referenceForward (tiny config)', () => {
  const weights = randomWeights(TINY, 'tiny');
  const base = randomInputs(TINY, [1, 2, 2], 3, 'tiny_in');
  const L = 4;
  const M = L * 4 * TINY.outChannels;
  const y = referenceForward(TINY, weights, base, { roundBf16: false });

  it('has the right length, is finite and non-trivial', () => {
    expect(y).toBeInstanceOf(Float64Array);
    expect(y.length).toBe(M);
    for (const v of y) expect(Number.isFinite(v)).toBe(true);
    let n = 0;
    for (const v of y) n += v * v;
    expect(Math.sqrt(n)).toBeGreaterThan(1e-3);
  });

  it('is deterministic', () => {
    const y2 = referenceForward(TINY, weights, base, { roundBf16: false });
    expect(Array.from(y2)).toEqual(Array.from(y));
    const yb1 = referenceForward(TINY, weights, base, { roundBf16: true });
    const yb2 = referenceForward(TINY, weights, base, { roundBf16: true });
    expect(Array.from(yb2)).toEqual(Array.from(yb1));
  });

  it('changes with the expert bit, unless both experts hold the same weights', () => {
    const y1 = referenceForward(TINY, weights, { ...base, experts: [1] }, { roundBf16: false });
    expect(relL2(y1, y)).toBeGreaterThan(1e-2);
    const same: WeightGetter = (_x, key) => weights(0, key);
    const s0 = referenceForward(TINY, same, base, { roundBf16: false });
    const s1 = referenceForward(TINY, same, { ...base, experts: [1] }, { roundBf16: false });
    expect(Array.from(s1)).toEqual(Array.from(s0));
    expect(Array.from(s0)).toEqual(Array.from(y));
  });

  it('changes with the timestep', () => {
    const yt = referenceForward(TINY, weights, { ...base, timestep: 638 }, { roundBf16: false });
    expect(relL2(yt, y)).toBeGreaterThan(1e-6);
    const yt2 = referenceForward(TINY, weights, { ...base, timestep: 10 }, { roundBf16: false });
    expect(relL2(yt2, y)).toBeGreaterThan(1e-3);
  });

  it('changes with the Householder vector and the context', () => {
    const yh = referenceForward(
      TINY,
      weights,
      { ...base, householder: [unitF32('other', TINY.dim)] },
      { roundBf16: false },
    );
    expect(relL2(yh, y)).toBeGreaterThan(1e-3);
    const ctx = Float32Array.from(base.context, (v, i) => (i < TINY.textDim ? -v : v));
    const yc = referenceForward(TINY, weights, { ...base, context: ctx }, { roundBf16: false });
    expect(relL2(yc, y)).toBeGreaterThan(1e-6);
  });

  it('bf16 rounding moves the output slightly, not wildly', () => {
    const yb = referenceForward(TINY, weights, base, { roundBf16: true });
    const rel = relL2(yb, y);
    expect(rel).toBeGreaterThan(1e-5);
    expect(rel).toBeLessThan(0.1);
  });

  it('rejects malformed inputs', () => {
    expect(() => referenceForward(TINY, weights, { ...base, experts: [0, 0] }, { roundBf16: false })).toThrow();
    expect(() => referenceForward(TINY, weights, { ...base, experts: [2] }, { roundBf16: false })).toThrow();
    expect(() =>
      referenceForward(TINY, weights, { ...base, latent: base.latent.subarray(1) }, { roundBf16: false }),
    ).toThrow();
    const bad: WeightGetter = (x, key) => (key.endsWith('ffn.0.weight') ? new Float32Array(1) : weights(x, key));
    expect(() => referenceForward(TINY, bad, base, { roundBf16: false })).toThrow(/ffn\.0\.weight/);
  });
});

describe('referenceForward (wan-tiny size)', () => {
  it('runs D=256, L=32, ctxLen=16, 4 layers, two experts in a few seconds', () => {
    const cfg: RefConfig = { ...TINY, ffnDim: 512, numLayers: 4, inChannels: 16, outChannels: 16, textDim: 4096 };
    const weights = randomWeights(cfg, 'wan-tiny');
    const inputs = { ...randomInputs(cfg, [2, 4, 4], 16, 'wan-tiny_in'), experts: [0, 1, 1, 0] };
    const t0 = performance.now();
    const y = referenceForward(cfg, weights, inputs, { roundBf16: true });
    const ms = performance.now() - t0;
    expect(y.length).toBe(32 * 4 * 16);
    for (const v of y) expect(Number.isFinite(v)).toBe(true);
    const y64 = referenceForward(cfg, weights, inputs, { roundBf16: false });
    const rel = relL2(y, y64);
    expect(rel).toBeGreaterThan(1e-5);
    expect(rel).toBeLessThan(0.1);
    expect(ms).toBeLessThan(10000);
  }, 60000);
});

describe('unpatchify and referenceDenoise (SPEC §13 step 4)', () => {
  it('scatters token (f,h,w) value ((a·ph+i)·pw+j)·C+c to [c, f·pt+a, h·ph+i, w·pw+j]', () => {
    const grid: [number, number, number] = [2, 3, 5];
    const C = 3;
    const y = Float64Array.from({ length: 30 * 4 * C }, (_, i) => i);
    const out = unpatchify(y, C, grid, [1, 2, 2]);
    expect(out.length).toBe(y.length);
    const [Fz, Hz, Wz] = [2, 6, 10];
    for (let c = 0; c < C; c++)
      for (let f = 0; f < Fz; f++)
        for (let h = 0; h < Hz; h++)
          for (let w = 0; w < Wz; w++) {
            const tok = (f * 3 + Math.floor(h / 2)) * 5 + Math.floor(w / 2);
            const want = tok * 4 * C + ((h % 2) * 2 + (w % 2)) * C + c;
            expect(out[((c * Fz + f) * Hz + h) * Wz + w]).toBe(want);
          }
    // A permutation: every value once.
    expect(Array.from(out).sort((a, b) => a - b)).toEqual(Array.from(y));
    expect(() => unpatchify(y.subarray(1), C, grid, [1, 2, 2])).toThrow(/unpatchify/);
  });

  it('denoises to the latent shape, deterministically, per expert, and rejects bad shapes', () => {
    const weights = randomWeights(TINY, 'tiny');
    const base = randomInputs(TINY, [1, 2, 2], 3, 'tiny_in');
    const inputs = { latentShape: [4, 1, 4, 4] as [number, number, number, number], latent: base.latent, context: base.context, ctxLen: 3, timestep: 637, expert: 0 };
    const y = referenceDenoise(TINY, weights, inputs, { roundBf16: false });
    expect(y.length).toBe(4 * 1 * 4 * 4);
    for (const v of y) expect(Number.isFinite(v)).toBe(true);
    expect(Array.from(referenceDenoise(TINY, weights, inputs, { roundBf16: false }))).toEqual(Array.from(y));
    expect(relL2(referenceDenoise(TINY, weights, { ...inputs, expert: 1 }, { roundBf16: false }), y)).toBeGreaterThan(1e-2);
    // Without reflections it is not the nonce forward (which reflects after the block).
    const nonce = unpatchify(referenceForward(TINY, weights, base, { roundBf16: false }), 4, [1, 2, 2], [1, 2, 2]);
    expect(relL2(nonce, y)).toBeGreaterThan(1e-3);
    expect(() => referenceDenoise(TINY, weights, { ...inputs, latentShape: [3, 1, 4, 4] }, { roundBf16: false })).toThrow(/channels/);
    expect(() => referenceDenoise(TINY, weights, { ...inputs, latentShape: [4, 1, 3, 4] }, { roundBf16: false })).toThrow(/patch/);
    expect(() => referenceDenoise(TINY, weights, { ...inputs, expert: 2 }, { roundBf16: false })).toThrow(/expert/);
  });
});
