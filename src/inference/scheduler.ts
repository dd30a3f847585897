// Port of Wan2.2's FlowUniPCMultistepScheduler (wan/utils/fm_solvers_unipc.py) in the
// configuration the official pipeline uses (SPEC §13 step 3): solver order 2, bh2, predict x0,
// flow prediction, lower order final, final sigma 0, no thresholding, no corrector disabled.
//
// The official step runs in float32 torch ops on 0-d and full tensors; this port does the same
// operations in the same order and rounds every result to float32 (Math.fround), so it follows
// the official float32 trajectory up to the last bit of log/expm1 and the 2×2 solve. The state
// between steps (SolverState) is plain data so a checkpoint can hold it and a run resumes from
// it bit for bit (SPEC §13 step 5).
import { InputError } from '../errors.js';

const f = Math.fround;
const SOLVER_ORDER = 2;

export interface SolverState {
  /** Index of the next step to run (0 … S). */
  stepIndex: number;
  /** Steps done so far, capped at the solver order (the warm-up counter). */
  lowerOrderNums: number;
  /** Order of the last predictor step; the next step's corrector uses it (0 before the first step). */
  thisOrder: number;
  /** Converted model outputs (x0 predictions) of the last two steps, older first; null where none yet. */
  modelOutputs: [Float32Array | null, Float32Array | null];
  /** The (corrected) sample the last predictor started from; null before the first step. */
  lastSample: Float32Array | null;
}

export function initialSolverState(): SolverState {
  return { stepIndex: 0, lowerOrderNums: 0, thisOrder: 0, modelOutputs: [null, null], lastSample: null };
}

/** float32 log as torch computes it on a float32 0-d tensor (log(0) = −∞). */
function log32(x: number): number {
  return f(Math.log(x));
}

function lambdaOf(sigma: number): number {
  const alpha = f(1 - sigma);
  return f(log32(alpha) - log32(sigma));
}

/**
 * torch.linalg.solve for the 2×2 system of UniC-2, as LAPACK getrf/getrs do it in float32:
 * partial pivoting on the first column (the first row wins a tie), the multiplier scaled by the
 * pivot's reciprocal, back substitution by division.
 */
function solve2(a: [[number, number], [number, number]], b: [number, number]): [number, number] {
  const swap = Math.abs(a[1][0]) > Math.abs(a[0][0]);
  const [r0, r1] = swap ? [a[1], a[0]] : [a[0], a[1]];
  const [b0, b1] = swap ? [b[1], b[0]] : [b[0], b[1]];
  const l = f(r1[0] * f(1 / r0[0]));
  const u11 = f(r1[1] - f(l * r0[1]));
  const y1 = f(b1 - f(l * b0));
  const x1 = f(y1 / u11);
  const x0 = f(f(b0 - f(x1 * r0[1])) / r0[0]);
  return [x0, x1];
}

interface StepCoefficients {
  sigmaT: number;
  sigmaS0: number;
  alphaT: number;
  h: number;
  lambdaS0: number;
  hPhi1: number;
  hPhiK: number;
  bH: number;
}

function coefficients(sigmaT: number, sigmaS0: number): StepCoefficients {
  const alphaT = f(1 - sigmaT);
  const lambdaT = lambdaOf(sigmaT);
  const lambdaS0 = lambdaOf(sigmaS0);
  const h = f(lambdaT - lambdaS0);
  const hh = f(-h); // predict_x0
  const hPhi1 = f(Math.expm1(hh));
  const hPhiK = f(f(hPhi1 / hh) - 1);
  return { sigmaT, sigmaS0, alphaT, h, lambdaS0, hPhi1, hPhiK, bH: hPhi1 /* bh2: expm1(hh) */ };
}

/** sigma_t / sigma_s0 · x − alpha_t · h_phi_1 · m0, elementwise in float32. */
function baseUpdate(c: StepCoefficients, x: Float32Array, m0: Float32Array, out: Float32Array): void {
  const ratio = f(c.sigmaT / c.sigmaS0);
  const k = f(c.alphaT * c.hPhi1);
  for (let i = 0; i < out.length; i++) out[i] = f(f(ratio * x[i]) - f(k * m0[i]));
}

export class FlowUniPCScheduler {
  readonly state: SolverState;

  /** sigmas: the S + 1 float32 sigmas of flowUniPCSchedule. */
  constructor(readonly sigmas: Float32Array, state: SolverState = initialSolverState()) {
    const steps = sigmas.length - 1;
    if (steps < 1) throw new InputError('scheduler: need at least one step');
    if (!Number.isInteger(state.stepIndex) || state.stepIndex < 0 || state.stepIndex > steps) {
      throw new InputError(`scheduler: step index ${state.stepIndex} outside [0, ${steps}]`);
    }
    this.state = state;
  }

  get steps(): number {
    return this.sigmas.length - 1;
  }

  /**
   * One official step(): converts the model's flow prediction to x0, applies the UniC corrector
   * to `sample` (from the second step on), then the UniP predictor. Returns the next sample (a
   * new array); `sample` and `modelOutput` are not modified.
   */
  step(modelOutput: Float32Array, sample: Float32Array): Float32Array {
    const s = this.state;
    const i = s.stepIndex;
    if (i >= this.steps) throw new Error(`scheduler: all ${this.steps} steps are done`);
    if (modelOutput.length !== sample.length) throw new Error('scheduler: model output and sample differ in size');

    // convert_model_output: x0 = sample − sigma·v.
    const sigma = this.sigmas[i];
    const converted = new Float32Array(sample.length);
    for (let k = 0; k < sample.length; k++) converted[k] = f(sample[k] - f(sigma * modelOutput[k]));

    let x = sample;
    if (i > 0 && s.lastSample !== null) x = this.correct(converted, s.lastSample, sample, s.thisOrder);

    s.modelOutputs = [s.modelOutputs[1], converted];
    const finalOrder = Math.min(SOLVER_ORDER, this.steps - i); // lower_order_final
    s.thisOrder = Math.min(finalOrder, s.lowerOrderNums + 1); // warm-up
    s.lastSample = x;
    const next = this.predict(x, s.thisOrder);
    if (s.lowerOrderNums < SOLVER_ORDER) s.lowerOrderNums++;
    s.stepIndex++;
    return next;
  }

  // multistep_uni_p_bh_update: order 1 or 2 (order 2 uses rhos_p = 0.5).
  private predict(x: Float32Array, order: number): Float32Array {
    const s = this.state;
    const i = s.stepIndex;
    const m0 = s.modelOutputs[1]!;
    const c = coefficients(this.sigmas[i + 1], this.sigmas[i]);
    const out = new Float32Array(x.length);
    baseUpdate(c, x, m0, out);
    if (order === 2) {
      const m1 = s.modelOutputs[0]!;
      const rk = f(f(lambdaOf(this.sigmas[i - 1]) - c.lambdaS0) / c.h);
      const k = f(c.alphaT * c.bH);
      for (let j = 0; j < out.length; j++) {
        const d1 = f(f(m1[j] - m0[j]) / rk);
        out[j] = f(out[j] - f(k * f(0.5 * d1)));
      }
    }
    return out;
  }

  // multistep_uni_c_bh_update: corrects this_sample with the current x0 prediction `modelT`.
  private correct(modelT: Float32Array, lastSample: Float32Array, thisSample: Float32Array, order: number): Float32Array {
    const s = this.state;
    const i = s.stepIndex;
    const m0 = s.modelOutputs[1]!;
    const c = coefficients(this.sigmas[i], this.sigmas[i - 1]);
    const hh = f(-c.h);
    let rhos: number[];
    let rk = 0;
    if (order === 1) {
      rhos = [0.5];
    } else {
      rk = f(f(lambdaOf(this.sigmas[i - 2]) - c.lambdaS0) / c.h);
      // b_k = h_phi_k · k! / B_h for k = 1, 2; R = [[1, 1], [rk, 1]].
      const b1 = f(f(c.hPhiK * 1) / c.bH);
      const hPhiK2 = f(f(c.hPhiK / hh) - f(1 / 2));
      const b2 = f(f(hPhiK2 * 2) / c.bH);
      rhos = solve2([[1, 1], [rk, 1]], [b1, b2]);
    }
    const out = new Float32Array(thisSample.length);
    baseUpdate(c, lastSample, m0, out);
    const k = f(c.alphaT * c.bH);
    const rhoLast = f(rhos[rhos.length - 1]);
    const m1 = s.modelOutputs[0];
    for (let j = 0; j < out.length; j++) {
      const d1t = f(modelT[j] - m0[j]);
      let res = f(rhoLast * d1t);
      if (order === 2) res = f(f(rhos[0] * f(f(m1![j] - m0[j]) / rk)) + res);
      out[j] = f(out[j] - f(k * res));
    }
    return out;
  }
}
