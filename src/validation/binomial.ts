// Exact binomial tail probabilities for the validator's fraud test (SPEC §10):
//   p_value = P[X ≥ n_mismatch],  X ~ Binomial(n_total, p_mismatch),
// which is what Gonka's ML node computes with scipy's `binomtest(k, n, p, alternative="greater")`
// (research/gonka-poc.md §5.4).
//
// Everything is computed in log space. JS has no lgamma, and a difference of log-gammas
// (ln n! − ln k! − ln (n−k)!) cancels catastrophically for large n: ln 10000! ≈ 82109, so even a
// perfect lgamma leaves an absolute error of ~1e-11 in the log pmf. Instead each pmf term is
// evaluated with Loader's saddle-point form (C. Loader, "Fast and Accurate Computation of Binomial
// Probabilities", 2000; the algorithm behind R's dbinom), written from scratch here:
//   ln b(x; n, p) = δ(n) − δ(x) − δ(n−x) − D(x, np) − D(n−x, nq) − ½·ln(2π·x·(n−x)/n)
// with δ(m) = ln m! − (m+½)ln m + m − ½ln 2π (the Stirling-series error: a small table for m ≤ 15,
// the asymptotic series above that) and the deviance D(x, μ) = x·ln(x/μ) + μ − x evaluated by a
// cancellation-free series when x ≈ μ. Every quantity in that sum is small or cancellation-free,
// so the log pmf has an absolute error of a few ulps of its own magnitude, i.e. the pmf a
// relative error of ~1e-15·max(1, |ln pmf|).
//
// The tail sum starts at its largest term and is summed as Σ exp(ln t_i − ln t_first), stopping
// once a geometric bound on the remainder is below 2^-60 of the sum. When k is at or below the
// mode, the lower tail P[X ≤ k−1] is summed instead and 1 − P[X ≤ k−1] returned, which is safe
// because the result is then ≥ ~1/e (it falls back to the direct sum if the lower tail exceeds ½).

const LN_2PI = Math.log(2 * Math.PI);
const STOP_RATIO = 2 ** -60;

// δ(m) for m = 0..15 (δ(0) is unused: x = 0 and x = n are handled separately). Values from a
// 60-digit computation of ln m! − (m+½)ln m + m − ½ln 2π.
const STIRLERR_SMALL = [
  0, 0.08106146679532725821967026, 0.04134069595540929409382208, 0.02767792568499833914878929,
  0.02079067210376509311152277, 0.01664469118982119216319487, 0.01387612882307074799874573,
  0.01189670994589177009505572, 0.01041126526197209649747857, 0.009255462182712732917728637,
  0.008330563433362871256469319, 0.007573675487951840794972024, 0.006942840107209529865664153,
  0.006408994188004207068439631, 0.005951370112758847735624416, 0.00555473355196280137103869,
];
const S0 = 1 / 12;
const S1 = 1 / 360;
const S2 = 1 / 1260;
const S3 = 1 / 1680;
const S4 = 1 / 1188;

/** δ(m) = ln m! − (m+½)ln m + m − ½ln 2π for an integer m ≥ 1. */
function stirlerr(m: number): number {
  if (m <= 15) return STIRLERR_SMALL[m];
  const mm = m * m;
  if (m > 500) return (S0 - S1 / mm) / m;
  if (m > 80) return (S0 - (S1 - S2 / mm) / mm) / m;
  if (m > 35) return (S0 - (S1 - (S2 - S3 / mm) / mm) / mm) / m;
  return (S0 - (S1 - (S2 - (S3 - S4 / mm) / mm) / mm) / mm) / m;
}

/** Deviance term D(x, μ) = x·ln(x/μ) + μ − x ≥ 0, without cancellation when x ≈ μ. */
function bd0(x: number, mu: number): number {
  if (Math.abs(x - mu) < 0.1 * (x + mu)) {
    let v = (x - mu) / (x + mu);
    let s = (x - mu) * v;
    if (Math.abs(s) < Number.MIN_VALUE) return s;
    let ej = 2 * x * v;
    v *= v;
    for (let j = 1; j < 1000; j++) {
      ej *= v;
      const s1 = s + ej / (2 * j + 1);
      if (s1 === s) return s1;
      s = s1;
    }
    return s;
  }
  const ratio = x / mu;
  const lnRatio = Number.isFinite(ratio) && ratio > 0 ? Math.log(ratio) : Math.log(x) - Math.log(mu);
  return x * lnRatio + mu - x;
}

/** ln(1 − k/n) = ln((n−k)/n) for integers 0 ≤ k < n, without the rounding of k/n near 1. */
function lnOneMinusRatio(k: number, n: number): number {
  return 2 * k < n ? Math.log1p(-k / n) : Math.log((n - k) / n);
}

/** ln P[X = x] for X ~ Binomial(n, p), 0 < p < 1, 0 ≤ x ≤ n (integers, unchecked). */
function logPmfInterior(n: number, x: number, p: number, q: number): number {
  if (x === 0) return n === 0 ? 0 : n * Math.log1p(-p);
  if (x === n) return n * Math.log(p);
  const lc = stirlerr(n) - stirlerr(x) - stirlerr(n - x) - bd0(x, n * p) - bd0(n - x, n * q);
  const lf = LN_2PI + Math.log(x) + lnOneMinusRatio(x, n);
  return lc - 0.5 * lf;
}

function checkArgs(n: number, k: number, p: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`binomial: n must be a non-negative safe integer, got ${n}`);
  }
  if (!Number.isSafeInteger(k)) throw new RangeError(`binomial: k must be a safe integer, got ${k}`);
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) {
    throw new RangeError(`binomial: p must be a number in [0, 1], got ${p}`);
  }
}

/** ln of the sum of pmf terms from `start` going up (dir = +1) or down (dir = −1) to the end. */
function logTailSum(n: number, start: number, p: number, q: number, dir: 1 | -1): number {
  const l0 = logPmfInterior(n, start, p, q);
  const pq = p / q;
  let sum = 1;
  for (let i = start; dir === 1 ? i < n : i > 0; i += dir) {
    const next = i + dir;
    const t = Math.exp(logPmfInterior(n, next, p, q) - l0);
    sum += t;
    // Ratio of the term after `next` to `next`; ratios only decrease further out, so while it is
    // below 1 the remainder is at most t·r/(1−r).
    const r = dir === 1 ? ((n - next) / (next + 1)) * pq : (next / (n - next + 1)) / pq;
    if (r < 1 && t * r <= (1 - r) * sum * STOP_RATIO) break;
  }
  return l0 + Math.log(sum);
}

/**
 * ln P[X ≥ k] for X ~ Binomial(n, p). Stays finite where P underflows double (then it is the
 * log of a number below ~1e-308). Same argument checks and edge cases as binomialTailPValue.
 */
export function logBinomialTailPValue(n: number, k: number, p: number): number {
  checkArgs(n, k, p);
  if (k <= 0) return 0;
  if (k > n) return -Infinity;
  if (p === 0) return -Infinity; // X ≡ 0 and k ≥ 1
  if (p === 1) return 0; // X ≡ n ≥ k
  const q = 1 - p;
  const mode = Math.floor((n + 1) * p);
  if (k <= mode) {
    const lower = Math.exp(logTailSum(n, k - 1, p, q, -1)); // P[X ≤ k−1]
    if (lower <= 0.5) return Math.log1p(-lower);
  }
  return logTailSum(n, k, p, q, 1);
}

/**
 * P[X ≥ k] for X ~ Binomial(n, p): exact up to floating-point rounding (relative error ~1e-15
 * for p-values near 1, growing to ~1e-13 near 1e-300 because exp() of a log of size ~700 cannot
 * do better). Returns 0 only when the true value is below the smallest subnormal double.
 * k ≤ 0 → 1; k > n → 0; p = 0 → 0 for k ≥ 1; p = 1 → 1 for k ≤ n.
 * Throws RangeError unless n is a non-negative integer, k an integer and 0 ≤ p ≤ 1.
 */
export function binomialTailPValue(n: number, k: number, p: number): number {
  return Math.exp(logBinomialTailPValue(n, k, p));
}

/**
 * ln C(n, k) (log binomial coefficient), accurate to a few ulps of its magnitude for all n
 * (same Stirling-error decomposition as the pmf). Throws RangeError unless 0 ≤ k ≤ n integers.
 */
export function logBinomialCoefficient(n: number, k: number): number {
  if (!Number.isSafeInteger(n) || !Number.isSafeInteger(k) || k < 0 || k > n) {
    throw new RangeError(`logBinomialCoefficient: need integers 0 ≤ k ≤ n, got n=${n}, k=${k}`);
  }
  if (k === 0 || k === n) return 0;
  k = Math.min(k, n - k); // C(n, k) = C(n, n−k); with k ≤ n/2, n/k ≥ 2 and k/n ≤ ½ round harmlessly
  // ln C = δ(n) − δ(k) − δ(n−k) + k·ln(n/k) + (n−k)·ln(n/(n−k)) − ½ln 2π − ½ln(k(n−k)/n)
  return (
    stirlerr(n) - stirlerr(k) - stirlerr(n - k) +
    k * Math.log(n / k) - (n - k) * Math.log1p(-k / n) -
    0.5 * (LN_2PI + Math.log(k) + Math.log1p(-k / n))
  );
}

/**
 * Critical value and power of the one-sided test "fraud iff P_honest[X ≥ k] < alpha" on n
 * samples: criticalK is the smallest k with binomialTailPValue(n, k, pHonest) < alpha (n + 1 if
 * none, i.e. the test can never fire), so fraud_detected ⇔ n_mismatch ≥ criticalK; power is
 * P[X ≥ criticalK] for X ~ Binomial(n, pCheat), the probability of catching a node whose
 * per-nonce mismatch probability is pCheat. Throws RangeError for 0 ≥ alpha or alpha > 1.
 */
export function binomialPower(
  n: number,
  pHonest: number,
  pCheat: number,
  alpha: number,
): { criticalK: number; power: number } {
  checkArgs(n, 0, pHonest);
  checkArgs(n, 0, pCheat);
  if (typeof alpha !== 'number' || !(alpha > 0 && alpha <= 1)) {
    throw new RangeError(`binomialPower: alpha must be a number in (0, 1], got ${alpha}`);
  }
  // The tail is non-increasing in k: binary search for the first k in [0, n+1] with tail < alpha
  // (tail(n+1) = 0 < alpha, so one exists).
  let lo = 0;
  let hi = n + 1;
  while (lo < hi) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (binomialTailPValue(n, mid, pHonest) < alpha) hi = mid;
    else lo = mid + 1;
  }
  return { criticalK: lo, power: binomialTailPValue(n, lo, pCheat) };
}
