// Pricing of video-generation requests (SPEC §12).
//
// A request (model, width × height × frames, steps, CFG) runs `passes = steps · (CFG ? 2 : 1)`
// DiT forwards over N latent patches each. The cost of one forward is modelled as
//
//     c(N) = α·N² + β·N + γ
//
// and a request costs `units = passes · c(N) / c(N_ref)`, where N_ref is the latent-patch count
// of the model's smallest supported size (table below). So **one unit = one forward at the
// smallest supported size of that model**; units are per model (each model has its own price
// per unit).
//
// α, β, γ come from the FLOP model (flops.ts, one expert per forward, Lc = ctxLen):
//   α = 4·D·layers                                          self-attention QKᵀ and PV (the L² term)
//   β = layers·(12·D² + 4·D·F + 4·Lc·D) + 8·C_in·D + 8·D·C_out   every Linear on video tokens,
//                                                           cross-attention core, patch embed, head
//   γ = layers·4·Lc·D² + 2·Lc·(4096·D + D²)                  text-side cross-attn K/V + text MLP
// γ is kept as its own constant rather than folded into β: then c(N) is *exactly* the forward's
// FLOPs at every size, and `units = flops / flops(reference forward)` holds exactly, so units and
// FLOPs never disagree. SPEC §12's two-term `α·N² + β·N` is the γ = 0 case; γ is < 0.2 % of a
// forward at every supported size (e.g. 2.2 TFLOP of 1.678 PFLOP for A14B 480p).
//
// Optionally α, β, γ are instead fitted to measured timings (`fitAlphaBeta`, seconds per forward
// vs tokens on one device). Units stay dimensionless ratios to the reference forward, now in
// measured time instead of FLOPs.
import { InputError } from '../errors.js';
import { flopCoefficients, forwardFlops, latentGrid, type FlopConfig, type LatentConfig } from './flops.js';

/** A model config as the addon's `models()` returns it (only these fields are used). */
export type PricingModel = FlopConfig & LatentConfig & { id: string };

export interface SupportedSize {
  width: number;
  height: number;
  frames: number;
  /** default sampling steps of the official pipeline */
  steps: number;
  /** classifier-free guidance on (two forwards per step) */
  cfg: boolean;
}

function sizes(dims: [number, number][], frames: number, steps: number): SupportedSize[] {
  return dims.map(([width, height]) => ({ width, height, frames, steps, cfg: true }));
}

// research/wan22-architecture.md §3 (official SUPPORTED_SIZES, sample_steps, frame counts).
const A14B = sizes([[1280, 720], [720, 1280], [832, 480], [480, 832]], 81, 40);
const SUPPORTED: Record<string, SupportedSize[]> = {
  'wan2.2-t2v-a14b': A14B,
  'wan2.2-i2v-a14b': A14B,
  'wan2.2-ti2v-5b': sizes([[1280, 704], [704, 1280]], 121, 50),
  'wan2.1-t2v-1.3b': sizes([[832, 480]], 81, 50),
  // test model: 64×64×5 is its default PoC grid [2,4,4] (SPEC §4); not a real video size
  'wan-tiny': sizes([[64, 64]], 5, 4),
};

/** Model ids that have a supported-sizes table, in table order. */
export function pricedModelIds(): string[] {
  return Object.keys(SUPPORTED);
}

/** The supported video sizes (and default steps, CFG) of a model. */
export function supportedSizes(modelId: string): SupportedSize[] {
  const s = SUPPORTED[modelId];
  if (!s) throw new InputError(`no supported sizes for model '${modelId}' (priced models: ${pricedModelIds().join(', ')})`);
  return s.map((x) => ({ ...x }));
}

/** The smallest supported size (fewest latent patches; first in the table on a tie). */
export function referenceSize(model: PricingModel): SupportedSize & { latent_patches: number } {
  let best: (SupportedSize & { latent_patches: number }) | undefined;
  for (const s of supportedSizes(model.id)) {
    const [f, h, w] = latentGrid(model, s.width, s.height, s.frames);
    const n = f * h * w;
    if (!best || n < best.latent_patches) best = { ...s, latent_patches: n };
  }
  return best!;
}

/** Cost coefficients of one forward: c(N) = alpha·N² + beta·N + gamma (any consistent unit). */
export interface CostFit {
  alpha: number;
  beta: number;
  /** constant per forward; 0 when absent */
  gamma?: number;
}

export interface PriceInput {
  model: PricingModel;
  width: number;
  height: number;
  frames: number;
  steps: number;
  /** classifier-free guidance: two forwards (cond + uncond) per step */
  cfg: boolean;
  /** text tokens (T5 text_len), default 512 */
  ctxLen?: number;
  /** fitted coefficients (seconds per forward); default: the FLOP model's */
  fit?: CostFit;
}

export interface Price {
  latent_patches: number;
  forward_passes: number;
  /** FLOPs of the whole request (FLOP model, one expert per forward) */
  flops: number;
  /** passes · c(N) / c(N_ref) */
  units: number;
  alpha: number;
  beta: number;
  gamma: number;
  /** unit of alpha/beta/gamma: FLOP ('flop-model') or seconds ('fit') */
  coefficients: 'flop-model' | 'fit';
  grid: [number, number, number];
  flops_per_forward: number;
  /** α·N² / c(N): the share of the quadratic (self-attention) term in one forward */
  quadratic_share: number;
  reference: { width: number; height: number; frames: number; latent_patches: number };
  /** passes · c(N) in seconds, only with a fit */
  fitted_seconds?: number;
}

function checkFit(fit: CostFit): void {
  const g = fit.gamma ?? 0;
  for (const [k, v] of [['alpha', fit.alpha], ['beta', fit.beta], ['gamma', g]] as const)
    if (!Number.isFinite(v) || v < 0) throw new InputError(`fit ${k} must be a finite non-negative number, got ${v}`);
  if (fit.alpha === 0 && fit.beta === 0 && g === 0) throw new InputError('fit coefficients are all zero');
}

export function priceRequest(req: PriceInput): Price {
  const ctxLen = req.ctxLen ?? 512;
  if (!Number.isInteger(req.steps) || req.steps <= 0) throw new InputError(`steps must be a positive integer, got ${req.steps}`);
  if (!Number.isInteger(ctxLen) || ctxLen <= 0) throw new InputError(`ctx-len must be a positive integer, got ${ctxLen}`);
  const grid = latentGrid(req.model, req.width, req.height, req.frames);
  const N = grid[0] * grid[1] * grid[2];
  const ref = referenceSize(req.model);
  const passes = req.steps * (req.cfg ? 2 : 1);
  const perForward = forwardFlops(req.model, N, ctxLen, 1).total;

  let co: { alpha: number; beta: number; gamma: number };
  if (req.fit) {
    checkFit(req.fit);
    co = { alpha: req.fit.alpha, beta: req.fit.beta, gamma: req.fit.gamma ?? 0 };
  } else {
    co = flopCoefficients(req.model, ctxLen, 1);
  }
  const cost = (n: number): number => co.alpha * n * n + co.beta * n + co.gamma;
  const c = cost(N);
  const price: Price = {
    latent_patches: N,
    forward_passes: passes,
    flops: passes * perForward,
    units: (passes * c) / cost(ref.latent_patches),
    alpha: co.alpha,
    beta: co.beta,
    gamma: co.gamma,
    coefficients: req.fit ? 'fit' : 'flop-model',
    grid,
    flops_per_forward: perForward,
    quadratic_share: (co.alpha * N * N) / c,
    reference: { width: ref.width, height: ref.height, frames: ref.frames, latent_patches: ref.latent_patches },
  };
  if (req.fit) price.fitted_seconds = passes * c;
  return price;
}

/** Seconds to execute `flops` at an achieved rate of `tflopsPerSecond` TFLOP/s. */
export function gpuSeconds(flops: number, tflopsPerSecond: number): number {
  if (!Number.isFinite(flops) || flops < 0) throw new InputError(`flops must be a non-negative number, got ${flops}`);
  if (!Number.isFinite(tflopsPerSecond) || tflopsPerSecond <= 0)
    throw new InputError(`TFLOP/s must be a positive number, got ${tflopsPerSecond}`);
  return flops / (tflopsPerSecond * 1e12);
}

// ---- fitting to bench timings -------------------------------------------------------------------

export interface BenchPoint {
  /** latent patches (tokens) of the forward */
  tokens: number;
  /** measured seconds of one forward at that size */
  seconds: number;
}

export interface FitResult {
  alpha: number;
  beta: number;
  gamma: number;
  /** root-mean-square residual, seconds */
  rmse: number;
}

/** Solves the square system A·x = b (Gaussian elimination, partial pivoting); null if singular. */
function solve(A: number[][], b: number[]): number[] | null {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]]);
  const scale = Math.max(...A.flat().map(Math.abs), 1e-300);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(M[r][col]) > Math.abs(M[piv][col])) piv = r;
    if (Math.abs(M[piv][col]) <= 1e-12 * scale) return null;
    [M[col], M[piv]] = [M[piv], M[col]];
    for (let r = col + 1; r < n; r++) {
      const f = M[r][col] / M[col][col];
      for (let k = col; k <= n; k++) M[r][k] -= f * M[col][k];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let k = r + 1; k < n; k++) s -= M[r][k] * x[k];
    x[r] = s / M[r][r];
  }
  return x;
}

/**
 * Least-squares fit of `seconds = alpha·N² + beta·N (+ gamma)` to bench points, with every
 * coefficient ≥ 0 (exact non-negative least squares: the best of the unconstrained fits over
 * every subset of the coefficients whose solution is non-negative). `intercept` (default true)
 * fits the constant gamma; otherwise gamma = 0. Needs ≥ 3 points and at least as many distinct
 * token counts as coefficients.
 */
export function fitAlphaBeta(points: BenchPoint[], opts: { intercept?: boolean } = {}): FitResult {
  const intercept = opts.intercept ?? true;
  if (!Array.isArray(points) || points.length < 3)
    throw new InputError(`fitting α, β needs at least 3 bench points {tokens, seconds}, got ${Array.isArray(points) ? points.length : 0}`);
  for (const p of points) {
    if (!Number.isFinite(p?.tokens) || p.tokens <= 0) throw new InputError(`bench point tokens must be a positive number, got ${p?.tokens}`);
    if (!Number.isFinite(p?.seconds) || p.seconds < 0) throw new InputError(`bench point seconds must be a non-negative number, got ${p?.seconds}`);
  }
  const ncoef = intercept ? 3 : 2;
  const distinct = new Set(points.map((p) => p.tokens)).size;
  if (distinct < ncoef)
    throw new InputError(`fitting ${ncoef} coefficients needs bench points at ≥ ${ncoef} distinct token counts, got ${distinct}`);

  // Columns scaled by the largest token count so the normal equations are well conditioned.
  const nMax = Math.max(...points.map((p) => p.tokens));
  const colScale = [nMax * nMax, nMax, 1];
  const rows = points.map((p) => {
    const x = p.tokens / nMax;
    return [x * x, x, 1];
  });
  const y = points.map((p) => p.seconds);
  const cols = intercept ? [0, 1, 2] : [0, 1];

  let best: { coef: number[]; sse: number } | undefined;
  for (let mask = 1; mask < 1 << cols.length; mask++) {
    const S = cols.filter((_, i) => mask & (1 << i));
    const A = S.map((i) => S.map((j) => rows.reduce((s, r) => s + r[i] * r[j], 0)));
    const b = S.map((i) => rows.reduce((s, r, k) => s + r[i] * y[k], 0));
    const x = solve(A, b);
    if (!x || x.some((v) => !(v >= -1e-12 * Math.max(...x.map(Math.abs))))) continue;
    const coef = [0, 0, 0];
    S.forEach((c, k) => (coef[c] = Math.max(0, x[k])));
    const sse = rows.reduce((s, r, k) => s + (r[0] * coef[0] + r[1] * coef[1] + r[2] * coef[2] - y[k]) ** 2, 0);
    if (!best || sse < best.sse) best = { coef, sse };
  }
  if (!best || best.coef.every((v) => v === 0))
    throw new InputError('bench points give no usable fit (every non-negative fit is zero): check the timings');
  return {
    alpha: best.coef[0] / colScale[0],
    beta: best.coef[1] / colScale[1],
    gamma: best.coef[2] / colScale[2],
    rmse: Math.sqrt(best.sse / points.length),
  };
}

/**
 * Parses a bench file for `dit-poc price --fit`:
 *   { "model"?: "wan2.2-t2v-a14b", "points": [ { "tokens": 32760, "seconds": 2.9 }, … ] }
 * `tokens` = latent patches of one forward, `seconds` = its measured wall time on one device.
 */
export function parseBenchFile(text: string, source = 'bench file'): { model?: string; points: BenchPoint[] } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${source}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const d = data as { model?: unknown; points?: unknown };
  if (typeof d !== 'object' || d === null || !Array.isArray(d.points))
    throw new InputError(`${source}: expected {"points": [{"tokens": N, "seconds": S}, …]}`);
  if (d.model !== undefined && typeof d.model !== 'string') throw new InputError(`${source}: "model" must be a string`);
  const points = d.points.map((p: unknown, i: number) => {
    const q = p as { tokens?: unknown; seconds?: unknown };
    if (typeof q !== 'object' || q === null || typeof q.tokens !== 'number' || typeof q.seconds !== 'number')
      throw new InputError(`${source}: points[${i}] must be {"tokens": number, "seconds": number}`);
    return { tokens: q.tokens, seconds: q.seconds };
  });
  return { model: d.model as string | undefined, points };
}
