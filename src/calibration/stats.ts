// Statistics for calibrating the validator's stat_test (SPEC §10) from measured distances.
//
// A calibration run recomputes the same nonces under several configurations and records, per
// nonce, the L2 distance ‖a_config − a_reference‖₂ between artifacts. "Benign" configurations are
// honest recomputations that differ only in float rounding (other backend, precision of
// accumulation, batch size, thread count); "malign" ones are cheaper tampered computations (one
// expert instead of two, a skipped block, fp8/int4 weights, …). Following DiFR
// (research/verification-literature.md §1.3) we report, per malign configuration, how well a
// distance threshold separates it from the honest ones (ROC, AUC, partial AUC at low FPR), and
// following Gonka PoC v2 (research/gonka-poc.md §5.5) we set dist_threshold at the 98th
// percentile of honest distances, so that an honest nonce mismatches with probability ≈ 2 %
// = p_mismatch.
//
// Convention everywhere: a sample is *flagged* (counted as a mismatch) when distance > threshold,
// strictly, as the validator does. All functions are pure; bad input throws InputError.
import { InputError } from '../errors.js';
import { binomialPower } from '../validation/binomial.js';
import type { StatTest } from '../validation/verdict.js';

function checkValues(values: readonly number[], what: string, nonNegative: boolean): void {
  if (!Array.isArray(values)) throw new InputError(`${what} must be an array of numbers`);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    // +Infinity is allowed (a distance to a non-finite artifact is "infinitely far"); NaN is not,
    // because NaN > threshold is false and would silently count as a match.
    if (typeof v !== 'number' || Number.isNaN(v) || v === -Infinity || (nonNegative && v < 0)) {
      const range = nonNegative ? 'a number ≥ 0 (or +Infinity)' : 'a number (not NaN)';
      throw new InputError(`${what}[${i}] must be ${range}, got ${String(v)}`);
    }
  }
}

function sortedCopy(values: readonly number[]): number[] {
  return Array.from(Float64Array.from(values).sort()); // typed-array sort is numeric
}

/**
 * The q-quantile of an ascending-sorted sample, linear interpolation between order statistics
 * (Hyndman & Fan type 7, the default of R, NumPy and Excel's PERCENTILE.INC):
 *   h = (n − 1)·q,  Q(q) = x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋]).
 * So Q(0) = min, Q(1) = max, Q(0.5) = the usual median. Throws InputError on an empty or unsorted
 * array, NaN, or q outside [0, 1].
 */
export function quantile(sorted: readonly number[], q: number): number {
  if (!Array.isArray(sorted) || sorted.length === 0) {
    throw new InputError('quantile: need a non-empty sorted array');
  }
  if (typeof q !== 'number' || !(q >= 0 && q <= 1)) {
    throw new InputError(`quantile: q must be in [0, 1], got ${String(q)}`);
  }
  for (let i = 0; i < sorted.length; i++) {
    const v = sorted[i];
    if (typeof v !== 'number' || Number.isNaN(v)) {
      throw new InputError(`quantile: sorted[${i}] must be a number (not NaN), got ${String(v)}`);
    }
    if (i > 0 && v < sorted[i - 1]) throw new InputError(`quantile: array is not sorted at index ${i}`);
  }
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const frac = h - lo;
  const a = sorted[lo];
  if (frac === 0 || lo + 1 >= sorted.length) return a;
  const b = sorted[lo + 1];
  if (a === b) return a; // also keeps Infinity − Infinity out of the formula
  return a + frac * (b - a);
}

/** Distribution summary of one configuration's distances. */
export interface DistanceSummary {
  n: number;
  p50: number;
  p98: number;
  /** 99.9th percentile. */
  p999: number;
  max: number;
  mean: number;
}

/** n, median, 98th and 99.9th percentile (type 7), max and mean of non-negative distances. */
export function summarize(distances: readonly number[]): DistanceSummary {
  checkValues(distances, 'distances', true);
  if (distances.length === 0) throw new InputError('summarize: need at least one distance');
  const s = sortedCopy(distances);
  let sum = 0;
  for (const v of s) sum += v;
  return {
    n: s.length,
    p50: quantile(s, 0.5),
    p98: quantile(s, 0.98),
    p999: quantile(s, 0.999),
    max: s[s.length - 1],
    mean: sum / s.length,
  };
}

/** Candidate dist_thresholds from honest distances: their 98th and 99.9th percentiles. */
export function thresholds(honestDistances: readonly number[]): { p98: number; p999: number } {
  const { p98, p999 } = summarize(honestDistances);
  return { p98, p999 };
}

/** Fraction of distances strictly above threshold (the mismatch rate the validator would see). */
export function mismatchRate(distances: readonly number[], threshold: number): number {
  checkValues(distances, 'distances', true);
  if (distances.length === 0) throw new InputError('mismatchRate: need at least one distance');
  let k = 0;
  for (const v of distances) if (v > threshold) k++;
  return k / distances.length;
}

export interface RocCurve {
  /** False-positive rate: fraction of benign distances > thresholds[i]. Non-decreasing. */
  fpr: number[];
  /** True-positive rate: fraction of malign distances > thresholds[i]. Non-decreasing. */
  tpr: number[];
  thresholds: number[];
}

/**
 * ROC of the detector "flag when distance > threshold" (benign = negatives, malign = positives).
 * thresholds are every distinct observed distance in decreasing order (the first, the maximum,
 * flags nothing: point (0, 0)) followed by −Infinity, which flags everything: point (1, 1).
 * Consecutive points are joined by straight lines; a threshold at which benign and malign
 * samples tie yields a diagonal segment, which is what makes the trapezoidal area equal the
 * Mann–Whitney AUC with ties counted ½.
 */
export function rocCurve(benign: readonly number[], malign: readonly number[]): RocCurve {
  checkValues(benign, 'benign', false);
  checkValues(malign, 'malign', false);
  if (benign.length === 0 || malign.length === 0) {
    throw new InputError('rocCurve: need at least one benign and one malign distance');
  }
  const b = sortedCopy(benign).reverse();
  const m = sortedCopy(malign).reverse();
  const nb = b.length;
  const nm = m.length;
  const fpr: number[] = [];
  const tpr: number[] = [];
  const ths: number[] = [];
  // Walk both descending lists; after consuming every value ≥ … we are at a distinct value t,
  // and the counts of values strictly greater than t are the indices i, j.
  let i = 0;
  let j = 0;
  while (i < nb || j < nm) {
    const t = Math.max(i < nb ? b[i] : -Infinity, j < nm ? m[j] : -Infinity);
    ths.push(t);
    fpr.push(i / nb);
    tpr.push(j / nm);
    while (i < nb && b[i] === t) i++;
    while (j < nm && m[j] === t) j++;
  }
  ths.push(-Infinity);
  fpr.push(1);
  tpr.push(1);
  return { fpr, tpr, thresholds: ths };
}

/**
 * Exact ROC AUC = P[malign > benign] + ½·P[malign = benign] for an independent pair, via the
 * Mann–Whitney U statistic with mid-ranks for ties: AUC = (R_malign − nm(nm+1)/2) / (nb·nm).
 * 1 = perfectly separated (every malign distance above every benign one), 0.5 = indistinguishable.
 */
export function auc(benign: readonly number[], malign: readonly number[]): number {
  checkValues(benign, 'benign', false);
  checkValues(malign, 'malign', false);
  const nb = benign.length;
  const nm = malign.length;
  if (nb === 0 || nm === 0) throw new InputError('auc: need at least one benign and one malign distance');
  const all: { v: number; malign: boolean }[] = [];
  for (const v of benign) all.push({ v, malign: false });
  for (const v of malign) all.push({ v, malign: true });
  all.sort((x, y) => (x.v < y.v ? -1 : x.v > y.v ? 1 : 0));
  // Ranks are 1-based; a tie group occupying positions [s, e) gets the mid-rank (s + 1 + e) / 2.
  // Sums of half-integers up to ~1e10 are exact in double.
  let rankSumMalign = 0;
  for (let s = 0; s < all.length; ) {
    let e = s + 1;
    while (e < all.length && all[e].v === all[s].v) e++;
    const midRank = (s + 1 + e) / 2;
    for (let k = s; k < e; k++) if (all[k].malign) rankSumMalign += midRank;
    s = e;
  }
  const u = rankSumMalign - (nm * (nm + 1)) / 2;
  return u / (nb * nm);
}

/**
 * Partial AUC over FPR ∈ [0, maxFpr] of the piecewise-linear ROC of rocCurve, with the curve
 * interpolated linearly at FPR = maxFpr.
 *
 * Normalisation: the raw area is divided by maxFpr, so the result lies in [0, 1]: 1 = every
 * malign sample is flagged before any benign one is (TPR = 1 at FPR = 0+), and a chance-level
 * detector (ROC = diagonal) scores maxFpr / 2 (0.005 at the default 1 %), *not* 0.5.
 * (DiFR's "AUC at 1 % FPR" uses McClish's standardisation instead, 0.5 = chance; to convert:
 * mcclish = ½·(1 + (A − maxFpr²/2) / (maxFpr − maxFpr²/2)) with A = partialAuc·maxFpr.)
 * maxFpr = 1 gives the full AUC. Throws InputError unless 0 < maxFpr ≤ 1.
 */
export function partialAuc(benign: readonly number[], malign: readonly number[], maxFpr = 0.01): number {
  if (typeof maxFpr !== 'number' || !(maxFpr > 0 && maxFpr <= 1)) {
    throw new InputError(`partialAuc: maxFpr must be in (0, 1], got ${String(maxFpr)}`);
  }
  const { fpr, tpr } = rocCurve(benign, malign);
  let area = 0;
  for (let k = 1; k < fpr.length; k++) {
    const x0 = fpr[k - 1];
    const x1 = fpr[k];
    if (x0 >= maxFpr) break;
    const y0 = tpr[k - 1];
    if (x1 <= maxFpr) {
      area += ((x1 - x0) * (y0 + tpr[k])) / 2;
    } else {
      const yAt = y0 + ((tpr[k] - y0) * (maxFpr - x0)) / (x1 - x0);
      area += ((maxFpr - x0) * (y0 + yAt)) / 2;
      break;
    }
  }
  return Math.min(1, area / maxFpr);
}

/**
 * Probability that the validator's binomial test (SPEC §10: fraud iff P[X ≥ k] < alpha for
 * X ~ Binomial(n, pMismatchHonest)) convicts a prover that cheats on a fraction cheatFraction = f
 * of its nonces, when a cheated nonce mismatches with probability malignMismatchRate = m and an
 * honest nonce with pMismatchHonest = h. Each of the n sampled nonces then mismatches
 * independently with probability f·m + (1 − f)·h (sampling with replacement; the validator
 * samples without replacement from a large commitment, which differs negligibly).
 * pMismatchHonest is both the null hypothesis p_mismatch and the honest rate.
 */
export function detectionPower(
  n: number,
  pMismatchHonest: number,
  alpha: number,
  malignMismatchRate: number,
  cheatFraction: number,
): number {
  const prob = (x: number, name: string): void => {
    if (typeof x !== 'number' || !(x >= 0 && x <= 1)) {
      throw new InputError(`detectionPower: ${name} must be in [0, 1], got ${String(x)}`);
    }
  };
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new InputError(`detectionPower: n must be a non-negative integer, got ${String(n)}`);
  }
  prob(pMismatchHonest, 'pMismatchHonest');
  prob(malignMismatchRate, 'malignMismatchRate');
  prob(cheatFraction, 'cheatFraction');
  if (typeof alpha !== 'number' || !(alpha > 0 && alpha <= 1)) {
    throw new InputError(`detectionPower: alpha must be in (0, 1], got ${String(alpha)}`);
  }
  const f = cheatFraction;
  const pCheat = Math.min(1, Math.max(0, f * malignMismatchRate + (1 - f) * pMismatchHonest));
  return binomialPower(n, pMismatchHonest, pCheat, alpha).power;
}

/** Smallest dist_threshold chooseStatTest will return (see there). */
export const DIST_THRESHOLD_FLOOR = 1e-3;

export interface ChooseStatTestOptions {
  /** Honest per-nonce mismatch probability; the threshold is the (1 − pMismatch) quantile. Default 0.02. */
  pMismatch?: number;
  /** p_value_threshold (alpha of the binomial test). Default 0.01. */
  pValueThreshold?: number;
  /** Lower bound for dist_threshold. Default DIST_THRESHOLD_FLOOR = 1e-3. */
  floor?: number;
  /** Honest quantile the threshold starts from. Default 1 − pMismatch (Gonka's p98). */
  quantile?: number;
  /** Multiplier on that quantile (headroom for hardware not measured). Default 1. */
  margin?: number;
}

/**
 * Picks the validator's stat_test from honest (benign) distances, one array per configuration:
 *   dist_threshold = max over classes of that class's (1 − p_mismatch) quantile — p98 at the
 *     default p_mismatch 0.02 — so that the *worst* honest configuration mismatches on ≤ 2 % of
 *     nonces (Gonka PoC v2 calibration, gonka-poc.md §5.5); every other honest class mismatches
 *     less, so p_mismatch is conservative for them;
 *   p_mismatch = 0.02, p_value_threshold = 0.01 (SPEC §10 defaults; overridable).
 * The threshold is never below `floor` (default 1e-3): when honest recomputation is bit-exact
 * (every distance 0, or the quantile is 0) a zero threshold would flag any rounding change at
 * all, e.g. from a driver update, so a floor of a few fp16 ulps of a unit-scale artifact is
 * kept. `basis` explains the choice in one line. Throws InputError on no classes, an empty
 * class, or bad distances/options.
 */
export function chooseStatTest(
  honestByClass: Readonly<Record<string, readonly number[]>>,
  opts: ChooseStatTestOptions = {},
): StatTest & { basis: string } {
  const pMismatch = opts.pMismatch ?? 0.02;
  const alpha = opts.pValueThreshold ?? 0.01;
  const floor = opts.floor ?? DIST_THRESHOLD_FLOOR;
  if (typeof pMismatch !== 'number' || !(pMismatch > 0 && pMismatch < 1)) {
    throw new InputError(`chooseStatTest: pMismatch must be in (0, 1), got ${String(pMismatch)}`);
  }
  if (typeof alpha !== 'number' || !(alpha > 0 && alpha <= 1)) {
    throw new InputError(`chooseStatTest: pValueThreshold must be in (0, 1], got ${String(alpha)}`);
  }
  if (typeof floor !== 'number' || !(floor >= 0) || !Number.isFinite(floor)) {
    throw new InputError(`chooseStatTest: floor must be a finite number ≥ 0, got ${String(floor)}`);
  }
  const names = Object.keys(honestByClass ?? {});
  if (names.length === 0) throw new InputError('chooseStatTest: need at least one honest class');
  const q = opts.quantile ?? 1 - pMismatch; // 1 − 0.02 === 0.98 in double, so the default matches summarize().p98
  const margin = opts.margin ?? 1;
  if (!(q > 0 && q <= 1)) throw new InputError(`chooseStatTest: quantile must be in (0, 1], got ${String(q)}`);
  if (!(margin >= 1 && Number.isFinite(margin))) throw new InputError(`chooseStatTest: margin must be ≥ 1, got ${String(margin)}`);
  const pct = `p${+(q * 100).toPrecision(6)}`;
  let worst = '';
  let worstQ = -Infinity;
  let total = 0;
  for (const name of names) {
    const d = honestByClass[name];
    checkValues(d, `honestByClass[${JSON.stringify(name)}]`, true);
    if (d.length === 0) throw new InputError(`chooseStatTest: honest class ${JSON.stringify(name)} is empty`);
    total += d.length;
    const v = quantile(sortedCopy(d), q);
    if (v > worstQ) {
      worstQ = v;
      worst = name;
    }
  }
  if (!Number.isFinite(worstQ)) {
    throw new InputError(
      `chooseStatTest: the ${pct} of honest class ${JSON.stringify(worst)} is infinite; ` +
        'honest recomputation produced non-finite artifacts',
    );
  }
  const floored = margin * worstQ < floor;
  const dist = floored ? floor : margin * worstQ;
  const scaled = margin === 1 ? '' : `${margin} × `;
  const basis =
    `dist_threshold = ${floored ? `floor ${floor} (${scaled}the worst honest ${pct}, ${worstQ}, is below it)` : `${scaled}${pct} of the worst honest class ${JSON.stringify(worst)} (${worstQ})`}` +
    ` over ${names.length} honest class(es), ${total} distances; p_mismatch ${pMismatch}` +
    (opts.quantile === undefined ? ` = 1 − ${q} (honest mismatch rate at that quantile)` : ` (honest mismatch rate at the threshold is at most ${+(1 - q).toPrecision(3)})`) +
    `; p_value_threshold ${alpha}`;
  return { dist_threshold: dist, p_mismatch: pMismatch, p_value_threshold: alpha, basis };
}
