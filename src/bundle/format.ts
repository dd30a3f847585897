// The proof bundle: a sprint's artifacts and commitment in one streamable file.
//
// Newline-delimited JSON, one record per line, appended batch by batch while a sprint runs and
// fsync'ed at least every 0.5 s (src/bundle/writer.ts), so a crash loses at most the last ~0.5 s:
//   {"type":"header","format":"dit-poc-bundle","version":1, round, node, created}
//   {"type":"batch","seq":0,"artifacts":[[nonce,"vector_b64"],…],"dropped":[nonce,…]}   (repeated)
//   {"type":"end","count":N,"root_hex":"…","dropped":D,"elapsed_s":…,"nonces_per_second":…,"interrupted":false}
// A file without its end record is truncated; `dit-poc inspect --repair` closes one.
import type { Precision } from '../engine/native.js';
import { weightsIdentity, type RoundParams } from '../round/params.js';

export const BUNDLE_FORMAT = 'dit-poc-bundle';
export const BUNDLE_VERSION = 1;

/**
 * The longest record line a reader accepts. A batch line holds one batch (2·k_dim bytes of base64
 * per artifact: about 2.8 KB at the largest k_dim, so 64 MiB is over 20,000 artifacts); a longer
 * line means a corrupt or hostile file, refused before it is held in memory.
 */
export const MAX_BUNDLE_LINE_BYTES = 64 * 2 ** 20;

/** Artifacts (and dropped nonces) per batch record a writer puts on one line: about 22 MB at the largest k_dim. */
export const MAX_BATCH_RECORD_ITEMS = 8192;

export interface BundleRound {
  model: string;
  block_hash: string;
  public_key: string;
  block_height: number;
  grid: [number, number, number];
  ctx_len: number;
  k_dim: number;
  stronger_rng: boolean;
  precision: Precision;
  weights: string;
  weights_seed: string;
  weights_identity: string;
}

export interface BundleNode {
  node_id: number;
  node_count: number;
  group_id: number;
  n_groups: number;
}

export interface BundleHeader {
  type: 'header';
  format: typeof BUNDLE_FORMAT;
  version: number;
  created: string;
  round: BundleRound;
  node: BundleNode;
}

export interface BundleBatch {
  type: 'batch';
  seq: number;
  artifacts: [number, string][];
  dropped: number[];
}

export interface BundleEnd {
  type: 'end';
  count: number;
  root_hex: string;
  dropped: number;
  elapsed_s: number;
  nonces_per_second: number;
  interrupted: boolean;
}

export interface BundleArtifact {
  nonce: number;
  vectorB64: string;
}

/** A round's parameters in the bundle's (and /status's) snake_case shape. */
export function bundleRound(round: RoundParams, blockHeight: number, identity = weightsIdentity(round)): BundleRound {
  return {
    model: round.model, block_hash: round.blockHash, public_key: round.publicKey, block_height: blockHeight,
    grid: round.grid, ctx_len: round.ctxLen, k_dim: round.kDim, stronger_rng: round.strongerRng,
    precision: round.precision, weights: round.weights, weights_seed: round.weightsSeed, weights_identity: identity,
  };
}
