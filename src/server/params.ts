// Request `params` → round parameters, and the served-model check (Gonka's check_params_match).
import type { Precision } from '../engine/native.js';
import { InputError } from '../errors.js';
import { DEFAULT_K_DIM, defaultCtxLen, defaultGrid, gridForSeqLen, makeRound, tokens, type Grid, type RoundParams } from '../round/params.js';
import type { ServedNames } from './model-names.js';

/** An HTTP error with a status and a JSON `detail` (FastAPI's error shape). */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly detail: unknown,
  ) {
    super(typeof detail === 'string' ? detail : JSON.stringify(detail));
  }
}

/**
 * What this server serves. A chain round is fixed by (model, seq_len, poc_stronger_rng) alone
 * (chainRound); grid / ctx_len / k_dim pins only restrict which rounds are served and must equal
 * what the chain would derive (checkPins), so two honest nodes never disagree on a nonce.
 */
export interface Deployed {
  /** The registry id (`dit-poc info`). */
  model: string;
  /** Every name a request may use for it (HF ids, --served-model-name). */
  names: ServedNames;
  /** `random` (SPEC §6, seeded by each round's block hash) or the served checkpoint. */
  weights: 'random' | string;
  grid?: Grid;
  ctxLen?: number;
  kDim?: number;
}

/** Operator flags that would change what a nonce is, as `serve` was given them. */
export interface NonceFlags {
  grid?: Grid;
  ctxLen?: number;
  kDim?: number;
  weightsSeed?: string;
  strongerRng?: boolean;
  precision?: Precision;
}

/** SPEC §7: the one precision a round is computed in. */
export const ROUND_PRECISION: Precision = 'bf16';

/**
 * Refuses, with one message naming each, the flags that differ from what the chain derives:
 * the chain sends only {model, seq_len} and poc_stronger_rng, so any other value would make
 * this node's nonces differ from every other node's.
 */
export function checkNonceFlags(model: string, f: NonceFlags): void {
  const bad: string[] = [];
  if (f.grid) {
    let derived: Grid | null = null;
    try {
      derived = gridForSeqLen(model, tokens(f.grid));
    } catch {
      // no seq_len the chain can send means this grid
    }
    if (!derived) bad.push(`--grid ${f.grid.join(',')}: no seq_len the chain can send means this grid (seq_len is a multiple of 256, grid [seq_len/256,16,16], or ${model}'s default [${defaultGrid(model).join(',')}])`);
    else if (derived.some((v, i) => v !== f.grid![i])) bad.push(`--grid ${f.grid.join(',')}: seq_len ${tokens(f.grid)} means grid ${derived.join(',')} (SPEC §4)`);
  }
  if (f.ctxLen !== undefined && f.ctxLen !== defaultCtxLen(model)) bad.push(`--ctx-len ${f.ctxLen}: ${model} rounds use ctx_len ${defaultCtxLen(model)} (SPEC §4)`);
  if (f.kDim !== undefined && f.kDim !== DEFAULT_K_DIM) bad.push(`--k-dim ${f.kDim}: the chain's artifacts have k_dim ${DEFAULT_K_DIM}`);
  if (f.weightsSeed !== undefined) bad.push(`--weights-seed ${f.weightsSeed}: random weights are seeded by each round's block hash (SPEC §6)`);
  if (f.strongerRng) bad.push('--stronger-rng: the chain sends poc_stronger_rng with each request');
  if (f.precision !== undefined && f.precision !== ROUND_PRECISION) bad.push(`--precision ${f.precision}: rounds are computed in ${ROUND_PRECISION} (SPEC §7)`);
  if (bad.length > 0)
    throw new InputError(`refusing to serve: ${bad.length === 1 ? 'this flag changes' : 'these flags change'} what a nonce is, so this node would disagree with every other: ${bad.join('; ')}. Drop ${bad.length === 1 ? 'it' : 'them'}: round parameters come from the chain.`);
}

/** `params` of /init/generate and /generate: Gonka's {model, seq_len, k_dim} plus SPEC §11's grid, ctx_len. */
export interface RequestParams {
  model: string;
  seq_len: number;
  k_dim?: number;
  grid?: number[];
  ctx_len?: number;
}

export interface RoundRequest {
  block_hash: string;
  public_key: string;
  params: RequestParams;
  poc_stronger_rng?: boolean;
}

export function deployedView(d: Deployed): Record<string, unknown> {
  return {
    model: d.model,
    served_model_names: d.names.all,
    seq_len: d.grid ? tokens(d.grid) : null,
    k_dim: d.kDim ?? null,
    grid: d.grid ?? null,
    ctx_len: d.ctxLen ?? null,
  };
}

/** The grid a request asks for: params.grid when given (seq_len must be its token count), else what seq_len means for the model. */
export function requestGrid(model: string, p: RequestParams): Grid {
  if (p.grid) {
    const g = p.grid as Grid;
    const tokens = g[0] * g[1] * g[2];
    if (p.seq_len !== tokens)
      throw new InputError(`params.seq_len (${p.seq_len}) must equal the token count F·H·W of params.grid [${g.join(', ')}] = ${tokens}`);
    return g;
  }
  return gridForSeqLen(model, p.seq_len);
}

/**
 * Resolves a request's round. 409 when the request is for another model or differs from a pinned
 * grid / ctx_len / k_dim; 400 (InputError) when the params are inconsistent.
 */
export function resolveRound(d: Deployed, req: RoundRequest): RoundParams {
  const p = req.params;
  const fields: string[] = [];
  if (!d.names.serves(p.model)) fields.push('model');
  if (d.kDim !== undefined && (p.k_dim ?? DEFAULT_K_DIM) !== d.kDim) fields.push('k_dim');
  if (d.ctxLen !== undefined && p.ctx_len !== undefined && p.ctx_len !== d.ctxLen) fields.push('ctx_len');
  let grid: Grid | undefined;
  let gridError: unknown;
  if (!p.grid && d.grid) {
    // A pinned grid serves the requests whose seq_len is its token count (Gonka sends only seq_len).
    if (p.seq_len === tokens(d.grid)) grid = d.grid;
    else fields.push('seq_len');
  } else {
    try {
      grid = requestGrid(d.model, p);
    } catch (e) {
      gridError = e;
    }
    if (d.grid && grid && grid.some((v, i) => v !== d.grid![i])) fields.push('grid');
  }
  if (fields.length > 0) {
    throw new HttpError(409, {
      error: 'params mismatch',
      fields,
      requested: { model: p.model, seq_len: p.seq_len, k_dim: p.k_dim ?? DEFAULT_K_DIM, grid: p.grid ?? null, ctx_len: p.ctx_len ?? null },
      deployed: deployedView(d),
    });
  }
  if (gridError) throw gridError;
  return makeRound({
    model: d.model,
    blockHash: req.block_hash,
    publicKey: req.public_key,
    grid,
    ctxLen: p.ctx_len ?? defaultCtxLen(d.model),
    kDim: p.k_dim ?? DEFAULT_K_DIM,
    weights: d.weights,
    // SPEC §6: random weights are seeded by the round's block hash (makeRound's default).
    strongerRng: req.poc_stronger_rng ?? false,
    precision: ROUND_PRECISION,
  });
}

/** A callback base URL: absolute http(s). */
export function checkCallbackUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InputError(`url must be an absolute http(s) URL, got '${url}'`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InputError(`url must use http or https, got '${u.protocol}'`);
  if (u.username || u.password) throw new InputError('url must not carry credentials');
  return url;
}
