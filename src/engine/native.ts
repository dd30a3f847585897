// Loads the Node-API addon and gives its surface TypeScript types. Nothing here computes:
// see native/binding/addon.cpp for the behaviour behind each call.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ModelInfo {
  id: string;
  dim: number;
  ffnDim: number;
  numHeads: number;
  numLayers: number;
  inChannels: number;
  outChannels: number;
  experts: string[];
  vaeStride: [number, number, number];
  patch: [number, number, number];
  headDim: number;
  textDim: number;
  freqDim: number;
  eps: number;
  paramsPerExpert: number;
}

export interface TensorSpecInfo {
  name: string;
  diffusersName: string;
  shape: number[];
}

/**
 * bf16: SPEC §7. fp32: no input rounding (checks against float64). bf16-flash: bf16 plus
 * FlashAttention-style bf16 probabilities (honest GPU numerics). fp8-attention: q, k, v in fp8
 * (a cheaper, dishonest variant, for calibration).
 */
export type Precision = 'bf16' | 'fp32' | 'bf16-flash' | 'fp8-attention';

export interface NativeNonceInput {
  latentSeed?: number;
  latentWords?: Uint32Array | null;
  contextSeed?: number;
  latent?: Float32Array;
  context?: Float32Array;
  timestep: number;
  experts: Uint8Array;
}

export interface NativeForwardRequest {
  grid: [number, number, number];
  ctxLen: number;
  precision?: Precision;
  householderSeeds: Uint32Array;
  nonces: NativeNonceInput[];
  /** Deviation (calibration, cheat tests): 1 skips the layer's block. */
  skipLayers?: Uint8Array;
}

/** SPEC §13 step 4: one denoiser evaluation f(x, t, context) per context, batched. */
export interface NativeDenoiseRequest {
  /** [C_in, F, H, W]: the latent (VAE) grid; F ≥ 1, H and W even (patch 1,2,2). */
  latentShape: [number, number, number, number];
  /** row-major, length C_in·F·H·W */
  latent: Float32Array;
  /** integer timestep in [0, 999] (the scheduler's int64 truncation of 1000·σ) */
  timestep: number;
  /** index into config.experts; every layer runs on this expert (single-expert models: 0) */
  expert: number;
  /** rows per context (512 for SPEC §13: contexts are zero-padded to 512 by the caller) */
  ctxLen: number;
  /** one or more contexts, each [ctxLen, 4096] row-major; the passes share latent and timestep (CFG: [context_null, context]) */
  contexts: Float32Array[];
  precision?: Precision;
}

/** SPEC §5 steps 1–9 for bare nonces: the engine derives their inputs and reduces their outputs. */
export interface NativeArtifactsRequest {
  grid: [number, number, number];
  ctxLen: number;
  precision?: Precision;
  blockHash: string;
  publicKey: string;
  strongerRng?: boolean;
  /** the artifact's length k (at most the output length per nonce) */
  kDim: number;
  /** int32 nonces */
  nonces: number[];
}

export interface NativeArtifacts {
  /** nonces.length · 2k bytes: each nonce's k fp16 values, little-endian. */
  vectors: Uint8Array;
  /** 1 where the nonce has an artifact, 0 where its output was non-finite (its bytes are zero). */
  finite: Uint8Array;
}

export interface NativeModel {
  readonly config: ModelInfo;
  readonly identity: string;
  readonly backend: string;
  readonly threads: number;
  readonly disposed: boolean;
  forward(req: NativeForwardRequest, out?: Float32Array): Promise<Float32Array>;
  /**
   * forward() and the artifact of each output, with every nonce's inputs derived in the engine:
   * the same bits as deriveNonceInputs → forward → computeArtifact, with no per-nonce work on the
   * JS thread. A model without it (a stand-in engine) is driven through forward().
   */
  forwardArtifacts?(req: NativeArtifactsRequest): Promise<NativeArtifacts>;
  /**
   * The §5 forward with every layer on `expert`, no Householder reflections, the head output
   * unpatchified (official Wan2.2 layout). Resolves to contexts.length outputs concatenated,
   * each [C_out, F, H, W]; written into `out` when given (its length must match).
   */
  denoise(req: NativeDenoiseRequest, out?: Float32Array): Promise<Float32Array>;
  tensor(expert: number, name: string): Float32Array;
  cancel(): void;
  dispose(): void;
}

/** A backend: auto, cpu, cuda, or cpu:<path> (the CPU backend on one of BuildInfo.cpuPaths). */
export type BackendKind = 'auto' | 'cpu' | 'cuda' | `cpu:${string}`;

export interface LoadOptions {
  model: string;
  weights: 'random' | string;
  weightsSeed?: string;
  threads?: number;
  /** Deviation (calibration, cheat tests): "none", "noise:REL[:SEED]", "fp8" or "int4[:GROUP]". */
  weightTransform?: string;
  /** auto (CUDA when this build has it and a device answers, else CPU), cpu or cuda. */
  backend?: BackendKind;
  /** CUDA device ordinal. */
  device?: number;
}

export interface BuildInfo {
  backends: string[];
  cudaCompiled: boolean;
  hardwareThreads: number;
  /** The CPU kernels' path: DITPOC_CPU_ISA when set, else the best in cpuPaths. */
  simd: string;
  /** CPU paths this build runs on this machine, best last. */
  cpuPaths: string[];
}

export interface NativeAddon {
  loadModel(opts: LoadOptions, onProgress?: (done: number, total: number) => void): Promise<NativeModel>;
  models(): ModelInfo[];
  tensorSpecs(model: string): TensorSpecInfo[];
  buildInfo(): BuildInfo;
  seed32(s: string): number;
  murmur(key: number, seed: number): number;
  uniform(seed: number, n: number): Float32Array;
  normal(seed: number, n: number): Float32Array;
  normalStrong(s: string, n: number): Float32Array;
  householderVector(seed: number, n: number): Float32Array;
  /** The inputs forwardArtifacts derives for a nonce (deriveNonceInputs' twin). */
  nonceInputs(round: { blockHash: string; publicKey: string; numLayers: number; strongerRng?: boolean }, nonce: number): {
    latentSeed: number;
    latentWords: Uint32Array | null;
    contextSeed: number;
    timestep: number;
    experts: Uint8Array;
  };
  /** The artifact forwardArtifacts computes (computeArtifact's twin): 2k bytes, fp16 LE; null for a non-finite y. */
  artifact(y: Float32Array, blockHash: string, publicKey: string, nonce: number, k: number): Uint8Array | null;
  /** flock(LOCK_EX|LOCK_NB) on the file (created if missing): the fd holding the lock; throws code 'ELOCKED' when held elsewhere. */
  lockFile(path: string): number;
  /** Closes a lockFile fd (releasing the lock). */
  unlockFile(fd: number): void;
  /** Ends the process at once (std::_Exit), without waiting for native work in flight. */
  hardExit(code: number): never;
}

// The addon sits in build/addon/Release under the package root, whether this file runs from
// src/ (tests) or dist/src/ (the compiled CLI).
function findAddon(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = resolve(dir, 'build/addon/Release/ditpoc.node');
    if (existsSync(candidate)) return candidate;
    dir = resolve(dir, '..');
  }
  throw new Error('dit-poc native addon not found: run `npm run build:native` (cmake-js) first');
}

let cached: NativeAddon | undefined;

export function addon(): NativeAddon {
  if (!cached) cached = createRequire(import.meta.url)(findAddon()) as NativeAddon;
  return cached;
}
