// FLOP model of one Wan DiT forward (SPEC §12, research/wan22-architecture.md §4.2) and the
// latent-patch count of a video request. Pure arithmetic: takes plain config objects (the
// addon's ModelInfo fits), so it needs no native addon.
//
// Conventions: 1 multiply-accumulate = 2 FLOP, batch 1, L video tokens (latent patches),
// Lc text tokens. Elementwise work (norms, RoPE, softmax exponentials, modulation, GELU) and the
// time-embedding MLPs are not counted (O(L·D) and tiny, see research §4.2).
import { InputError } from '../errors.js';

/** The parts of a model config the FLOP model needs. */
export interface FlopConfig {
  dim: number;
  ffnDim: number;
  numLayers: number;
  inChannels: number;
  outChannels: number;
  experts: string[];
  /** T5 feature width (4096 for every Wan model). */
  textDim: number;
  /** patch size [pt, ph, pw]; [1,2,2] (4 values per channel per patch) when absent. */
  patch?: readonly [number, number, number];
}

/** A config that also knows its VAE stride and patch, for pixel → latent-patch conversion. */
export interface LatentConfig {
  vaeStride: readonly [number, number, number];
  patch: readonly [number, number, number];
}

export interface ForwardFlops {
  /** Everything below summed: blocks + patchEmbed + head + textEmbed. */
  total: number;
  /** All transformer blocks: gemm + attention. */
  blocks: number;
  /** Linear layers of all blocks: layers · (12·L·D² + 4·Lc·D² + 4·L·D·F). */
  gemm: number;
  /** Attention cores (QKᵀ and PV) of all blocks: layers · (4·L²·D + 4·L·Lc·D). */
  attention: number;
  /** Patch embedding: 2·L·(pt·ph·pw)·C_in·D. */
  patchEmbed: number;
  /** Head: 2·L·D·(pt·ph·pw)·C_out. */
  head: number;
  /** Text-embedding MLP, once per expert used: experts · 2·Lc·(textDim·D + D²). */
  textEmbed: number;
}

function patchVolume(cfg: FlopConfig): number {
  const p = cfg.patch ?? [1, 2, 2];
  return p[0] * p[1] * p[2];
}

function checkCount(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new InputError(`${name} must be an integer ≥ ${min}, got ${v}`);
}

/**
 * FLOPs of one forward with L video tokens, Lc text tokens, and `expertsUsed` experts whose text
 * MLP runs (a real denoising step uses 1; a PoC nonce uses the number of distinct experts its
 * per-layer routing picks, because each expert embeds the text with its own weights).
 *
 * Per block `12·L·D² + 4·Lc·D² + 4·L·D·F + 4·L²·D + 4·L·Lc·D`; per forward add
 * `2·L·4·C_in·D`, `2·L·D·4·C_out` and `expertsUsed · 2·Lc·(4096·D + D²)` (SPEC §12).
 */
export function forwardFlops(cfg: FlopConfig, L: number, Lc: number, expertsUsed: number): ForwardFlops {
  checkCount('token count L', L, 1);
  checkCount('text tokens Lc', Lc, 0);
  checkCount('experts used', expertsUsed, 1);
  if (expertsUsed > cfg.experts.length)
    throw new InputError(`experts used (${expertsUsed}) exceeds the model's ${cfg.experts.length} expert(s)`);
  const D = cfg.dim;
  const F = cfg.ffnDim;
  const layers = cfg.numLayers;
  const pv = patchVolume(cfg);
  const gemm = layers * (12 * L * D * D + 4 * Lc * D * D + 4 * L * D * F);
  const attention = layers * (4 * L * L * D + 4 * L * Lc * D);
  const patchEmbed = 2 * L * pv * cfg.inChannels * D;
  const head = 2 * L * D * pv * cfg.outChannels;
  const textEmbed = expertsUsed * 2 * Lc * (cfg.textDim * D + D * D);
  const blocks = gemm + attention;
  return { total: blocks + patchEmbed + head + textEmbed, blocks, gemm, attention, patchEmbed, head, textEmbed };
}

/** FLOPs of one PoC nonce: a full forward on the round's latent grid [F, H, W] (L = F·H·W). */
export function nonceFlops(
  cfg: FlopConfig,
  grid: readonly [number, number, number],
  ctxLen: number,
  expertsUsed: number,
): ForwardFlops {
  if (grid.length !== 3 || grid.some((g) => !Number.isInteger(g) || g <= 0))
    throw new InputError(`grid must be three positive integers, got [${grid.join(',')}]`);
  return forwardFlops(cfg, grid[0] * grid[1] * grid[2], ctxLen, expertsUsed);
}

/**
 * The forward's FLOPs as a polynomial in L: `total = alpha·L² + beta·L + gamma` (exactly, for
 * the given Lc and experts used).
 *   alpha = 4·D·layers                                   (self-attention QKᵀ, PV)
 *   beta  = layers·(12·D² + 4·D·F + 4·Lc·D) + 2·pv·C_in·D + 2·D·pv·C_out
 *   gamma = layers·4·Lc·D² + expertsUsed·2·Lc·(textDim·D + D²)   (text-side K/V + text MLP)
 */
export function flopCoefficients(
  cfg: FlopConfig,
  Lc: number,
  expertsUsed = 1,
): { alpha: number; beta: number; gamma: number } {
  checkCount('text tokens Lc', Lc, 0);
  checkCount('experts used', expertsUsed, 1);
  const D = cfg.dim;
  const F = cfg.ffnDim;
  const layers = cfg.numLayers;
  const pv = patchVolume(cfg);
  return {
    alpha: 4 * D * layers,
    beta: layers * (12 * D * D + 4 * D * F + 4 * Lc * D) + 2 * pv * cfg.inChannels * D + 2 * D * pv * cfg.outChannels,
    gamma: layers * 4 * Lc * D * D + expertsUsed * 2 * Lc * (cfg.textDim * D + D * D),
  };
}

/**
 * Latent-patch grid [F', H', W'] of a width×height×frames video:
 * F' = (1 + (T−1)/s_t)/p_t, H' = H/s_h/p_h, W' = W/s_w/p_w (the causal VAE keeps the first
 * frame alone). Throws InputError unless every division is exact.
 */
export function latentGrid(cfg: LatentConfig, width: number, height: number, frames: number): [number, number, number] {
  for (const [name, v] of [['width', width], ['height', height], ['frames', frames]] as const)
    if (!Number.isInteger(v) || v <= 0) throw new InputError(`${name} must be a positive integer, got ${v}`);
  const [st, sh, sw] = cfg.vaeStride;
  const [pt, ph, pw] = cfg.patch;
  if ((frames - 1) % st !== 0)
    throw new InputError(`frames must be ${st}·k + 1 (e.g. 81 or 121): frames − 1 must be divisible by the VAE time stride ${st}, got ${frames}`);
  const latentFrames = 1 + (frames - 1) / st;
  if (latentFrames % pt !== 0)
    throw new InputError(`latent frames ${latentFrames} must be divisible by the time patch ${pt}`);
  if (height % (sh * ph) !== 0)
    throw new InputError(`height must be divisible by ${sh * ph} (VAE stride ${sh} × patch ${ph}), got ${height}`);
  if (width % (sw * pw) !== 0)
    throw new InputError(`width must be divisible by ${sw * pw} (VAE stride ${sw} × patch ${pw}), got ${width}`);
  return [latentFrames / pt, height / (sh * ph), width / (sw * pw)];
}

/** Latent patches N = (1 + (T−1)/4)·(H/s_h/2)·(W/s_w/2) of a video request (tokens per forward). */
export function latentPatches(cfg: LatentConfig, width: number, height: number, frames: number): number {
  const [f, h, w] = latentGrid(cfg, width, height, frames);
  return f * h * w;
}
