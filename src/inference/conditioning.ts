// What a generation is conditioned on (SPEC §13 steps 1–2): the latent's shape, the prompt
// embeddings (a umT5 context file or seeded embeddings) zero-padded to 512 rows, and the
// initial noise (drawn from the spec's seed or read from a file).
import type { ModelInfo } from '../engine/native.js';
import { InputError } from '../errors.js';
import { latentGrid } from '../pricing/flops.js';
import { normal, seed32 } from '../seeds/rng.js';
import { readSafetensors, type Tensor } from './safetensors.js';

/** The official text length: contexts are zero-padded to 512 rows (wan/modules/model.py). */
export const TEXT_LEN = 512;

export type LatentShape = [number, number, number, number];

/** [z_dim, (T−1)/4 + 1, H/s, W/s]; checks T = 4n+1 and sizes divisible by stride × patch. */
export function latentShape(cfg: ModelInfo, width: number, height: number, frames: number): LatentShape {
  latentGrid(cfg, width, height, frames); // validates the request geometry
  return [cfg.outChannels, 1 + (frames - 1) / cfg.vaeStride[0], height / cfg.vaeStride[1], width / cfg.vaeStride[2]];
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export interface Contexts {
  /** [n, textDim] row-major, unpadded. */
  context: Float32Array;
  contextNull: Float32Array;
  tokens: number;
  tokensNull: number;
}

/** SPEC §13 step 1: N(seed32("{s}_prompt"), n·4096) and N(seed32("{s}_negative"), n·4096). */
export function seededContexts(promptSeed: string, tokens: number, textDim: number): Contexts {
  if (!Number.isInteger(tokens) || tokens < 1 || tokens > TEXT_LEN) throw new InputError(`--prompt-tokens must be in [1, ${TEXT_LEN}], got ${tokens}`);
  return {
    context: normal(seed32(`${promptSeed}_prompt`), tokens * textDim),
    contextNull: normal(seed32(`${promptSeed}_negative`), tokens * textDim),
    tokens,
    tokensNull: tokens,
  };
}

function contextTensor(t: Tensor | undefined, name: string, textDim: number, what: string): Tensor {
  if (!t) throw new InputError(`${what}: no tensor '${name}' (a context file holds 'context' and 'context_null', each [n ≤ ${TEXT_LEN}, ${textDim}])`);
  let shape = t.shape;
  if (shape.length === 3 && shape[0] === 1) shape = shape.slice(1); // [1, n, 4096] as the encoder returns it
  if (shape.length !== 2 || shape[1] !== textDim || shape[0] < 1 || shape[0] > TEXT_LEN) {
    throw new InputError(`${what}: tensor '${name}' has shape [${t.shape.join(', ')}], expected [n ≤ ${TEXT_LEN}, ${textDim}]`);
  }
  for (const v of t.values) if (!Number.isFinite(v)) throw new InputError(`${what}: tensor '${name}' holds non-finite values`);
  return { shape, values: t.values };
}

/** A --context file: tensors `context` and `context_null`, umT5 outputs [n, 4096]. */
export function readContextFile(path: string, textDim: number): Contexts {
  const what = `context file ${path}`;
  const { tensors } = readSafetensors(path, what);
  const c = contextTensor(tensors.get('context'), 'context', textDim, what);
  const u = contextTensor(tensors.get('context_null'), 'context_null', textDim, what);
  return { context: c.values, contextNull: u.values, tokens: c.shape[0], tokensNull: u.shape[0] };
}

/** Zero-pads [n, textDim] to [512, textDim]. */
export function padContext(ctx: Float32Array, textDim: number): Float32Array {
  const out = new Float32Array(TEXT_LEN * textDim);
  out.set(ctx.subarray(0, Math.min(ctx.length, out.length)));
  return out;
}

/** SPEC §13 step 2, source `spec`: N(seed32("{seed}_noise"), numel) in row-major order. */
export function specNoise(seed: string, shape: LatentShape): Float32Array {
  return normal(seed32(`${seed}_noise`), numel(shape));
}

/** Source `file`: the tensor `noise` (or the file's only tensor), of the latent's shape (a leading 1 is allowed). */
export function readNoiseFile(path: string, shape: LatentShape): Float32Array {
  const what = `noise file ${path}`;
  const { tensors } = readSafetensors(path, what);
  const t = tensors.get('noise') ?? (tensors.size === 1 ? [...tensors.values()][0] : undefined);
  if (!t) throw new InputError(`${what}: no tensor 'noise'`);
  const dims = t.shape.length === 5 && t.shape[0] === 1 ? t.shape.slice(1) : t.shape;
  if (dims.length !== 4 || dims.some((d, i) => d !== shape[i])) {
    throw new InputError(`${what}: noise has shape [${t.shape.join(', ')}], the request needs [${shape.join(', ')}]`);
  }
  for (const v of t.values) if (!Number.isFinite(v)) throw new InputError(`${what}: noise holds non-finite values`);
  return t.values;
}
