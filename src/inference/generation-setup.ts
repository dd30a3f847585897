// Turns a validated request into what the loop runs on: the latent shape, schedule, per-step
// expert and guide plan, the padded contexts and the initial noise. Executor, resume and
// validator all build it here from the manifest's request, so they cannot disagree.
import { join } from 'node:path';

import type { ModelInfo } from '../engine/native.js';
import { latentShape, padContext, readContextFile, readNoiseFile, seededContexts, specNoise, type Contexts } from './conditioning.js';
import type { GenerationSetup } from './loop.js';
import type { InferenceRequest } from './manifest.js';
import { flowUniPCSchedule, planSteps } from './schedule.js';

export interface PreparedGeneration {
  setup: GenerationSetup;
  timesteps: number[];
  /** Steps run by the high-noise expert (0 for single-expert models). */
  highNoiseSteps: number;
  contexts: Contexts;
}

/** `dir` is where the request's context and noise files live (the generation directory). */
export function prepareGeneration(req: InferenceRequest, cfg: ModelInfo, dir: string): PreparedGeneration {
  const shape = latentShape(cfg, req.width, req.height, req.frames);
  const { timesteps, sigmas } = flowUniPCSchedule(req.steps, req.shift);
  const plan = planSteps(timesteps, req.guide, req.boundary, cfg.experts.length);
  const contexts = req.context.source === 'seeded'
    ? seededContexts(req.context.prompt_seed, req.context.tokens, cfg.textDim)
    : readContextFile(join(dir, req.context.file), cfg.textDim);
  return {
    setup: {
      latentShape: shape,
      sigmas,
      plan,
      context: padContext(contexts.context, cfg.textDim),
      contextNull: padContext(contexts.contextNull, cfg.textDim),
    },
    timesteps,
    highNoiseSteps: req.boundary === null ? 0 : plan.filter((p) => p.expert === 0).length,
    contexts,
  };
}

/** The request's initial noise: drawn from the seed (source spec) or read from its file. */
export function initialNoise(req: InferenceRequest, setup: GenerationSetup, dir: string): Float32Array {
  return req.noise.source === 'spec' ? specNoise(req.seed, setup.latentShape) : readNoiseFile(join(dir, req.noise.file), setup.latentShape);
}
