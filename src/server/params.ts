// Request `params` → round parameters, and the served-model check (Gonka's check_params_match).
import type { Precision } from '../engine/native.js';
import { InputError } from '../errors.js';
import { DEFAULT_K_DIM, gridFromSeqLen, makeRound, type Grid, type RoundParams } from '../round/params.js';
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

/** What this server serves: `--model`, and whatever of grid / ctx_len / k_dim was pinned by flags. */
export interface Deployed {
  /** The registry id (`dit-poc info`). */
  model: string;
  /** Every name a request may use for it (HF ids, --served-model-name). */
  names: ServedNames;
  weights: 'random' | string;
  /** Pinned seed of random weights; otherwise each round's block hash seeds them (SPEC §6). */
  weightsSeed?: string;
  grid?: Grid;
  ctxLen?: number;
  kDim?: number;
  strongerRng: boolean;
  precision: Precision;
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
    seq_len: d.grid ? d.grid[0] * d.grid[1] * d.grid[2] : null,
    k_dim: d.kDim ?? null,
    grid: d.grid ?? null,
    ctx_len: d.ctxLen ?? null,
  };
}

/** The grid a request asks for: params.grid when given (seq_len must be its token count), else seq_len/256 × 16 × 16. */
export function requestGrid(p: RequestParams): Grid {
  if (p.grid) {
    const g = p.grid as Grid;
    const tokens = g[0] * g[1] * g[2];
    if (p.seq_len !== tokens)
      throw new InputError(`params.seq_len (${p.seq_len}) must equal the token count F·H·W of params.grid [${g.join(', ')}] = ${tokens}`);
    return g;
  }
  return gridFromSeqLen(p.seq_len);
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
    if (p.seq_len === d.grid[0] * d.grid[1] * d.grid[2]) grid = d.grid;
    else fields.push('seq_len');
  } else {
    try {
      grid = requestGrid(p);
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
    ctxLen: p.ctx_len ?? d.ctxLen,
    kDim: p.k_dim ?? d.kDim,
    weights: d.weights,
    weightsSeed: d.weightsSeed,
    strongerRng: req.poc_stronger_rng ?? d.strongerRng,
    precision: d.precision,
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
