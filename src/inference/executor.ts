// Runs a generation into its directory: the loop, a checkpoint file at every due step, the
// manifest rewritten after each checkpoint (so an interrupted or killed run leaves a manifest
// of the checkpoints done so far), and the final latent that closes it.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { checkpointFileName, checkpointSteps, encodeCheckpoint } from './checkpoint-files.js';
import type { Denoiser } from './denoiser.js';
import type { PreparedGeneration } from './generation-setup.js';
import { runLoop, type GenerationSetup, type LoopDeviations, type LoopState, type StepReport } from './loop.js';
import {
  FINAL_LATENT_FILE,
  MANIFEST_FORMAT,
  sha256Hex,
  writeManifest,
  type InferenceRequest,
  type Manifest,
  type RuntimeInfo,
  type WeightsIdentity,
} from './manifest.js';
import { encodeSafetensors, writeFileAtomic } from './safetensors.js';

export interface ExecuteOptions {
  dir: string;
  /** The manifest so far (checkpoints already written, if resuming). Updated in place. */
  manifest: Manifest;
  setup: GenerationSetup;
  denoiser: Denoiser;
  /** The state to start from: the noise with an initial solver, or a checkpoint's. */
  start: LoopState;
  signal?: AbortSignal;
  onStep?: (report: StepReport) => void;
  deviations?: LoopDeviations;
}

export interface ExecuteResult {
  manifest: Manifest;
  state: LoopState;
  interrupted: boolean;
  /** Denoiser forwards run and the seconds the steps took (for s/forward). */
  forwards: number;
  seconds: number;
}

/** The manifest of a generation about to start: nothing written yet. */
export function newManifest(request: InferenceRequest, prepared: PreparedGeneration, weights: WeightsIdentity, runtime: RuntimeInfo): Manifest {
  return {
    format: MANIFEST_FORMAT,
    request,
    weights,
    runtime,
    latent_shape: prepared.setup.latentShape,
    timesteps: prepared.timesteps,
    checkpoint_steps: checkpointSteps(request.steps, prepared.highNoiseSteps),
    checkpoints: [],
    final: null,
    complete: false,
  };
}

function writeCheckpoint(o: ExecuteOptions, state: LoopState): void {
  const step = state.solver.stepIndex;
  const file = checkpointFileName(step);
  const data = encodeCheckpoint(state, o.setup.latentShape);
  writeFileAtomic(join(o.dir, file), data);
  o.manifest.checkpoints.push({ step, file, sha256: sha256Hex(data) });
  writeManifest(o.dir, o.manifest);
}

export async function executeGeneration(o: ExecuteOptions): Promise<ExecuteResult> {
  const m = o.manifest;
  const steps = m.request.steps;
  mkdirSync(join(o.dir, 'checkpoints'), { recursive: true });
  const due = new Set(m.checkpoint_steps);
  if (m.checkpoints.length === 0 && o.start.solver.stepIndex === 0) writeCheckpoint(o, o.start);
  let forwards = 0;
  let seconds = 0;
  const state = await runLoop(o.setup, o.denoiser, o.start, {
    until: steps,
    signal: o.signal,
    deviations: o.deviations,
    onStep: (s, report) => {
      forwards += report.forwards;
      seconds += report.seconds;
      if (due.has(report.step)) writeCheckpoint(o, s);
      o.onStep?.(report);
    },
  });
  const done = state.solver.stepIndex === steps;
  if (done) {
    const data = encodeSafetensors(new Map([['latent', { shape: o.setup.latentShape, values: state.latent }]]), { format: 'dit-poc-inference-latent/1' });
    writeFileAtomic(join(o.dir, FINAL_LATENT_FILE), data);
    m.final = { file: FINAL_LATENT_FILE, sha256: sha256Hex(data) };
    m.complete = true;
    writeManifest(o.dir, m);
  }
  return { manifest: m, state, interrupted: !done, forwards, seconds };
}
