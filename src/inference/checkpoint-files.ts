// Checkpoint files of a generation (SPEC §13 step 5): the latent after `step` steps and the
// solver state that the next step needs, so a run resumes from it bit for bit. One
// safetensors file each: F32 tensors `latent`, `last_sample`, `model_output_0`,
// `model_output_1` (the solver ones only once they exist) and the counters as metadata.
import { InputError } from '../errors.js';
import { numel, type LatentShape } from './conditioning.js';
import type { LoopState } from './loop.js';
import { encodeSafetensors, parseSafetensors, type Tensor } from './safetensors.js';

const FORMAT = 'dit-poc-inference-checkpoint/1';

export function checkpointFileName(step: number): string {
  return `checkpoints/step-${String(step).padStart(4, '0')}.safetensors`;
}

/**
 * Steps after which the executor records a checkpoint: 0 (the noise), every ⌈S/8⌉ steps, the
 * last step of the high-noise expert, and S (the final latent).
 */
export function checkpointSteps(steps: number, highNoiseSteps: number): number[] {
  const every = Math.ceil(steps / 8);
  const set = new Set<number>([0, steps]);
  for (let s = every; s < steps; s += every) set.add(s);
  if (highNoiseSteps > 0 && highNoiseSteps < steps) set.add(highNoiseSteps);
  return [...set].sort((a, b) => a - b);
}

export function encodeCheckpoint(state: LoopState, shape: LatentShape): Buffer {
  const tensors = new Map<string, Tensor>([['latent', { shape, values: state.latent }]]);
  const s = state.solver;
  if (s.lastSample) tensors.set('last_sample', { shape, values: s.lastSample });
  s.modelOutputs.forEach((m, i) => {
    if (m) tensors.set(`model_output_${i}`, { shape, values: m });
  });
  return encodeSafetensors(tensors, {
    format: FORMAT,
    step: String(s.stepIndex),
    lower_order_nums: String(s.lowerOrderNums),
    this_order: String(s.thisOrder),
  });
}

function counter(meta: Record<string, string>, key: string, what: string, max: number): number {
  const v = Number(meta[key]);
  if (meta[key] === undefined || !Number.isInteger(v) || v < 0 || v > max) throw new InputError(`${what}: metadata '${key}' is missing or out of range`);
  return v;
}

/** Reads a checkpoint and checks it against the latent shape and the step it should hold. */
export function decodeCheckpoint(buf: Buffer, shape: LatentShape, expectedStep: number, what: string): LoopState {
  const { tensors, metadata } = parseSafetensors(buf, what);
  if (metadata.format !== FORMAT) throw new InputError(`${what}: not a dit-poc inference checkpoint (format ${JSON.stringify(metadata.format)})`);
  const step = counter(metadata, 'step', what, 1000);
  if (step !== expectedStep) throw new InputError(`${what}: holds step ${step}, the manifest says ${expectedStep}`);
  const n = numel(shape);
  const get = (name: string, required: boolean): Float32Array | null => {
    const t = tensors.get(name);
    if (!t) {
      if (required) throw new InputError(`${what}: tensor '${name}' is missing`);
      return null;
    }
    if (t.values.length !== n || t.shape.length !== 4 || t.shape.some((d, i) => d !== shape[i])) {
      throw new InputError(`${what}: tensor '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    return t.values;
  };
  const lowerOrderNums = counter(metadata, 'lower_order_nums', what, 2);
  const thisOrder = counter(metadata, 'this_order', what, 2);
  // After k ≥ 1 steps the solver holds the last sample and min(k, 2) model outputs.
  const latent = get('latent', true)!;
  const lastSample = get('last_sample', step > 0);
  const m0 = get('model_output_0', step > 1);
  const m1 = get('model_output_1', step > 0);
  if (lowerOrderNums !== Math.min(step, 2)) throw new InputError(`${what}: lower_order_nums ${lowerOrderNums} does not fit step ${step}`);
  return { latent, solver: { stepIndex: step, lowerOrderNums, thisOrder, modelOutputs: [m0, m1], lastSample } };
}
