// Per-nonce seeds of SPEC §5 steps 1–4 and the per-layer Householder seeds of step 7.
// Only seeds travel to the native engine, which expands them into tensors itself. The engine has
// a twin of this derivation (native/engine/nonce_inputs.h) for sprints, held to the same bits by
// test/native-artifacts.test.ts; this one is the reference.
import { mm, seed32, sha256Words, uniform } from '../seeds/rng.js';

export interface RoundSeeds {
  blockHash: string;
  publicKey: string;
  numLayers: number;
  strongerRng: boolean;
}

export interface NonceInputs {
  nonce: number;
  /** seed32(P): seeds the noise latent z (step 1) when stronger_rng is off. */
  latentSeed: number;
  /** The 8 SHA-256 words of P, seeding N8 for z when stronger_rng is on; else null. */
  latentSeedWords: Uint32Array | null;
  /** seed32(P + "_context"): seeds the text features c (step 2). */
  contextSeed: number;
  /** Integer timestep in [0, 999] (step 3). */
  timestep: number;
  /** r_i per layer: 0 = high_noise_model, 1 = low_noise_model (step 4). */
  experts: Uint8Array;
}

function assertNonEmpty(value: string, name: string): void {
  if (typeof value !== 'string' || value.length === 0) throw new Error(`${name} must be a non-empty string`);
}

// Sprints assign non-negative nonces (SPEC §1), but a validator recomputes whatever int32 it is
// asked for, negative ones included, as Gonka's vLLM does ("…_nonce-5", as Python formats it).
export function assertNonce(nonce: number): void {
  if (!Number.isInteger(nonce) || nonce < -0x80000000 || nonce > 0x7fffffff) {
    throw new Error(`nonce must be an int32, got ${nonce}`);
  }
}

function assertLayers(numLayers: number): void {
  if (!Number.isInteger(numLayers) || numLayers < 1) {
    throw new Error(`numLayers must be a positive integer, got ${numLayers}`);
  }
}

/** P = "{block_hash}_{public_key}_nonce{n}": the per-nonce input seed string. */
export function nonceString(blockHash: string, publicKey: string, nonce: number): string {
  assertNonEmpty(blockHash, 'blockHash');
  assertNonEmpty(publicKey, 'publicKey');
  assertNonce(nonce);
  return `${blockHash}_${publicKey}_nonce${nonce}`;
}

/** Q = "{block_hash}_{public_key}_nonce_{n}": the artifact (pick/haar) seed prefix. */
export function artifactString(blockHash: string, publicKey: string, nonce: number): string {
  assertNonEmpty(blockHash, 'blockHash');
  assertNonEmpty(publicKey, 'publicKey');
  assertNonce(nonce);
  return `${blockHash}_${publicKey}_nonce_${nonce}`;
}

export function deriveNonceInputs(round: RoundSeeds, nonce: number): NonceInputs {
  assertLayers(round.numLayers);
  const p = nonceString(round.blockHash, round.publicKey, nonce);
  // float64 product: u = 1.0 (possible, see SPEC §5.3) gives 1000, hence the clamp.
  const u = uniform(seed32(`${p}_timestep`), 1)[0];
  const timestep = Math.min(999, Math.floor(1000 * u));
  const expertSeed = seed32(`${p}_experts`);
  const experts = new Uint8Array(round.numLayers);
  for (let i = 0; i < round.numLayers; i++) experts[i] = mm(i, expertSeed) >>> 31;
  return {
    nonce,
    latentSeed: seed32(p),
    latentSeedWords: round.strongerRng ? sha256Words(p) : null,
    contextSeed: seed32(`${p}_context`),
    timestep,
    experts,
  };
}

/** seed32(block_hash + "_layer_" + i + "_householder") for each layer i (step 7). */
export function householderSeeds(blockHash: string, numLayers: number): Uint32Array {
  assertNonEmpty(blockHash, 'blockHash');
  assertLayers(numLayers);
  const seeds = new Uint32Array(numLayers);
  for (let i = 0; i < numLayers; i++) seeds[i] = seed32(`${blockHash}_layer_${i}_householder`);
  return seeds;
}
