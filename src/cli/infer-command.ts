// `dit-poc infer`: one video generation (SPEC §13) into a directory of checkpoints, a manifest
// and the final latent; resumable after Ctrl-C with --resume.
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { Command, Option } from 'commander';

import { addon, type ModelInfo, type NativeModel, type Precision } from '../engine/native.js';
import { InputError } from '../errors.js';
import { decodeCheckpoint } from '../inference/checkpoint-files.js';
import { latentShape, readContextFile, readNoiseFile, TEXT_LEN } from '../inference/conditioning.js';
import { nativeDenoiser } from '../inference/denoiser.js';
import { executeGeneration, newManifest } from '../inference/executor.js';
import { initialNoise, prepareGeneration } from '../inference/generation-setup.js';
import { initialSolverState } from '../inference/scheduler.js';
import { MANIFEST_FILE, readManifest, sha256Hex, type CheckpointRef, type InferenceRequest, type Manifest } from '../inference/manifest.js';
import { runtimeInfo } from '../inference/runtime.js';
import { flowUniPCSchedule, planSteps, samplingDefaults } from '../inference/schedule.js';
import { forwardFlops } from '../pricing/flops.js';
import { EXIT_INTERRUPTED } from './errors.js';
import { bar, interruptSignal, note } from './progress.js';
import { nonNegativeInt, positiveInt, positiveNumber } from './options.js';

interface InferCliOptions {
  model?: string;
  weights: string;
  weightsSeed?: string;
  context?: string;
  promptSeed?: string;
  promptTokens: number;
  seed?: string;
  noise: string;
  width?: number;
  height?: number;
  frames?: number;
  steps?: number;
  shift?: number;
  guide?: [number, number];
  boundary?: number;
  out: string;
  resume: boolean;
  json: boolean;
  precision: Precision;
  threads?: number;
  backend: 'auto' | 'cpu' | 'cuda';
  device: number;
}

function parseGuide(v: string): [number, number] {
  const parts = v.split(',').map((s) => Number(s.trim()));
  if ((parts.length !== 1 && parts.length !== 2) || parts.some((x) => !Number.isFinite(x) || x < 0)) {
    throw new InputError(`--guide must be G or LOW,HIGH (non-negative numbers), got '${v}'`);
  }
  return parts.length === 1 ? [parts[0], parts[0]] : [parts[0], parts[1]];
}

function parseBoundary(v: string): number {
  const b = Number(v);
  if (!Number.isFinite(b) || b <= 0 || b >= 1) throw new InputError(`--boundary must be a number in (0, 1), got '${v}'`);
  return b;
}

function parseSeed(v: string): string {
  if (!/^\d{1,19}$/.test(v)) throw new InputError(`--seed must be a non-negative integer, got '${v}'`);
  return String(BigInt(v));
}

function modelConfig(id: string): ModelInfo {
  const all = addon().models();
  const m = all.find((x) => x.id === id);
  if (!m) throw new InputError(`unknown model '${id}' (known: ${all.map((x) => x.id).join(', ')})`);
  return m;
}

/** Checks a fresh request completely (files included) before anything is written. */
function freshRequest(o: InferCliOptions, cfg: ModelInfo): InferenceRequest {
  const need = (v: unknown, flag: string) => {
    if (v === undefined) throw new InputError(`${flag} is required`);
  };
  need(o.seed, '--seed');
  need(o.width, '--width');
  need(o.height, '--height');
  need(o.frames, '--frames');
  if ((o.context === undefined) === (o.promptSeed === undefined)) throw new InputError('give exactly one of --context FILE and --prompt-seed S');
  const d = samplingDefaults(cfg.id);
  const shape = latentShape(cfg, o.width!, o.height!, o.frames!);
  const boundary = o.boundary ?? d.boundary;
  if (boundary !== null && cfg.experts.length !== 2) throw new InputError(`--boundary needs a model with two experts (${cfg.id} has ${cfg.experts.length})`);
  const steps = o.steps ?? d.steps;
  const shift = o.shift ?? d.shift;
  const guide = o.guide ?? d.guide;
  planSteps(flowUniPCSchedule(steps, shift).timesteps, guide, boundary, cfg.experts.length); // checks steps, shift, guide
  if (o.context === undefined && o.promptTokens > TEXT_LEN) throw new InputError(`--prompt-tokens must be at most ${TEXT_LEN}, got ${o.promptTokens}`);
  if (o.context !== undefined) readContextFile(o.context, cfg.textDim);
  if (o.noise !== 'spec') readNoiseFile(o.noise, shape);
  return {
    model: cfg.id,
    width: o.width!,
    height: o.height!,
    frames: o.frames!,
    steps,
    shift,
    guide,
    boundary,
    seed: o.seed!,
    noise: o.noise === 'spec' ? { source: 'spec' } : { source: 'file', file: 'noise.safetensors', sha256: sha256Hex(readFileSync(o.noise)) },
    context: o.context !== undefined
      ? { source: 'file', file: 'context.safetensors', sha256: sha256Hex(readFileSync(o.context)) }
      : { source: 'seeded', prompt_seed: o.promptSeed!, tokens: o.promptTokens },
  };
}

async function loadModel(cfg: ModelInfo, weights: string, weightsSeed: string | undefined, o: InferCliOptions): Promise<NativeModel> {
  if (weights === 'random' && weightsSeed === undefined) throw new InputError('--weights random needs --weights-seed S');
  try {
    return await addon().loadModel({ model: cfg.id, weights, weightsSeed, threads: o.threads, backend: o.backend, device: o.device });
  } catch (e) {
    throw new InputError(`cannot load the model (weights '${weights}'): ${(e as Error).message}`);
  }
}

/** A checkpoint's bytes, checked against the manifest's SHA-256 (before any model is loaded). */
function readCheckpointFile(dir: string, c: CheckpointRef): { data: Buffer; step: number; path: string } {
  const path = join(dir, c.file);
  if (!existsSync(path)) throw new InputError(`${path} is missing (named by the manifest)`);
  const data = readFileSync(path);
  if (sha256Hex(data) !== c.sha256) throw new InputError(`${path} does not match its SHA-256 in the manifest`);
  return { data, step: c.step, path };
}

async function run(o: InferCliOptions): Promise<void> {
  const dir = o.out;
  let manifest: Manifest;
  let cfg: ModelInfo;
  let model: NativeModel;
  let resumeFrom: { data: Buffer; step: number; path: string } | null = null;
  if (o.resume) {
    manifest = readManifest(dir).manifest;
    if (manifest.complete) throw new InputError(`${dir}: the generation is already complete`);
    if (manifest.checkpoints.length === 0) throw new InputError(`${dir}: no checkpoint to resume from`);
    const last = manifest.checkpoints[manifest.checkpoints.length - 1];
    resumeFrom = readCheckpointFile(dir, last);
    cfg = modelConfig(manifest.request.model);
    if (o.model !== undefined && o.model !== cfg.id) throw new InputError(`--model ${o.model} differs from the manifest's ${cfg.id}`);
    const w = manifest.weights;
    model = await loadModel(cfg, w.source === 'random' ? 'random' : o.weights !== 'random' ? o.weights : w.path!, w.seed, { ...o, threads: o.threads ?? manifest.runtime.threads });
    if (model.identity !== w.identity) throw new InputError(`the weights loaded (${model.identity}) are not the manifest's (${w.identity})`);
    if (model.backend !== manifest.runtime.backend) throw new InputError(`resuming on backend ${model.backend}, the run used ${manifest.runtime.backend}`);
  } else {
    if (o.model === undefined) throw new InputError('--model is required');
    cfg = modelConfig(o.model);
    if (existsSync(join(dir, MANIFEST_FILE))) throw new InputError(`${dir} already holds a generation (use --resume, or another --out)`);
    const req = freshRequest(o, cfg);
    model = await loadModel(cfg, o.weights, o.weightsSeed, o);
    mkdirSync(join(dir, 'checkpoints'), { recursive: true });
    if (o.context !== undefined) copyFileSync(o.context, join(dir, 'context.safetensors'));
    if (o.noise !== 'spec') copyFileSync(o.noise, join(dir, 'noise.safetensors'));
    manifest = newManifest(
      req,
      prepareGeneration(req, cfg, dir),
      o.weights === 'random' ? { source: 'random', seed: o.weightsSeed!, identity: model.identity } : { source: 'dir', path: o.weights, identity: model.identity },
      runtimeInfo(model, o.precision, o.device),
    );
  }
  try {
    const req = manifest.request;
    const prepared = prepareGeneration(req, cfg, dir);
    const precision = manifest.runtime.precision as Precision;
    const start = resumeFrom
      ? decodeCheckpoint(resumeFrom.data, prepared.setup.latentShape, resumeFrom.step, resumeFrom.path)
      : { latent: initialNoise(req, prepared.setup, dir), solver: initialSolverState() };
    // A bar at a terminal, plain lines otherwise, nothing with --quiet or --json.
    const progress = o.json ? null : bar('step {bar} {value}/{total} | expert {expert} | {sps} s/step');
    progress?.start(req.steps, start.solver.stepIndex, { expert: '-', sps: '-' });
    const stop = interruptSignal();
    let result;
    try {
      result = await executeGeneration({
        dir,
        manifest,
        setup: prepared.setup,
        denoiser: nativeDenoiser(model, precision),
        start,
        signal: stop.signal,
        onStep: (r) => progress?.update(r.step, { expert: cfg.experts[r.expert], sps: r.seconds.toFixed(3), rate: (1 / r.seconds).toFixed(3) }),
      });
    } finally {
      stop.dispose();
      progress?.stop();
    }
    const L = (prepared.setup.latentShape[1] / cfg.patch[0]) * (prepared.setup.latentShape[2] / cfg.patch[1]) * (prepared.setup.latentShape[3] / cfg.patch[2]);
    const perForward = forwardFlops(cfg, L, TEXT_LEN, 1).total;
    const summary = {
      out: dir,
      manifest: join(dir, MANIFEST_FILE),
      complete: result.manifest.complete,
      steps_done: result.state.solver.stepIndex,
      steps: req.steps,
      checkpoints: result.manifest.checkpoints.length,
      latent_shape: prepared.setup.latentShape,
      final_sha256: result.manifest.final?.sha256 ?? null,
      runtime: manifest.runtime,
      cost: {
        latent_patches: L,
        flops_per_forward: perForward,
        forwards: req.steps * 2,
        flops: req.steps * 2 * perForward,
        measured_forwards: result.forwards,
        seconds: result.seconds,
        s_per_forward: result.forwards > 0 ? result.seconds / result.forwards : null,
        s_per_step: result.forwards > 0 ? (2 * result.seconds) / result.forwards : null,
      },
    };
    if (o.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    if (result.interrupted) {
      note(`dit-poc: interrupted after step ${summary.steps_done} of ${req.steps}; ${summary.checkpoints} checkpoints in ${summary.manifest}; continue with \`dit-poc infer --out ${dir} --resume\``);
      process.exitCode = EXIT_INTERRUPTED;
    } else if (!o.json) {
      process.stdout.write(`${join(dir, 'latent.safetensors')} (${req.steps} steps, ${summary.checkpoints} checkpoints, ${summary.cost.s_per_step?.toFixed(3)} s/step)\n`);
    }
  } finally {
    model.dispose();
  }
}

export function inferCommand(): Command {
  return new Command('infer')
    .description('generate a video latent (SPEC §13): checkpoints, a manifest and the final latent in --out DIR')
    .option('--model <id>', 'model id (see `dit-poc info`)')
    .option('--weights <random|DIR>', 'seeded random weights or a checkpoint directory', 'random')
    .option('--weights-seed <S>', 'seed of random weights')
    .option('--context <FILE>', 'safetensors with tensors context and context_null, umT5 outputs [n, 4096]')
    .option('--prompt-seed <S>', 'seeded prompt embeddings instead of --context (tests, benchmarks)')
    .option('--prompt-tokens <N>', 'tokens of the seeded embeddings', positiveInt('--prompt-tokens'), 32)
    .option('--seed <N>', 'seed of the noise', parseSeed)
    .option('--noise <spec|FILE>', 'noise source: drawn from --seed (spec) or a safetensors tensor `noise`', 'spec')
    .option('--width <W>', 'video width in pixels', positiveInt('--width'))
    .option('--height <H>', 'video height in pixels', positiveInt('--height'))
    .option('--frames <T>', 'frames, 4n+1', positiveInt('--frames'))
    .option('--steps <S>', 'sampling steps (default: official)', positiveInt('--steps'))
    .option('--shift <X>', 'schedule shift (default: official)', positiveNumber('--shift'))
    .option('--guide <LOW,HIGH>', 'guide scales of the low- and high-noise experts (default: official)', parseGuide)
    .option('--boundary <B>', 'expert switch at t ≥ B·1000 (default: official)', parseBoundary)
    .requiredOption('--out <DIR>', 'output directory')
    .option('--resume', 'continue the interrupted generation in --out', false)
    .option('--json', 'print a JSON summary (with FLOPs and s/forward)', false)
    .addOption(new Option('--precision <p>', 'GEMM/attention input precision').choices(['bf16', 'fp32', 'bf16-flash']).default('bf16'))
    .option('--threads <N>', 'CPU threads (default: all cores)', positiveInt('--threads'))
    .addOption(new Option('--backend <b>', 'compute backend').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--device <N>', 'CUDA device ordinal', nonNegativeInt('--device'), 0)
    .action(async (o: InferCliOptions) => run(o));
}
