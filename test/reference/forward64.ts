/**
 * Independent float64 reference of one nonce's Wan2.2 DiT forward (SPEC §5 steps 5–8).
 *
 * Written from /work/shared/SPEC.md (§3, §5, §7) and research/wan22-architecture.md §1–§2 only,
 * never from the native engine. All arithmetic is float64; when `opts.roundBf16` is set, the
 * operands that SPEC §7 says are bf16 (GEMM A-operands and attention q/k/v) are rounded to bf16
 * (round-to-nearest-even, via float32) exactly at the points marked `[round]` below. Weights are
 * used as given (already bf16-exact). The time MLPs and the head take fp32 inputs (no rounding).
 *
 * Layouts (all row-major):
 *   latent   [C_in, F·pt, H·ph, W·pw]       (patch (1,2,2) → [C_in, F, 2H, 2W])
 *   context  [ctxLen, textDim]
 *   x        [L, D], tokens in (f, h, w) row-major order, L = F·H·W
 *   y        [L, pt·ph·pw·C_out], the head's own output order (no unpatchify)
 *
 * referenceDenoise (SPEC §13 step 4) is the same forward on one expert without reflections,
 * its output unpatchified to [C_out, F·pt, H·ph, W·pw] as the official WanModel.unpatchify.
 */

export interface RefConfig {
  dim: number;
  ffnDim: number;
  numHeads: number;
  numLayers: number;
  inChannels: number;
  outChannels: number;
  headDim: number;
  textDim: number;
  freqDim: number;
  eps: number;
  patch: [number, number, number];
}

export interface RefInputs {
  /** [F, H, W] latent-patch grid, L = F*H*W tokens */
  grid: [number, number, number];
  /** [C_in, F, 2H, 2W] row-major (patch 1,2,2) */
  latent: Float32Array;
  /** [ctxLen, textDim] row-major */
  context: Float32Array;
  ctxLen: number;
  /** integer 0..999 */
  timestep: number;
  /** per-layer routing bit r_i (0|1); single-expert models pass all 0 */
  experts: ArrayLike<number>;
  /** per-layer unit vector w_i of length D (already unit-normalised, float32) */
  householder: Float32Array[];
}

/** Values as stored (bf16-exact floats), row-major, official key names and shapes. */
export type WeightGetter = (expert: number, officialKey: string) => Float32Array;

export interface RefOptions {
  /** true: round GEMM A-operands and attention q/k/v to bf16 where SPEC §7 says; false: none */
  roundBf16: boolean;
}

type Vec = Float64Array;
type Weights = ArrayLike<number>;

// ---------------------------------------------------------------------------------------------
// Scalar helpers
// ---------------------------------------------------------------------------------------------

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/**
 * Round to bf16, nearest-even, via the float32 bit pattern: the value is first rounded to
 * float32 (as the fp32 engine holds it), then the low 16 mantissa bits are rounded off.
 * NaN stays NaN; overflow past the largest bf16 goes to ±Infinity.
 */
export function roundToBf16(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0]!;
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return NaN;
  const lsb = (bits >>> 16) & 1;
  u32Scratch[0] = ((bits + 0x7fff + lsb) >>> 0) & 0xffff0000;
  return f32Scratch[0]!;
}

/** A rounded copy of `a` when `round`, else `a` itself (callers never mutate GEMM inputs). */
function maybeRound(a: Vec, round: boolean): Vec {
  if (!round) return a;
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = roundToBf16(a[i]!);
  return out;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU with the tanh approximation: 0.5·u·(1 + tanh(√(2/π)·(u + 0.044715·u³))). */
export function geluTanh(u: number): number {
  return 0.5 * u * (1 + Math.tanh(SQRT_2_OVER_PI * (u + 0.044715 * u * u * u)));
}

/** SiLU(u) = u / (1 + e^−u). */
export function silu(u: number): number {
  return u / (1 + Math.exp(-u));
}

function mapInPlace(a: Vec, f: (u: number) => number): Vec {
  for (let i = 0; i < a.length; i++) a[i] = f(a[i]!);
  return a;
}

// ---------------------------------------------------------------------------------------------
// Tensor ops (one function per op)
// ---------------------------------------------------------------------------------------------

/** y[r, o] = Σ_k x[r, k]·W[o, k] + b[o]  (nn.Linear, W stored [out, in]). */
export function linear(
  x: Vec,
  rows: number,
  inDim: number,
  W: Weights,
  b: Weights | null,
  outDim: number,
): Vec {
  if (x.length !== rows * inDim) throw new Error(`linear: x has ${x.length}, want ${rows}×${inDim}`);
  if (W.length !== outDim * inDim) throw new Error(`linear: W has ${W.length}, want ${outDim}×${inDim}`);
  // Copy the weight to float64 once so the inner loop is float64 × float64.
  const w = W instanceof Float64Array ? W : Float64Array.from(W);
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    const xo = r * inDim;
    const yo = r * outDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let s = 0;
      for (let k = 0; k < inDim; k++) s += x[xo + k]! * w[wo + k]!;
      y[yo + o] = b ? s + b[o]! : s;
    }
  }
  return y;
}

/**
 * LayerNorm over the last axis (size D): biased variance, eps; optional affine (weight, bias).
 * Used without affine for norm1/norm2/head.norm and with affine for norm3 (§1.4 step 6).
 */
export function layerNorm(
  x: Vec,
  rows: number,
  D: number,
  eps: number,
  weight?: Weights,
  bias?: Weights,
): Vec {
  const y = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    let mean = 0;
    for (let i = 0; i < D; i++) mean += x[o + i]!;
    mean /= D;
    let v = 0;
    for (let i = 0; i < D; i++) {
      const d = x[o + i]! - mean;
      v += d * d;
    }
    v /= D;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < D; i++) {
      let t = (x[o + i]! - mean) * inv;
      if (weight) t *= weight[i]!;
      if (bias) t += bias[i]!;
      y[o + i] = t;
    }
  }
  return y;
}

/** RMSNorm over the full D (across heads): y = x / sqrt(mean(x²) + eps) · w. */
export function rmsNorm(x: Vec, rows: number, D: number, eps: number, weight: Weights): Vec {
  const y = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    let ms = 0;
    for (let i = 0; i < D; i++) ms += x[o + i]! * x[o + i]!;
    ms /= D;
    const inv = 1 / Math.sqrt(ms + eps);
    for (let i = 0; i < D; i++) y[o + i] = x[o + i]! * inv * weight[i]!;
  }
  return y;
}

/** adaLN modulation in place: x ← x·(1 + scale) + shift, scale/shift broadcast over rows. */
export function modulateInPlace(x: Vec, rows: number, D: number, shift: Vec, scale: Vec): Vec {
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    for (let i = 0; i < D; i++) x[o + i] = x[o + i]! * (1 + scale[i]!) + shift[i]!;
  }
  return x;
}

/** Residual update in place: x ← x + y·gate (gate broadcast over rows; null gate = 1). */
export function residualAddInPlace(x: Vec, y: Vec, rows: number, D: number, gate: Vec | null): Vec {
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    for (let i = 0; i < D; i++) x[o + i] = x[o + i]! + (gate ? y[o + i]! * gate[i]! : y[o + i]!);
  }
  return x;
}

/** Sinusoidal timestep encoding (§2.3): ω_i = 10000^(−i/half), [cos(t·ω), sin(t·ω)], cos first. */
export function sinusoidalEmbedding(t: number, freqDim: number): Vec {
  const half = freqDim / 2;
  const out = new Float64Array(freqDim);
  for (let i = 0; i < half; i++) {
    const a = t * Math.pow(10000, -i / half);
    out[i] = Math.cos(a);
    out[half + i] = Math.sin(a);
  }
  return out;
}

/**
 * 3D RoPE pair table (§1.5): for head dim d, c = d/2 complex pairs split
 * [c − 2⌊c/3⌋, ⌊c/3⌋, ⌊c/3⌋] over (frame, height, width). Inside a band of real width n
 * (44 / 42 / 42 for d = 128), pair j rotates with ω_j = 10000^(−2j/n).
 */
export function ropePairs(headDim: number): { axis: Int32Array; omega: Float64Array } {
  const c = headDim / 2;
  const band = [c - 2 * Math.floor(c / 3), Math.floor(c / 3), Math.floor(c / 3)];
  const axis = new Int32Array(c);
  const omega = new Float64Array(c);
  let p = 0;
  for (let a = 0; a < 3; a++) {
    const n = 2 * band[a]!; // real width of the band
    for (let j = 0; j < band[a]!; j++, p++) {
      axis[p] = a;
      omega[p] = Math.pow(10000, (-2 * j) / n);
    }
  }
  return { axis, omega };
}

/**
 * Apply 3D RoPE in place to x [L, numHeads·headDim] (§1.5): token l sits at (f, h, w) of the
 * grid in row-major order; pair (2j, 2j+1) of every head is multiplied by e^{i·pos_axis(j)·ω_j}.
 */
export function applyRope3d(
  x: Vec,
  grid: readonly [number, number, number],
  numHeads: number,
  headDim: number,
): Vec {
  const [F, H, W] = grid;
  const L = F * H * W;
  const inner = numHeads * headDim;
  if (x.length !== L * inner) throw new Error(`rope: x has ${x.length}, want ${L}×${inner}`);
  const { axis, omega } = ropePairs(headDim);
  const c = headDim / 2;
  const cos = new Float64Array(c);
  const sin = new Float64Array(c);
  for (let l = 0; l < L; l++) {
    const pos = [Math.floor(l / (H * W)), Math.floor(l / W) % H, l % W];
    for (let j = 0; j < c; j++) {
      const ang = pos[axis[j]!]! * omega[j]!;
      cos[j] = Math.cos(ang);
      sin[j] = Math.sin(ang);
    }
    for (let hd = 0; hd < numHeads; hd++) {
      const o = l * inner + hd * headDim;
      for (let j = 0; j < c; j++) {
        const a = x[o + 2 * j]!;
        const b = x[o + 2 * j + 1]!;
        // (a + ib)(cos + i sin)
        x[o + 2 * j] = a * cos[j]! - b * sin[j]!;
        x[o + 2 * j + 1] = a * sin[j]! + b * cos[j]!;
      }
    }
  }
  return x;
}

/**
 * Multi-head scaled-dot-product attention, full and non-causal (§1.4 step 4):
 * per head h (columns [h·d, (h+1)·d)), out = softmax(q kᵀ / √d) v with a float64 softmax.
 * q [Lq, H·d], k, v [Lk, H·d] → out [Lq, H·d].
 */
export function attention(
  q: Vec,
  k: Vec,
  v: Vec,
  Lq: number,
  Lk: number,
  numHeads: number,
  headDim: number,
): Vec {
  const inner = numHeads * headDim;
  if (q.length !== Lq * inner || k.length !== Lk * inner || v.length !== Lk * inner) {
    throw new Error('attention: shape mismatch');
  }
  const scale = 1 / Math.sqrt(headDim);
  const out = new Float64Array(Lq * inner);
  const p = new Float64Array(Lk);
  for (let hd = 0; hd < numHeads; hd++) {
    const ho = hd * headDim;
    for (let i = 0; i < Lq; i++) {
      const qo = i * inner + ho;
      let max = -Infinity;
      for (let j = 0; j < Lk; j++) {
        const ko = j * inner + ho;
        let s = 0;
        for (let e = 0; e < headDim; e++) s += q[qo + e]! * k[ko + e]!;
        s *= scale;
        p[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 0; j < Lk; j++) {
        p[j] = Math.exp(p[j]! - max);
        sum += p[j]!;
      }
      const oo = i * inner + ho;
      for (let j = 0; j < Lk; j++) {
        const wgt = p[j]! / sum;
        const vo = j * inner + ho;
        for (let e = 0; e < headDim; e++) out[oo + e] = out[oo + e]! + wgt * v[vo + e]!;
      }
    }
  }
  return out;
}

/** Householder reflection of every token in place (§5 step 7): x ← x − 2(w·x)w. */
export function householderInPlace(x: Vec, rows: number, D: number, w: Weights): Vec {
  if (w.length !== D) throw new Error(`householder: w has ${w.length}, want ${D}`);
  for (let r = 0; r < rows; r++) {
    const o = r * D;
    let dot = 0;
    for (let i = 0; i < D; i++) dot += w[i]! * x[o + i]!;
    for (let i = 0; i < D; i++) x[o + i] = x[o + i]! - 2 * dot * w[i]!;
  }
  return x;
}

/**
 * Patchify the latent (§2.1): latent [C, F·pt, H·ph, W·pw] → [L, C·pt·ph·pw], tokens (f, h, w)
 * row-major, each patch flattened (c, pt, ph, pw) with c slowest — the Conv3d weight layout
 * [D, C, pt, ph, pw], so the Conv3d becomes a Linear.
 */
export function patchify(
  latent: ArrayLike<number>,
  C: number,
  grid: readonly [number, number, number],
  patch: readonly [number, number, number],
): Vec {
  const [F, H, W] = grid;
  const [pt, ph, pw] = patch;
  const FF = F * pt, HH = H * ph, WW = W * pw;
  if (latent.length !== C * FF * HH * WW) {
    throw new Error(`patchify: latent has ${latent.length}, want ${C}×${FF}×${HH}×${WW}`);
  }
  const P = C * pt * ph * pw;
  const out = new Float64Array(F * H * W * P);
  let l = 0;
  for (let f = 0; f < F; f++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++, l++) {
        let k = l * P;
        for (let c = 0; c < C; c++) {
          for (let a = 0; a < pt; a++) {
            for (let b = 0; b < ph; b++) {
              for (let d = 0; d < pw; d++) {
                out[k++] = latent[((c * FF + f * pt + a) * HH + h * ph + b) * WW + w * pw + d]!;
              }
            }
          }
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Weight key table (official names, §5.2 of the architecture notes)
// ---------------------------------------------------------------------------------------------

/** Every official tensor of one expert with its shape, in a stable order. */
export function weightShapes(cfg: RefConfig): Map<string, number[]> {
  const { dim: D, ffnDim: FF, inChannels: Cin, outChannels: Cout, textDim, freqDim } = cfg;
  const [pt, ph, pw] = cfg.patch;
  const m = new Map<string, number[]>();
  m.set('patch_embedding.weight', [D, Cin, pt, ph, pw]);
  m.set('patch_embedding.bias', [D]);
  m.set('text_embedding.0.weight', [D, textDim]);
  m.set('text_embedding.0.bias', [D]);
  m.set('text_embedding.2.weight', [D, D]);
  m.set('text_embedding.2.bias', [D]);
  m.set('time_embedding.0.weight', [D, freqDim]);
  m.set('time_embedding.0.bias', [D]);
  m.set('time_embedding.2.weight', [D, D]);
  m.set('time_embedding.2.bias', [D]);
  m.set('time_projection.1.weight', [6 * D, D]);
  m.set('time_projection.1.bias', [6 * D]);
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `blocks.${i}.`;
    m.set(p + 'modulation', [1, 6, D]);
    for (const at of ['self_attn', 'cross_attn']) {
      for (const n of ['q', 'k', 'v', 'o']) {
        m.set(`${p}${at}.${n}.weight`, [D, D]);
        m.set(`${p}${at}.${n}.bias`, [D]);
      }
      m.set(`${p}${at}.norm_q.weight`, [D]);
      m.set(`${p}${at}.norm_k.weight`, [D]);
    }
    m.set(p + 'norm3.weight', [D]);
    m.set(p + 'norm3.bias', [D]);
    m.set(p + 'ffn.0.weight', [FF, D]);
    m.set(p + 'ffn.0.bias', [FF]);
    m.set(p + 'ffn.2.weight', [D, FF]);
    m.set(p + 'ffn.2.bias', [D]);
  }
  m.set('head.head.weight', [pt * ph * pw * Cout, D]);
  m.set('head.head.bias', [pt * ph * pw * Cout]);
  m.set('head.modulation', [1, 2, D]);
  return m;
}

/** Caching, shape-checking view over a WeightGetter. */
class WeightStore {
  private readonly cache = new Map<string, Float64Array>();
  private readonly shapes: Map<string, number[]>;
  constructor(cfg: RefConfig, private readonly get: WeightGetter) {
    this.shapes = weightShapes(cfg);
  }
  w(expert: number, key: string): Float64Array {
    const ck = `${expert}:${key}`;
    let t = this.cache.get(ck);
    if (!t) {
      const shape = this.shapes.get(key);
      if (!shape) throw new Error(`unknown weight key ${key}`);
      const raw = this.get(expert, key);
      const numel = shape.reduce((a, b) => a * b, 1);
      if (raw.length !== numel) {
        throw new Error(`weight ${key} (expert ${expert}) has ${raw.length} values, want [${shape}]`);
      }
      t = Float64Array.from(raw);
      this.cache.set(ck, t);
    }
    return t;
  }
}

// ---------------------------------------------------------------------------------------------
// Model pieces
// ---------------------------------------------------------------------------------------------

interface ExpertConditioning {
  /** time embedding e [D] (used by the head) */
  e: Vec;
  /** timestep projection e0 [6, D] (shared by every block of this expert) */
  e0: Vec;
  /** embedded text context [ctxLen, D] */
  ctx: Vec;
}

/**
 * SPEC §5 step 5 for one expert: e = time_embedding(sinusoid(t)), e0 = time_projection(SiLU(e)),
 * ctx = text_embedding(c). Time MLPs are the fp32 path (no rounding); the text MLP rounds its
 * GEMM inputs (c and the GELU output) when roundBf16.
 */
function conditioning(
  cfg: RefConfig,
  W: WeightStore,
  x: number,
  inputs: RefInputs,
  round: boolean,
): ExpertConditioning {
  const D = cfg.dim;
  // Time embedding: Linear(freq→D) → SiLU → Linear(D→D).
  const sin = sinusoidalEmbedding(inputs.timestep, cfg.freqDim);
  const t0 = linear(sin, 1, cfg.freqDim, W.w(x, 'time_embedding.0.weight'), W.w(x, 'time_embedding.0.bias'), D);
  const e = linear(mapInPlace(t0, silu), 1, D, W.w(x, 'time_embedding.2.weight'), W.w(x, 'time_embedding.2.bias'), D);
  // Time projection: SiLU → Linear(D→6D); rows [kD, (k+1)D) are chunk k.
  const se = mapInPlace(Float64Array.from(e), silu);
  const e0 = linear(se, 1, D, W.w(x, 'time_projection.1.weight'), W.w(x, 'time_projection.1.bias'), 6 * D);
  // Text embedding: Linear(textDim→D) → GELU_tanh → Linear(D→D), GEMM inputs [round].
  const c = maybeRound(Float64Array.from(inputs.context), round);
  const c0 = linear(c, inputs.ctxLen, cfg.textDim, W.w(x, 'text_embedding.0.weight'), W.w(x, 'text_embedding.0.bias'), D);
  const g = maybeRound(mapInPlace(c0, geluTanh), round);
  const ctx = linear(g, inputs.ctxLen, D, W.w(x, 'text_embedding.2.weight'), W.w(x, 'text_embedding.2.bias'), D);
  return { e, e0, ctx };
}

/** SPEC §5 step 6: Conv3d patch embedding as a Linear over patchified tokens, input [round]. */
function patchEmbedding(cfg: RefConfig, W: WeightStore, x: number, inputs: RefInputs, round: boolean): Vec {
  const [pt, ph, pw] = cfg.patch;
  const P = cfg.inChannels * pt * ph * pw;
  const L = inputs.grid[0] * inputs.grid[1] * inputs.grid[2];
  const patches = maybeRound(patchify(inputs.latent, cfg.inChannels, inputs.grid, cfg.patch), round);
  return linear(patches, L, P, W.w(x, 'patch_embedding.weight'), W.w(x, 'patch_embedding.bias'), cfg.dim);
}

/**
 * SPEC §5 step 7, one WanAttentionBlock (architecture §1.4) with expert x, in place on
 * the residual stream `res` [L, D].
 */
function block(
  cfg: RefConfig,
  W: WeightStore,
  i: number,
  x: number,
  res: Vec,
  cond: ExpertConditioning,
  inputs: RefInputs,
  round: boolean,
): void {
  const D = cfg.dim;
  const L = inputs.grid[0] * inputs.grid[1] * inputs.grid[2];
  const Lc = inputs.ctxLen;
  const eps = cfg.eps;
  const H = cfg.numHeads;
  const d = cfg.headDim;
  const p = `blocks.${i}.`;
  const w = (k: string) => W.w(x, p + k);

  // §1.3: m = modulation + e0 → six [D] vectors.
  const mod = w('modulation');
  const chunk = (k: number): Vec => {
    const v = new Float64Array(D);
    for (let j = 0; j < D; j++) v[j] = mod[k * D + j]! + cond.e0[k * D + j]!;
    return v;
  };
  const [shiftMsa, scaleMsa, gateMsa, shiftFfn, scaleFfn, gateFfn] = [0, 1, 2, 3, 4, 5].map(chunk) as [
    Vec, Vec, Vec, Vec, Vec, Vec,
  ];

  // ---- Self-attention (§1.4 steps 1–5) ----
  const h1 = maybeRound(modulateInPlace(layerNorm(res, L, D, eps), L, D, shiftMsa, scaleMsa), round);
  const q = rmsNorm(linear(h1, L, D, w('self_attn.q.weight'), w('self_attn.q.bias'), D), L, D, eps, w('self_attn.norm_q.weight'));
  const k = rmsNorm(linear(h1, L, D, w('self_attn.k.weight'), w('self_attn.k.bias'), D), L, D, eps, w('self_attn.norm_k.weight'));
  const v = linear(h1, L, D, w('self_attn.v.weight'), w('self_attn.v.bias'), D);
  applyRope3d(q, inputs.grid, H, d);
  applyRope3d(k, inputs.grid, H, d);
  const a = maybeRound(
    attention(maybeRound(q, round), maybeRound(k, round), maybeRound(v, round), L, L, H, d),
    round,
  );
  const o = linear(a, L, D, w('self_attn.o.weight'), w('self_attn.o.bias'), D);
  residualAddInPlace(res, o, L, D, gateMsa);

  // ---- Cross-attention (§1.4 steps 6–7): affine LN, no RoPE, no gate ----
  const c = maybeRound(layerNorm(res, L, D, eps, w('norm3.weight'), w('norm3.bias')), round);
  const ctx = maybeRound(cond.ctx, round);
  const cq = rmsNorm(linear(c, L, D, w('cross_attn.q.weight'), w('cross_attn.q.bias'), D), L, D, eps, w('cross_attn.norm_q.weight'));
  const ck = rmsNorm(linear(ctx, Lc, D, w('cross_attn.k.weight'), w('cross_attn.k.bias'), D), Lc, D, eps, w('cross_attn.norm_k.weight'));
  const cv = linear(ctx, Lc, D, w('cross_attn.v.weight'), w('cross_attn.v.bias'), D);
  const ca = maybeRound(
    attention(maybeRound(cq, round), maybeRound(ck, round), maybeRound(cv, round), L, Lc, H, d),
    round,
  );
  const co = linear(ca, L, D, w('cross_attn.o.weight'), w('cross_attn.o.bias'), D);
  residualAddInPlace(res, co, L, D, null);

  // ---- FFN (§1.4 steps 8–10) ----
  const h2 = maybeRound(modulateInPlace(layerNorm(res, L, D, eps), L, D, shiftFfn, scaleFfn), round);
  const u = mapInPlace(linear(h2, L, D, w('ffn.0.weight'), w('ffn.0.bias'), cfg.ffnDim), geluTanh);
  const y = linear(maybeRound(u, round), L, cfg.ffnDim, w('ffn.2.weight'), w('ffn.2.bias'), D);
  residualAddInPlace(res, y, L, D, gateFfn);
}

/** SPEC §5 step 8 / architecture §2.4: (shift, scale) = head.modulation + e; fp32 path, no rounding. */
function head(cfg: RefConfig, W: WeightStore, x: number, res: Vec, L: number, e: Vec): Vec {
  const D = cfg.dim;
  const mod = W.w(x, 'head.modulation');
  const shift = new Float64Array(D);
  const scale = new Float64Array(D);
  for (let j = 0; j < D; j++) {
    shift[j] = mod[j]! + e[j]!;
    scale[j] = mod[D + j]! + e[j]!;
  }
  const hn = modulateInPlace(layerNorm(res, L, D, cfg.eps), L, D, shift, scale);
  const outDim = cfg.patch[0] * cfg.patch[1] * cfg.patch[2] * cfg.outChannels;
  return linear(hn, L, D, W.w(x, 'head.head.weight'), W.w(x, 'head.head.bias'), outDim);
}

// ---------------------------------------------------------------------------------------------
// Full forward
// ---------------------------------------------------------------------------------------------

/**
 * One nonce's DiT forward, SPEC §5 steps 5–8, in float64. Returns y [L, pt·ph·pw·C_out]
 * flattened row-major (the head's own output order).
 */
export function referenceForward(
  cfg: RefConfig,
  weights: WeightGetter,
  inputs: RefInputs,
  opts: RefOptions,
): Float64Array {
  const { numLayers } = cfg;
  checkConfig(cfg);
  if (inputs.experts.length !== numLayers) throw new Error(`experts: want ${numLayers} routing bits`);
  if (inputs.householder.length !== numLayers) throw new Error(`householder: want ${numLayers} vectors`);
  if (inputs.context.length !== inputs.ctxLen * cfg.textDim) throw new Error('context: shape mismatch');
  if (!Number.isInteger(inputs.timestep)) throw new Error('timestep must be an integer');
  return forwardTokens(cfg, new WeightStore(cfg, weights), inputs, true, opts.roundBf16);
}

function checkConfig(cfg: RefConfig): void {
  if (cfg.numLayers < 1) throw new Error('numLayers must be ≥ 1');
  if (cfg.numHeads * cfg.headDim !== cfg.dim) throw new Error('numHeads·headDim must equal dim');
  if (cfg.headDim % 2 !== 0) throw new Error('headDim must be even');
  if (cfg.freqDim % 2 !== 0) throw new Error('freqDim must be even');
}

/** Steps 5–8 on validated inputs; `reflect` = false leaves out every Householder reflection. */
function forwardTokens(cfg: RefConfig, W: WeightStore, inputs: RefInputs, reflect: boolean, round: boolean): Vec {
  const { dim: D, numLayers } = cfg;
  const L = inputs.grid[0] * inputs.grid[1] * inputs.grid[2];
  const r = Array.from(inputs.experts, (b) => {
    if (b !== 0 && b !== 1) throw new Error(`routing bit ${b} is not 0|1`);
    return b;
  });

  // Step 5: per-expert conditioning, only for experts some layer uses.
  const cond = new Map<number, ExpertConditioning>();
  for (const x of new Set(r)) cond.set(x, conditioning(cfg, W, x, inputs, round));

  // Step 6: patch embedding with expert r_0.
  const res = patchEmbedding(cfg, W, r[0]!, inputs, round);

  // Step 7: blocks, each followed by the per-layer Householder reflection.
  for (let i = 0; i < numLayers; i++) {
    block(cfg, W, i, r[i]!, res, cond.get(r[i]!)!, inputs, round);
    if (reflect) householderInPlace(res, L, D, inputs.householder[i]!);
  }

  // Step 8: head with the last layer's expert and its e.
  const xl = r[numLayers - 1]!;
  return head(cfg, W, xl, res, L, cond.get(xl)!.e);
}

// ---------------------------------------------------------------------------------------------
// Denoiser forward (SPEC §13 step 4)
// ---------------------------------------------------------------------------------------------

export interface RefDenoiseInputs {
  /** [C_in, F, H, W], F/H/W multiples of the patch */
  latentShape: [number, number, number, number];
  /** row-major [C_in, F, H, W] */
  latent: Float32Array;
  /** one context [ctxLen, textDim] row-major */
  context: Float32Array;
  ctxLen: number;
  /** integer 0..999 */
  timestep: number;
  /** the expert every layer runs on */
  expert: number;
}

/**
 * Unpatchify as the official Wan2.2 `WanModel.unpatchify` (architecture §2.5): the token
 * vector is viewed as (pt, ph, pw, C) with C fastest, tokens (f, h, w) row-major, and scattered
 * to out[c, f·pt + a, h·ph + i, w·pw + j]. y [L, pt·ph·pw·C] → [C, F·pt, H·ph, W·pw].
 */
export function unpatchify(
  y: ArrayLike<number>,
  C: number,
  grid: readonly [number, number, number],
  patch: readonly [number, number, number],
): Float64Array {
  const [F, H, W] = grid;
  const [pt, ph, pw] = patch;
  const V = pt * ph * pw * C;
  if (y.length !== F * H * W * V) throw new Error(`unpatchify: y has ${y.length}, want ${F * H * W}×${V}`);
  const FF = F * pt, HH = H * ph, WW = W * pw;
  const out = new Float64Array(C * FF * HH * WW);
  for (let f = 0; f < F; f++) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        const tok = (f * H + h) * W + w;
        for (let a = 0; a < pt; a++) {
          for (let i = 0; i < ph; i++) {
            for (let j = 0; j < pw; j++) {
              for (let c = 0; c < C; c++) {
                const src = tok * V + ((a * ph + i) * pw + j) * C + c;
                out[((c * FF + f * pt + a) * HH + h * ph + i) * WW + w * pw + j] = y[src]!;
              }
            }
          }
        }
      }
    }
  }
  return out;
}

/**
 * SPEC §13 step 4's f(x, t, context) in float64: the §5 forward on the given latent, timestep
 * and context with every layer on `expert`, no Householder reflections, and the head output
 * unpatchified to the latent's shape. Returns [C_out, F, H, W] row-major.
 */
export function referenceDenoise(
  cfg: RefConfig,
  weights: WeightGetter,
  inputs: RefDenoiseInputs,
  opts: RefOptions,
): Float64Array {
  checkConfig(cfg);
  const [C, F, H, W] = inputs.latentShape;
  const [pt, ph, pw] = cfg.patch;
  if (C !== cfg.inChannels) throw new Error(`latent has ${C} channels, want ${cfg.inChannels}`);
  if (F % pt !== 0 || H % ph !== 0 || W % pw !== 0) throw new Error('latent shape is not a multiple of the patch');
  if (inputs.latent.length !== C * F * H * W) throw new Error('latent: shape mismatch');
  if (inputs.context.length !== inputs.ctxLen * cfg.textDim) throw new Error('context: shape mismatch');
  if (!Number.isInteger(inputs.timestep)) throw new Error('timestep must be an integer');
  if (inputs.expert !== 0 && inputs.expert !== 1) throw new Error(`expert ${inputs.expert} is not 0|1`);
  const grid: [number, number, number] = [F / pt, H / ph, W / pw];
  const y = forwardTokens(
    cfg,
    new WeightStore(cfg, weights),
    {
      grid,
      latent: inputs.latent,
      context: inputs.context,
      ctxLen: inputs.ctxLen,
      timestep: inputs.timestep,
      experts: new Array<number>(cfg.numLayers).fill(inputs.expert),
      householder: [],
    },
    false,
    opts.roundBf16,
  );
  return unpatchify(y, cfg.outChannels, grid, cfg.patch);
}
