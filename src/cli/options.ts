// Option parsers and the round options shared by the commands.
import { Command, Option } from 'commander';

import type { Precision } from '../engine/native.js';
import { InputError } from '../errors.js';
import { makeRound, parseGrid, type RoundParams } from '../round/params.js';

export function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InputError(`${name} must be a positive integer, got '${v}'`);
    return n;
  };
}

export function nonNegativeInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InputError(`${name} must be a non-negative integer, got '${v}'`);
    return n;
  };
}

export function positiveNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InputError(`${name} must be a positive number, got '${v}'`);
    return n;
  };
}

/** A TCP port, 0 (any free port) to 65535. */
export function portNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n > 65535) throw new InputError(`${name} must be a port number from 0 to 65535, got '${v}'`);
    return n;
  };
}

/** "180s", "3m", "1h", "500ms" or plain seconds → milliseconds. */
export function parseDuration(v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(v);
  if (!m) throw new InputError(`duration must look like 180s, 3m, 1h or 500ms, got '${v}'`);
  const scale = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const ms = Number(m[1]) * scale;
  if (ms <= 0) throw new InputError('duration must be positive');
  return ms;
}

/** Adds --model, --weights, --weights-seed, --block-hash, --public-key, --grid, --ctx-len, … */
export function addRoundOptions(cmd: Command, opts: { requireKeys: boolean }): Command {
  cmd.requiredOption('--model <id>', 'model id (see `dit-poc info`)');
  cmd.option('--weights <random|DIR>', 'seeded random weights or a checkpoint directory', 'random');
  cmd.option('--weights-seed <S>', 'seed of random weights (default: the block hash)');
  if (opts.requireKeys) {
    cmd.requiredOption('--block-hash <H>', 'block hash of the round');
    cmd.requiredOption('--public-key <P>', 'public key of the node');
  }
  cmd.option('--grid <F,H,W>', 'latent-patch grid (default per model, SPEC §4)', parseGrid);
  cmd.option('--ctx-len <N>', 'text tokens', positiveInt('--ctx-len'));
  cmd.option('--k-dim <N>', 'artifact length', positiveInt('--k-dim'));
  cmd.option('--stronger-rng', 'draw the latent with N8 (SPEC §2)', false);
  cmd.addOption(new Option('--precision <p>', 'GEMM/attention input precision (SPEC §7 is bf16)').choices(['bf16', 'fp32', 'bf16-flash']).default('bf16'));
  cmd.option('--threads <N>', 'CPU threads (default: all cores)', positiveInt('--threads'));
  cmd.addOption(new Option('--backend <b>', 'compute backend (auto: CUDA when built with it and a GPU answers)').choices(['auto', 'cpu', 'cuda']).default('auto'));
  cmd.option('--device <N>', 'CUDA device ordinal', nonNegativeInt('--device'), 0);
  return cmd;
}

// commander's option bag for the round options.
export interface RoundCliOptions {
  model: string;
  weights: string;
  weightsSeed?: string;
  blockHash: string;
  publicKey: string;
  grid?: [number, number, number];
  ctxLen?: number;
  kDim?: number;
  strongerRng: boolean;
  precision: Precision;
  backend: 'auto' | 'cpu' | 'cuda';
  device: number;
}

export function roundFromOptions(o: RoundCliOptions): RoundParams {
  return makeRound({
    model: o.model,
    blockHash: o.blockHash,
    publicKey: o.publicKey,
    grid: o.grid,
    ctxLen: o.ctxLen,
    kDim: o.kDim,
    weights: o.weights,
    weightsSeed: o.weightsSeed,
    strongerRng: o.strongerRng,
    precision: o.precision,
    backend: o.backend,
    device: o.device,
  });
}
