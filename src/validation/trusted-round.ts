// The validator's round: the parameters it trusts (its flags, or a round file in the shape the
// server's /status shows), and the check of a bundle header against them. A header is the
// prover's word; a bundle computed for another round (a smaller grid, fewer text tokens, other
// weights) must be refused as a round mismatch, never validated as if the header were the round.
import { readFileSync } from 'node:fs';

import type { BundleRound } from '../bundle/format.js';
import type { Precision } from '../engine/native.js';
import { InputError } from '../errors.js';
import { makeRound, type Grid, type RoundParams } from '../round/params.js';
import type { BundleVerdict } from './validator.js';

/** flags: --model, --block-hash and --public-key (and more); file: --round FILE; bundle: the header, unverified. */
export type RoundSource = 'flags' | 'file' | 'bundle';

/** Round fields as a round file or the flags give them (BundleRound's snake_case names). */
export interface RoundFields {
  model?: string;
  block_hash?: string;
  public_key?: string;
  block_height?: number;
  grid?: Grid;
  ctx_len?: number;
  k_dim?: number;
  stronger_rng?: boolean;
  /** The validator's own computation, not compared with the header (SPEC §7: a node may compute more precisely). */
  precision?: Precision;
  weights?: string;
  weights_seed?: string;
}

/** The fields a header is checked against, in the order a mismatch lists them. */
const COMPARED = ['model', 'block_hash', 'public_key', 'block_height', 'grid', 'ctx_len', 'k_dim', 'stronger_rng'] as const;
type Compared = (typeof COMPARED)[number];

const PRECISIONS: readonly Precision[] = ['bf16', 'fp32', 'bf16-flash', 'fp8-attention'];

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads a round file: a JSON object with BundleRound's fields (what /status shows as `round`), or
 * an object holding one under `round` (a saved /status body). model, block_hash, public_key, grid,
 * ctx_len and k_dim are required; block_height, stronger_rng (default false), precision, weights
 * and weights_seed are optional. weights_identity, when present, is informational: the validator
 * compares the header with the identity of the weights it loads itself. Throws InputError.
 */
export function readRoundFile(path: string): RoundFields {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InputError(`cannot read round file ${path}: ${(e as Error).message}`);
  }
  if (isObj(data) && !('model' in data) && isObj(data.round)) data = data.round;
  if (!isObj(data)) throw new InputError(`round file ${path}: expected a JSON object with the round's fields`);
  const r = data;
  const bad = (k: string, what: string) => new InputError(`round file ${path}: ${k} must be ${what}, got ${JSON.stringify(r[k])}`);
  const out: RoundFields = {};
  for (const k of ['model', 'block_hash', 'public_key', 'grid', 'ctx_len', 'k_dim'])
    if (r[k] === undefined) throw new InputError(`round file ${path}: ${k} is required`);
  for (const k of ['model', 'block_hash', 'public_key', 'weights', 'weights_seed', 'weights_identity'] as const) {
    if (r[k] === undefined) continue;
    if (typeof r[k] !== 'string' || r[k] === '') throw bad(k, 'a non-empty string');
    if (k !== 'weights_identity') out[k] = r[k] as string;
  }
  for (const k of ['block_height', 'ctx_len', 'k_dim'] as const) {
    if (r[k] === undefined) continue;
    if (!Number.isSafeInteger(r[k]) || (r[k] as number) < 0) throw bad(k, 'a non-negative integer');
    out[k] = r[k] as number;
  }
  if (!Array.isArray(r.grid) || r.grid.length !== 3 || !r.grid.every((x) => Number.isSafeInteger(x) && x > 0))
    throw bad('grid', '[F, H, W] (three positive integers)');
  out.grid = [...r.grid] as Grid;
  if (r.stronger_rng !== undefined) {
    if (typeof r.stronger_rng !== 'boolean') throw bad('stronger_rng', 'a boolean');
    out.stronger_rng = r.stronger_rng;
  }
  if (r.precision !== undefined) {
    if (!PRECISIONS.includes(r.precision as Precision)) throw bad('precision', `one of ${PRECISIONS.join(', ')}`);
    out.precision = r.precision as Precision;
  }
  return out;
}

/** File fields, completed by the round flags; a round flag that contradicts the file is a usage error. */
export function mergeRoundFields(file: RoundFields, flags: RoundFields, fileName: string): RoundFields {
  const out: RoundFields = { ...file };
  for (const [k, v] of Object.entries(flags) as [keyof RoundFields, unknown][]) {
    if (v === undefined) continue;
    const f = file[k];
    if (f !== undefined && JSON.stringify(f) !== JSON.stringify(v))
      throw new InputError(`--${k.replace(/_/g, '-')} ${show(v)} contradicts ${k} ${show(f)} in the round file ${fileName}`);
    (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

export interface ValidatorRound {
  source: RoundSource;
  /** The round the validator computes with. */
  round: RoundParams;
  /** The block height for the sampling seed: the trusted one, or the header's when none is given. */
  blockHeight: number;
  /** Header fields that disagree with the trusted round: `field: bundle X, validator Y`. */
  mismatches: string[];
}

/** How the validator computes, from its flags (they win over a round file's values). */
export interface OwnComputation {
  precision?: Precision;
  weights?: string;
  weightsSeed?: string;
}

function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * The validator's round for a bundle header. With a trusted source (`file`, or `flags` when
 * --model is given) model, block_hash and public_key are required, grid, ctx_len and k_dim default
 * per model (SPEC §4) and stronger_rng to false; every one of them, and block_height when given,
 * is compared with the header. With source `bundle` the header supplies the round, and only the
 * fields the caller did give are compared.
 */
export function resolveValidatorRound(header: BundleRound, given: RoundFields, source: RoundSource, own: OwnComputation = {}): ValidatorRound {
  let trusted: RoundFields;
  if (source === 'bundle') {
    trusted = given;
  } else {
    for (const [k, flag] of [['model', '--model'], ['block_hash', '--block-hash'], ['public_key', '--public-key']] as const)
      if (given[k] === undefined)
        throw new InputError(`the validator's round needs ${k} (${source === 'file' ? 'in the round file or ' : ''}${flag})`);
    // makeRound applies the SPEC defaults and the parameter ranges.
    const r = makeRound({ model: given.model!, blockHash: given.block_hash!, publicKey: given.public_key!, grid: given.grid, ctxLen: given.ctx_len, kDim: given.k_dim });
    trusted = { ...given, grid: r.grid, ctx_len: r.ctxLen, k_dim: r.kDim, stronger_rng: given.stronger_rng ?? false };
  }
  const mismatches: string[] = [];
  for (const k of COMPARED) {
    const want = trusted[k as Compared];
    if (want !== undefined && JSON.stringify(want) !== JSON.stringify(header[k]))
      mismatches.push(`${k}: bundle ${show(header[k])}, validator ${show(want)}`);
  }
  const pick = <T>(t: T | undefined, h: T): T => (t !== undefined ? t : h);
  const round = makeRound({
    model: pick(trusted.model, header.model),
    blockHash: pick(trusted.block_hash, header.block_hash),
    publicKey: pick(trusted.public_key, header.public_key),
    grid: pick(trusted.grid, header.grid),
    ctxLen: pick(trusted.ctx_len, header.ctx_len),
    kDim: pick(trusted.k_dim, header.k_dim),
    strongerRng: pick(trusted.stronger_rng, header.stronger_rng),
    // The validator's own computation: its flag or file, else the header's (bundle) or bf16.
    precision: own.precision ?? given.precision ?? (source === 'bundle' ? header.precision : undefined),
    weights: own.weights ?? given.weights ?? 'random',
    weightsSeed: own.weightsSeed ?? given.weights_seed,
  });
  return { source, round, blockHeight: pick(trusted.block_height, header.block_height), mismatches };
}

/**
 * The weights check: a header naming other weights than the validator's own is a round mismatch.
 * Seeded random weights are named `random:SEED` on both sides and must be equal; a checkpoint is
 * named by its local directory, which differs between machines, so two checkpoints are not
 * compared here (the recomputation decides), but a checkpoint against random weights is a mismatch.
 */
export function weightsMismatch(headerIdentity: string, validatorIdentity: string): string | null {
  const random = (s: string) => s.startsWith('random:');
  if (headerIdentity === validatorIdentity || (!random(headerIdentity) && !random(validatorIdentity))) return null;
  return `weights: bundle ${headerIdentity}, validator ${validatorIdentity}`;
}

/** The verdict for a bundle of another round: invalid, not fraud (either side may be misconfigured). */
export function roundMismatchVerdict(mismatches: string[], count: number, rootHex: string): BundleVerdict {
  return {
    n_total: 0, n_mismatch: 0, mismatch_nonces: [], p_value: 1, fraud_detected: false,
    valid: false, invalid_reason: `round mismatch (${mismatches.join('; ')})`, count, root_hex: rootHex,
    sampled: 0, mismatch_rate: 0, distances: { p50: null, max: null },
  };
}
