// The manifest of a generation (SPEC §13 step 5): the request, the weights identity, the
// runtime, and every checkpoint and the final latent by file and SHA-256. Readers validate it
// fully, so a truncated or edited manifest is a clear input error, not a crash.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

import { InputError } from '../errors.js';
import { writeFileAtomic } from './safetensors.js';

export const MANIFEST_FORMAT = 'dit-poc-inference/1';
export const MANIFEST_FILE = 'manifest.json';
export const FINAL_LATENT_FILE = 'latent.safetensors';

export type NoiseSource = { source: 'spec' } | { source: 'file'; file: string; sha256: string };
export type ContextSource =
  | { source: 'seeded'; prompt_seed: string; tokens: number }
  | { source: 'file'; file: string; sha256: string };

export interface InferenceRequest {
  model: string;
  width: number;
  height: number;
  frames: number;
  steps: number;
  shift: number;
  /** [g_low, g_high]. */
  guide: [number, number];
  /** null: single-expert model. */
  boundary: number | null;
  seed: string;
  noise: NoiseSource;
  context: ContextSource;
}

export interface WeightsIdentity {
  source: 'random' | 'dir';
  /** Seed of random weights, or the checkpoint directory as given. */
  seed?: string;
  path?: string;
  /** The engine's identity string of the loaded weights. */
  identity: string;
}

export interface RuntimeInfo {
  engine_version: string;
  backend: string;
  device: string;
  precision: string;
  threads: number;
}

export interface FileRef {
  file: string;
  sha256: string;
}

export interface CheckpointRef extends FileRef {
  step: number;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  request: InferenceRequest;
  weights: WeightsIdentity;
  runtime: RuntimeInfo;
  latent_shape: [number, number, number, number];
  timesteps: number[];
  /** Steps after which checkpoints are due; `checkpoints` lists those written so far. */
  checkpoint_steps: number[];
  checkpoints: CheckpointRef[];
  /** The final latent; null until the last step is done. */
  final: FileRef | null;
  complete: boolean;
}

export function sha256Hex(data: Uint8Array): string {
  return bytesToHex(sha256(data));
}

export function encodeManifest(m: Manifest): string {
  return JSON.stringify(m, null, 2) + '\n';
}

export function writeManifest(dir: string, m: Manifest): void {
  writeFileAtomic(join(dir, MANIFEST_FILE), encodeManifest(m));
}

// --- validation ---------------------------------------------------------------------------

function fail(what: string, msg: string): never {
  throw new InputError(`${what}: ${msg}`);
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(what, 'expected an object');
  return v as Record<string, unknown>;
}

function int(v: unknown, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(what, `expected an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return v;
}

function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(what, `expected a number, got ${JSON.stringify(v)}`);
  return v;
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') fail(what, `expected a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

function hex(v: unknown, what: string): string {
  const s = str(v, what);
  if (!/^[0-9a-f]{64}$/.test(s)) fail(what, 'expected a lowercase hex SHA-256');
  return s;
}

// Files must stay inside the generation directory.
function relFile(v: unknown, what: string): string {
  const s = str(v, what);
  if (s.startsWith('/') || s.split('/').some((p) => p === '..' || p === '') || s.includes('\\')) fail(what, `file name ${JSON.stringify(s)} leaves the generation directory`);
  return s;
}

function fileRef(v: unknown, what: string): FileRef {
  const o = obj(v, what);
  return { file: relFile(o.file, `${what}.file`), sha256: hex(o.sha256, `${what}.sha256`) };
}

function request(v: unknown): InferenceRequest {
  const o = obj(v, 'manifest.request');
  const guide = o.guide;
  if (!Array.isArray(guide) || guide.length !== 2) fail('manifest.request.guide', 'expected [g_low, g_high]');
  const noise = obj(o.noise, 'manifest.request.noise');
  const context = obj(o.context, 'manifest.request.context');
  return {
    model: str(o.model, 'manifest.request.model'),
    width: int(o.width, 'manifest.request.width', 1),
    height: int(o.height, 'manifest.request.height', 1),
    frames: int(o.frames, 'manifest.request.frames', 1),
    steps: int(o.steps, 'manifest.request.steps', 1, 1000),
    shift: num(o.shift, 'manifest.request.shift'),
    guide: [num(guide[0], 'manifest.request.guide[0]'), num(guide[1], 'manifest.request.guide[1]')],
    boundary: o.boundary === null ? null : num(o.boundary, 'manifest.request.boundary'),
    seed: str(o.seed, 'manifest.request.seed'),
    noise: noise.source === 'spec'
      ? { source: 'spec' }
      : noise.source === 'file'
        ? { source: 'file', ...fileRef(noise, 'manifest.request.noise') }
        : fail('manifest.request.noise.source', 'expected "spec" or "file"'),
    context: context.source === 'seeded'
      ? { source: 'seeded', prompt_seed: str(context.prompt_seed, 'manifest.request.context.prompt_seed'), tokens: int(context.tokens, 'manifest.request.context.tokens', 1, 512) }
      : context.source === 'file'
        ? { source: 'file', ...fileRef(context, 'manifest.request.context') }
        : fail('manifest.request.context.source', 'expected "seeded" or "file"'),
  };
}

/** Parses and validates a manifest's text. */
export function parseManifest(text: string, what = 'manifest'): Manifest {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${what} is not valid JSON (truncated?): ${(e as Error).message}`);
  }
  const o = obj(data, what);
  if (o.format !== MANIFEST_FORMAT) fail(what, `format ${JSON.stringify(o.format)} is not ${MANIFEST_FORMAT}`);
  const w = obj(o.weights, 'manifest.weights');
  const r = obj(o.runtime, 'manifest.runtime');
  const shape = o.latent_shape;
  if (!Array.isArray(shape) || shape.length !== 4) fail('manifest.latent_shape', 'expected [C, F, H, W]');
  const timesteps = o.timesteps;
  if (!Array.isArray(timesteps)) fail('manifest.timesteps', 'expected an array');
  const due = o.checkpoint_steps;
  if (!Array.isArray(due)) fail('manifest.checkpoint_steps', 'expected an array');
  const cps = o.checkpoints;
  if (!Array.isArray(cps)) fail('manifest.checkpoints', 'expected an array');
  const req = request(o.request);
  const m: Manifest = {
    format: MANIFEST_FORMAT,
    request: req,
    weights: {
      source: w.source === 'random' ? 'random' : w.source === 'dir' ? 'dir' : fail('manifest.weights.source', 'expected "random" or "dir"'),
      ...(w.seed !== undefined ? { seed: str(w.seed, 'manifest.weights.seed') } : {}),
      ...(w.path !== undefined ? { path: str(w.path, 'manifest.weights.path') } : {}),
      identity: str(w.identity, 'manifest.weights.identity'),
    },
    runtime: {
      engine_version: str(r.engine_version, 'manifest.runtime.engine_version'),
      backend: str(r.backend, 'manifest.runtime.backend'),
      device: str(r.device, 'manifest.runtime.device'),
      precision: str(r.precision, 'manifest.runtime.precision'),
      threads: int(r.threads, 'manifest.runtime.threads', 0),
    },
    latent_shape: shape.map((d, i) => int(d, `manifest.latent_shape[${i}]`, 1)) as Manifest['latent_shape'],
    timesteps: timesteps.map((t, i) => int(t, `manifest.timesteps[${i}]`, 0, 999)),
    checkpoint_steps: due.map((s, i) => int(s, `manifest.checkpoint_steps[${i}]`, 0, req.steps)),
    checkpoints: cps.map((c, i) => {
      const what = `manifest.checkpoints[${i}]`;
      return { step: int(obj(c, what).step, `${what}.step`, 0, req.steps), ...fileRef(c, what) };
    }),
    final: o.final === null ? null : fileRef(o.final, 'manifest.final'),
    complete: o.complete === true,
  };
  if (m.timesteps.length !== req.steps) fail(what, `${m.timesteps.length} timesteps for ${req.steps} steps`);
  m.checkpoints.forEach((c, i) => {
    if (c.step !== m.checkpoint_steps[i]) fail(what, `checkpoint ${i} is at step ${c.step}, due at ${m.checkpoint_steps[i]}`);
  });
  if (m.complete && (m.final === null || m.checkpoints.length !== m.checkpoint_steps.length)) fail(what, 'marked complete without every checkpoint and the final latent');
  return m;
}

export function readManifest(dir: string): { manifest: Manifest; text: string; sha256: string } {
  const path = join(dir, MANIFEST_FILE);
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new InputError(`cannot read ${path}: ${(e as Error).message}`);
  }
  const text = buf.toString('utf8');
  return { manifest: parseManifest(text, path), text, sha256: sha256Hex(buf) };
}
