// Shared setup for tests that run the native engine on wan-tiny.
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

import { addon, type NativeForwardRequest, type NativeModel } from '../../src/engine/native.js';
import { deriveNonceInputs, householderSeeds } from '../../src/inputs/nonce-inputs.js';
import type { RefConfig } from '../reference/forward64.js';

export const BLOCK_HASH = '3F1A9C0B7D2E4F6A8B1C3D5E7F9A0B2C4D6E8F1A3B5C7D9E0F2A4B6C8D0E1F3A';
export const PUBLIC_KEY = '02a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
export const TINY_GRID: [number, number, number] = [2, 4, 4];
export const TINY_CTX = 16;

export const conformanceDir = resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures/conformance');

export function loadTiny(threads = 2, weightsSeed = 'test-weights'): Promise<NativeModel> {
  return addon().loadModel({ model: 'wan-tiny', weights: 'random', weightsSeed, threads });
}

/** The float64 reference's view of a loaded model's configuration. */
export function refConfigOf(model: NativeModel): RefConfig {
  const c = model.config;
  return {
    dim: c.dim, ffnDim: c.ffnDim, numHeads: c.numHeads, numLayers: c.numLayers, inChannels: c.inChannels,
    outChannels: c.outChannels, headDim: c.headDim, textDim: c.textDim, freqDim: c.freqDim, eps: c.eps,
    patch: c.patch,
  };
}

/** The model's weights as the reference reads them, each tensor copied out of the engine once. */
export function cachedWeights(model: NativeModel): (expert: number, key: string) => Float32Array {
  const cache = new Map<string, Float32Array>();
  return (expert, key) => {
    const k = `${expert}/${key}`;
    let w = cache.get(k);
    if (!w) cache.set(k, (w = model.tensor(expert, key)));
    return w;
  };
}

export function tinyRequest(nonces: number[], numLayers = 4): NativeForwardRequest {
  const round = { blockHash: BLOCK_HASH, publicKey: PUBLIC_KEY, numLayers, strongerRng: false };
  return {
    grid: TINY_GRID,
    ctxLen: TINY_CTX,
    householderSeeds: householderSeeds(BLOCK_HASH, numLayers),
    nonces: nonces.map((n) => {
      const inp = deriveNonceInputs(round, n);
      return { latentSeed: inp.latentSeed, contextSeed: inp.contextSeed, timestep: inp.timestep, experts: inp.experts };
    }),
  };
}

export function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}
