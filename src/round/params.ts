// Round parameters (SPEC §4) and their defaults.
import { addon, type BackendKind, type ModelInfo, type Precision } from '../engine/native.js';
import { InputError } from '../errors.js';

export type Grid = [number, number, number];

export interface RoundParams {
  model: string;
  blockHash: string;
  publicKey: string;
  grid: Grid;
  ctxLen: number;
  kDim: number;
  weights: 'random' | string;
  weightsSeed: string;
  strongerRng: boolean;
  precision: Precision;
  /** Where the round is computed; not a protocol parameter (any backend gives the same artifacts up to rounding). */
  backend: BackendKind;
  device: number;
}

export const DEFAULT_K_DIM = 12;

export function modelInfo(id: string): ModelInfo {
  const all = addon().models();
  const m = all.find((x) => x.id === id);
  if (!m) throw new InputError(`unknown model '${id}' (known: ${all.map((x) => x.id).join(', ')})`);
  return m;
}

// SPEC §4: wan-tiny [2,4,4] with 16 text tokens; the video models [4,16,16] (L = 1024) with 512.
export function defaultGrid(model: string): Grid {
  return model === 'wan-tiny' ? [2, 4, 4] : [4, 16, 16];
}

export function defaultCtxLen(model: string): number {
  return model === 'wan-tiny' ? 16 : 512;
}

// Gonka's params.seq_len → grid [seq_len/256, 16, 16].
export function gridFromSeqLen(seqLen: number): Grid {
  if (!Number.isInteger(seqLen) || seqLen <= 0 || seqLen % 256 !== 0)
    throw new InputError(`seq_len must be a positive multiple of 256, got ${seqLen}`);
  if (seqLen / 256 > MAX_GRID_AXIS)
    throw new InputError(`seq_len ${seqLen} gives grid [${seqLen / 256}, 16, 16]; the engine allows at most ${MAX_GRID_AXIS} frames (seq_len ≤ ${MAX_GRID_AXIS * 256})`);
  return [seqLen / 256, 16, 16];
}

export const tokens = (g: Grid): number => g[0] * g[1] * g[2];

/**
 * The grid a chain round means by seq_len (the chain sends nothing else): the model's SPEC §4
 * default grid when seq_len is its token count, else [seq_len/256, 16, 16]. The two agree for
 * the video models ([4,16,16] = 1024 tokens); the default is what lets wan-tiny take 32.
 */
export function gridForSeqLen(model: string, seqLen: number): Grid {
  const d = defaultGrid(model);
  return seqLen === tokens(d) ? d : gridFromSeqLen(seqLen);
}

/** The identity the engine reports for a round's weights (native weights.cpp, checkpoint.cpp). */
export function weightsIdentity(round: Pick<RoundParams, 'weights' | 'weightsSeed'>): string {
  return round.weights === 'random' ? `random:${round.weightsSeed}` : round.weights;
}

export function parseGrid(text: string): Grid {
  const parts = text.split(',').map((s) => s.trim());
  const nums = parts.map(Number);
  if (nums.length !== 3 || nums.some((n) => !Number.isInteger(n) || n <= 0 || n > MAX_GRID_AXIS))
    throw new InputError(`grid must be three positive integers F,H,W (each ≤ ${MAX_GRID_AXIS}), got '${text}'`);
  return nums as Grid;
}

export interface RoundOptions {
  model: string;
  blockHash: string;
  publicKey: string;
  grid?: Grid;
  ctxLen?: number;
  kDim?: number;
  weights?: 'random' | string;
  weightsSeed?: string;
  strongerRng?: boolean;
  precision?: Precision;
  backend?: 'auto' | 'cpu' | 'cuda';
  device?: number;
}

/** Values per nonce in the model output y (SPEC §5): L · patch volume · C_out. */
export function outputValues(info: ModelInfo, grid: Grid): number {
  return grid[0] * grid[1] * grid[2] * info.patch[0] * info.patch[1] * info.patch[2] * info.outChannels;
}

// The engine's RoPE tables cover 1024 positions per axis (native validate_request).
const MAX_GRID_AXIS = 1024;

export function checkGrid(grid: readonly number[]): Grid {
  if (grid.length !== 3 || grid.some((n) => !Number.isInteger(n) || n <= 0 || n > MAX_GRID_AXIS))
    throw new InputError(`grid must be three integers F,H,W in [1, ${MAX_GRID_AXIS}], got [${grid.join(', ')}]`);
  return grid as Grid;
}

export function makeRound(o: RoundOptions): RoundParams {
  const info = modelInfo(o.model);
  if (!o.blockHash) throw new InputError('block hash must not be empty');
  if (!o.publicKey) throw new InputError('public key must not be empty');
  const ctxLen = o.ctxLen ?? defaultCtxLen(o.model);
  if (!Number.isInteger(ctxLen) || ctxLen <= 0 || ctxLen > 4096)
    throw new InputError(`ctx_len must be an integer in [1, 4096], got ${ctxLen}`);
  const kDim = o.kDim ?? DEFAULT_K_DIM;
  if (!Number.isInteger(kDim) || kDim < 2 || kDim > 1024)
    throw new InputError(`k_dim must be an integer in [2, 1024], got ${kDim}`);
  const grid = checkGrid(o.grid ?? defaultGrid(o.model));
  // The artifact picks k_dim distinct values of the output: a round with fewer cannot run.
  const values = outputValues(info, grid);
  if (kDim > values)
    throw new InputError(`k_dim ${kDim} is larger than the ${values} output values per nonce of ${o.model} at grid [${grid.join(', ')}]`);
  return {
    model: o.model,
    blockHash: o.blockHash,
    publicKey: o.publicKey,
    grid,
    ctxLen,
    kDim,
    weights: o.weights ?? 'random',
    // SPEC §6: weights change every round unless a seed is pinned.
    weightsSeed: o.weightsSeed ?? o.blockHash,
    strongerRng: o.strongerRng ?? false,
    precision: o.precision ?? 'bf16',
    backend: o.backend ?? 'auto',
    device: o.device ?? 0,
  };
}
