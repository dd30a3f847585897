// The sampling schedule of SPEC §13 steps 3–4: official per-model defaults, the timesteps and
// sigmas of Wan2.2's FlowUniPCMultistepScheduler (wan/utils/fm_solvers_unipc.py, built as
// wan/text2video.py does: num_train_timesteps 1000, shift 1, then set_timesteps(S, shift)),
// and which expert and guide scale each step uses.
import { InputError } from '../errors.js';

export const NUM_TRAIN_TIMESTEPS = 1000;

export interface SamplingDefaults {
  steps: number;
  shift: number;
  /** [g_low, g_high]: the low-noise expert's guide scale first, as the official configs write it. */
  guide: [number, number];
  /** Fraction of num_train_timesteps at and above which the high-noise expert runs; null for one expert. */
  boundary: number | null;
}

// SPEC §13: the official configs (Wan-Video/Wan2.2 wan/configs/*.py, Wan2.1 generate.py).
const DEFAULTS: Record<string, SamplingDefaults> = {
  'wan2.2-t2v-a14b': { steps: 40, shift: 12, guide: [3.0, 4.0], boundary: 0.875 },
  'wan2.1-t2v-1.3b': { steps: 50, shift: 5, guide: [5.0, 5.0], boundary: null },
  'wan2.2-ti2v-5b': { steps: 50, shift: 5, guide: [5.0, 5.0], boundary: null },
  'wan-tiny': { steps: 8, shift: 5, guide: [3.0, 4.0], boundary: 0.875 },
};

/** The official sampling defaults of a text-to-video model; I2V models are out of scope (SPEC §13). */
export function samplingDefaults(model: string): SamplingDefaults {
  const d = DEFAULTS[model];
  if (!d) throw new InputError(`no video-inference defaults for model '${model}' (supported: ${Object.keys(DEFAULTS).join(', ')})`);
  return { ...d, guide: [...d.guide] };
}

export interface Schedule {
  /** One integer timestep per step, in [0, 999]. */
  timesteps: number[];
  /** S + 1 float32 sigmas; the last is 0 (final_sigmas_type "zero"). */
  sigmas: Float32Array;
}

/**
 * FlowUniPCMultistepScheduler's schedule. The constructor's training sigmas run from
 * float32(1 − 1/1000) down to 0, so sigma_max = float32(0.999) and sigma_min = 0; set_timesteps
 * then takes numpy's linspace(sigma_max, sigma_min, S+1) without its last point (computed as
 * numpy does, i·step + start, in float64), shifts it by σ' = s·σ / (1 + (s−1)·σ) in float64,
 * truncates 1000·σ' to int64 for the timesteps and appends 0 to the float32 sigmas.
 */
export function flowUniPCSchedule(steps: number, shift: number): Schedule {
  if (!Number.isInteger(steps) || steps < 1 || steps > 1000) throw new InputError(`steps must be an integer in [1, 1000], got ${steps}`);
  if (!Number.isFinite(shift) || shift <= 0) throw new InputError(`shift must be a positive number, got ${shift}`);
  const sigmaMax = Math.fround(1 - 1 / NUM_TRAIN_TIMESTEPS);
  const sigmaMin = 0;
  const step = (sigmaMin - sigmaMax) / steps;
  const timesteps: number[] = [];
  const sigmas = new Float32Array(steps + 1);
  for (let i = 0; i < steps; i++) {
    const s = i * step + sigmaMax;
    const shifted = (shift * s) / (1 + (shift - 1) * s);
    timesteps.push(Math.trunc(shifted * NUM_TRAIN_TIMESTEPS));
    sigmas[i] = shifted;
  }
  sigmas[steps] = 0;
  return { timesteps, sigmas };
}

export interface StepPlan {
  timestep: number;
  /** Index into the model's experts: 0 high-noise, 1 low-noise (single-expert models: 0). */
  expert: number;
  guide: number;
}

/**
 * wan/text2video.py: the high-noise expert and g_high when t ≥ boundary·1000, else the
 * low-noise expert and g_low. Single-expert models (boundary null) run expert 0 with g_low
 * (their configs give one scale, which samplingDefaults repeats).
 */
export function planSteps(timesteps: number[], guide: [number, number], boundary: number | null, expertCount: number): StepPlan[] {
  if (boundary === null) {
    if (guide[0] !== guide[1]) throw new InputError('a single-expert model takes one guide scale (--guide G or G,G)');
    return timesteps.map((t) => ({ timestep: t, expert: 0, guide: guide[0] }));
  }
  if (expertCount !== 2) throw new InputError(`--boundary needs a model with two experts (this one has ${expertCount})`);
  const threshold = boundary * NUM_TRAIN_TIMESTEPS;
  return timesteps.map((t) => (t >= threshold ? { timestep: t, expert: 0, guide: guide[1] } : { timestep: t, expert: 1, guide: guide[0] }));
}
