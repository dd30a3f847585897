// Peak memory of a forward, estimated before work is accepted: grid, seq_len and batch_size are
// each capped, but their product is not, and a product too large ends in an OOM kill.
//
// Per nonce, what the CPU backend (native/engine/cpu/cpu_backend.cpp) holds at its peak, in fp32:
// the residual stream x and one block's h, q, k, v, attention output, projection output and the
// per-expert gathered copy (8·D per token), the FFN hidden layer (F), the patches and the latent
// they come from (2·P), the output and the copy handed to post-processing (2·out), and the text
// context through its embedding MLP (ctx_len · (text_dim + 4·D)).
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';

import type { ModelInfo } from './native.js';

export type Grid3 = readonly [number, number, number];

/** Fraction of the available memory a plan may use (the rest absorbs what the estimate leaves out). */
export const MEMORY_HEADROOM = 0.8;

export function forwardBytesPerNonce(info: ModelInfo, grid: Grid3, ctxLen: number): number {
  const tokens = grid[0] * grid[1] * grid[2];
  const patch = info.patch[0] * info.patch[1] * info.patch[2];
  const perToken = 8 * info.dim + info.ffnDim + 2 * info.inChannels * patch + 2 * info.outChannels * patch;
  const text = ctxLen * (info.textDim + 4 * info.dim);
  return 4 * (tokens * perToken + text);
}

/**
 * Host bytes of one loaded CPU model: its bf16 packed copy (the backend streams the weights in,
 * so the bf16 tensors never sit beside it; the fp32 biases and norms are a rounding error).
 */
export function cpuWeightsBytes(info: ModelInfo): number {
  return info.paramsPerExpert * info.experts.length * 2;
}

export interface BatchPlan {
  /** Nonces per forward: min(requested, what fits); 0 when not even one fits. */
  batchSize: number;
  bytesPerNonce: number;
  /** Bytes the plan may use per device (after weights still to load, with headroom). */
  usableBytes: number;
}

/** The largest batch ≤ requested whose forward fits in `availableBytes` (minus `weightsBytes` still to load). */
export function planBatch(requested: number, bytesPerNonce: number, availableBytes: number, weightsBytes = 0): BatchPlan {
  const usableBytes = Math.max(0, availableBytes * MEMORY_HEADROOM - weightsBytes);
  const fits = Math.floor(usableBytes / bytesPerNonce);
  return { batchSize: Math.max(0, Math.min(requested, fits)), bytesPerNonce, usableBytes };
}

export const gib = (bytes: number) => Math.round((bytes / 2 ** 30) * 100) / 100;

function readNumber(path: string): number | null {
  try {
    const v = Number(readFileSync(path, 'utf8').trim());
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * Host memory a new allocation can use: the kernel's MemAvailable, or less inside a memory
 * cgroup (a container), whose limit is what the OOM killer enforces.
 */
export function availableHostMemory(): number {
  let avail = freemem();
  const limit = process.constrainedMemory?.() ?? 0;
  if (limit > 0 && limit < 2 ** 60) {
    const used = readNumber('/sys/fs/cgroup/memory.current') ?? readNumber('/sys/fs/cgroup/memory/memory.usage_in_bytes') ?? process.memoryUsage().rss;
    avail = Math.min(avail, Math.max(0, limit - used));
  }
  return avail;
}
