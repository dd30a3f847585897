/**
 * Independent float64 reference of the official FlowUniPCMultistepScheduler (Wan-Video/Wan2.2
 * wan/utils/fm_solvers_unipc.py, order 2, bh2, predict x0, lower order final, final sigma 0),
 * written from the UniPC formulas (Zhao et al. 2023, Alg. "B(h)" variants) for the flow-matching
 * parametrisation alpha = 1 − sigma, lambda = log(alpha / sigma), x0 = x − sigma·v. Unlike the
 * port in src/, it keeps whole histories, takes a general order with a Gaussian-elimination
 * solve, and never rounds to float32. Used to check the port and, with the float64 denoiser,
 * the whole generation loop.
 */
export interface UniPC64 {
  step(modelOutput: ArrayLike<number>, sample: ArrayLike<number>): Float64Array;
}

function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    [m[c], m[p]] = [m[p], m[c]];
    for (let r = c + 1; r < n; r++) {
      const l = m[r][c] / m[c][c];
      for (let k = c; k <= n; k++) m[r][k] -= l * m[c][k];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r][n];
    for (let k = r + 1; k < n; k++) s -= m[r][k] * x[k];
    x[r] = s / m[r][r];
  }
  return x;
}

const lambda = (sigma: number) => Math.log(1 - sigma) - Math.log(sigma);

/**
 * One UniP or UniC update from the state at sigma `s0` to `sigmaT`: x_t = σ_t/σ_s0·x −
 * α_t·(e^{−h}−1)·m0 − α_t·B(h)·Σ_k ρ_k·D_k, with D_k = (m_k − m0)/r_k, r_k = (λ_k − λ_s0)/h and,
 * for the corrector, the extra pair (r = 1, D = m_t − m0).
 */
function update(x: ArrayLike<number>, sigmaT: number, sigmaS0: number, m0: ArrayLike<number>,
  history: { sigma: number; m: ArrayLike<number> }[], order: number, corrector: ArrayLike<number> | null): Float64Array {
  const alphaT = 1 - sigmaT;
  const h = lambda(sigmaT) - lambda(sigmaS0);
  const hh = -h;
  const hPhi1 = Math.expm1(hh);
  const bH = Math.expm1(hh);
  const rks: number[] = [];
  const ds: ArrayLike<number>[] = [];
  for (let k = 1; k < order; k++) {
    const prev = history[history.length - 1 - k];
    const rk = (lambda(prev.sigma) - lambda(sigmaS0)) / h;
    rks.push(rk);
    ds.push(Float64Array.from(prev.m as ArrayLike<number>, (v, j) => (v - m0[j]) / rk));
  }
  rks.push(1);
  // b_k = h_phi_k · k! / B(h), h_phi_{k+1} = h_phi_k / hh − 1/(k+1)!
  let hPhiK = hPhi1 / hh - 1;
  let fact = 1;
  const b: number[] = [];
  const R: number[][] = [];
  for (let k = 1; k <= order; k++) {
    R.push(rks.map((r) => r ** (k - 1)));
    b.push((hPhiK * fact) / bH);
    fact *= k + 1;
    hPhiK = hPhiK / hh - 1 / fact;
  }
  let rhos: number[];
  if (corrector) rhos = order === 1 ? [0.5] : solve(R, b);
  else rhos = order === 2 ? [0.5] : order === 1 ? [] : solve(R.slice(0, -1).map((r) => r.slice(0, -1)), b.slice(0, -1));
  const out = new Float64Array(x.length);
  for (let j = 0; j < out.length; j++) {
    let res = 0;
    for (let k = 0; k < ds.length; k++) res += rhos[k] * ds[k][j];
    if (corrector) res += rhos[rhos.length - 1] * (corrector[j] - m0[j]);
    out[j] = (sigmaT / sigmaS0) * x[j] - alphaT * hPhi1 * m0[j] - alphaT * bH * res;
  }
  return out;
}

/** The float64 scheduler over the given sigmas (S + 1 values, last 0), solver order 2. */
export function unipc64(sigmas: ArrayLike<number>, solverOrder = 2): UniPC64 {
  const steps = sigmas.length - 1;
  const history: { sigma: number; m: Float64Array }[] = [];
  let lastSample: Float64Array | null = null;
  let lastOrder = 0;
  let index = 0;
  return {
    step(modelOutput, sample) {
      const sigma = sigmas[index];
      const x0 = Float64Array.from(modelOutput as ArrayLike<number>, (v, j) => sample[j] - sigma * v);
      let x: ArrayLike<number> = sample;
      if (index > 0 && lastSample) {
        const prev = history[history.length - 1];
        x = update(lastSample, sigma, sigmas[index - 1], prev.m, history, lastOrder, x0);
      }
      history.push({ sigma, m: x0 });
      const order = Math.min(solverOrder, steps - index, history.length);
      lastSample = Float64Array.from(x);
      lastOrder = order;
      const next = update(lastSample, sigmas[index + 1], sigma, x0, history, order, null);
      index++;
      return next;
    },
  };
}
