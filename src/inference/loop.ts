// The denoising loop of SPEC §13 step 4: per step, the expert and guide scale of the step's
// timestep, u = f(x, t, context_null) and c = f(x, t, context) in one batched call,
// pred = u + g·(c − u) in float32, then the FlowUniPC step. Runs from any resumable state to any
// later step, so an executor, a resumed run and a validator's segment replay share one code path.
import type { Denoiser } from './denoiser.js';
import type { LatentShape } from './conditioning.js';
import type { StepPlan } from './schedule.js';
import { FlowUniPCScheduler, type SolverState } from './scheduler.js';

const f = Math.fround;

export interface GenerationSetup {
  latentShape: LatentShape;
  sigmas: Float32Array;
  plan: StepPlan[];
  /** [512, textDim] zero-padded. */
  context: Float32Array;
  contextNull: Float32Array;
}

/** The state between steps: the latent and the solver's memory (SPEC §13 step 5). */
export interface LoopState {
  latent: Float32Array;
  solver: SolverState;
}

/**
 * Deliberately wrong computations, for calibration and tamper tests only (SPEC §13 step 7):
 * CFG off (the conditional prediction alone), one expert for every step, and reusing the
 * previous step's prediction on alternate steps as cache-based skipping does.
 */
export interface LoopDeviations {
  cfgOff?: boolean;
  expert?: number;
  reusePrediction?: boolean;
}

export interface StepReport {
  /** Steps done after this one (1 … S). */
  step: number;
  timestep: number;
  expert: number;
  seconds: number;
  forwards: number;
}

export interface LoopOptions {
  /** Run until this many steps are done (≤ S). */
  until: number;
  /** Called after every step with the new state; the loop waits for it (checkpoint writes). */
  onStep?: (state: LoopState, report: StepReport) => void | Promise<void>;
  /** Checked before each step: an aborted loop returns the state reached so far. */
  signal?: AbortSignal;
  deviations?: LoopDeviations;
}

/** Guided prediction u + g·(c − u), rounded per op like the official float32 tensors. */
export function guidedPrediction(u: Float32Array, c: Float32Array, g: number): Float32Array {
  const out = new Float32Array(u.length);
  const gf = f(g);
  for (let i = 0; i < u.length; i++) out[i] = f(u[i] + f(gf * f(c[i] - u[i])));
  return out;
}

export async function runLoop(setup: GenerationSetup, denoiser: Denoiser, start: LoopState, opts: LoopOptions): Promise<LoopState> {
  const steps = setup.plan.length;
  if (opts.until > steps || opts.until < start.solver.stepIndex) throw new Error(`loop: cannot run from step ${start.solver.stepIndex} to ${opts.until} of ${steps}`);
  // The scheduler advances its own copy: the caller's state stays usable (a validator resumes
  // several segments from cached checkpoint states).
  const scheduler = new FlowUniPCScheduler(setup.sigmas, { ...start.solver, modelOutputs: [...start.solver.modelOutputs] });
  const dev = opts.deviations ?? {};
  let latent = start.latent;
  let previous: Float32Array | null = null;
  const n = latent.length;
  while (scheduler.state.stepIndex < opts.until) {
    if (opts.signal?.aborted) break;
    const i = scheduler.state.stepIndex;
    const p = setup.plan[i];
    const expert = dev.expert ?? p.expert;
    const t0 = performance.now();
    let pred: Float32Array;
    let forwards = 0;
    if (dev.reusePrediction && previous && i % 2 === 1) {
      pred = previous;
    } else if (dev.cfgOff) {
      pred = await denoiser.denoise({ latentShape: setup.latentShape, latent, timestep: p.timestep, expert, contexts: [setup.context] });
      forwards = 1;
    } else {
      const out = await denoiser.denoise({ latentShape: setup.latentShape, latent, timestep: p.timestep, expert, contexts: [setup.contextNull, setup.context] });
      if (out.length !== 2 * n) throw new Error(`denoiser returned ${out.length} values, expected ${2 * n}`);
      pred = guidedPrediction(out.subarray(0, n), out.subarray(n), p.guide);
      forwards = 2;
    }
    previous = pred;
    latent = scheduler.step(pred, latent);
    const state = { latent, solver: scheduler.state };
    await opts.onStep?.(state, { step: i + 1, timestep: p.timestep, expert, seconds: (performance.now() - t0) / 1000, forwards });
  }
  return { latent, solver: scheduler.state };
}
