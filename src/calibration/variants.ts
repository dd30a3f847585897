// The configurations calibration compares with the reference: honest ones a validator must
// accept (benign) and cheaper or wrong ones it must catch (malign).
import type { Deviations } from '../engine/deviations.js';
import type { BackendKind, ModelInfo, Precision } from '../engine/native.js';

export interface Variant {
  name: string;
  kind: 'benign' | 'malign';
  /** Computed on this backend (default: the reference's, the CPU). */
  backend?: BackendKind;
  precision?: Precision;
  ctxLen?: number;
  threads?: number;
  batch?: number;
  deviations?: Deviations;
}

/** The CPU kernels' paths (BuildInfo.simd and .cpuPaths): the reference's and those this machine also runs. */
export interface CpuPaths {
  active: string;
  available: string[];
}

/**
 * The CPU paths whose GEMMs round differently from `active`'s: the bf16 dot-product path
 * (avx512-bf16) against the fp32 FMA ones (avx512, avx2, portable, which give identical bits, so
 * the fastest of them stands for all). What a validator on another CPU computes.
 */
export function otherCpuPaths(paths: CpuPaths): string[] {
  const fma = ['avx512', 'avx2', 'portable'].find((p) => paths.available.includes(p));
  if (paths.active === 'avx512-bf16') return fma ? [fma] : [];
  return paths.available.includes('avx512-bf16') ? ['avx512-bf16'] : [];
}

/**
 * `cudaDevice`: also compare the CUDA backend on that device with the CPU reference (the honest
 * GPU prover a CPU validator must accept), at SPEC §7's bf16 and at batch 1.
 * `cpuPaths`: also compare the CPU backend on the other CPU paths this machine runs.
 */
export function calibrationVariants(cfg: ModelInfo, ctxLen: number, blockHash: string, cudaDevice?: number, cpuPaths?: CpuPaths): Variant[] {
  const v: Variant[] = [
    { name: 'batch size 1', kind: 'benign', batch: 1 },
    { name: 'one thread', kind: 'benign', threads: 1 },
    { name: 'fp32 GEMM/attention inputs (a more precise backend)', kind: 'benign', precision: 'fp32' },
    { name: 'bf16 attention probabilities (FlashAttention-style GPU numerics)', kind: 'benign', precision: 'bf16-flash' },
  ];
  for (const path of cpuPaths ? otherCpuPaths(cpuPaths) : [])
    v.push({ name: `CPU path ${path} (GEMM kernels of another CPU)`, kind: 'benign', backend: `cpu:${path}` });
  if (cudaDevice !== undefined) {
    v.push({ name: `CUDA backend (device ${cudaDevice})`, kind: 'benign', backend: 'cuda' });
    v.push({ name: `CUDA backend (device ${cudaDevice}), batch size 1`, kind: 'benign', backend: 'cuda', batch: 1 });
  }
  if (cfg.experts.length === 2) {
    v.push({ name: 'one expert for every layer (high noise)', kind: 'malign', deviations: { singleExpert: 0 } });
    v.push({ name: 'one expert for every layer (low noise)', kind: 'malign', deviations: { singleExpert: 1 } });
  }
  v.push(
    { name: 'one block skipped', kind: 'malign', deviations: { skipLayers: [Math.floor(cfg.numLayers / 2)] } },
    { name: 'two blocks skipped', kind: 'malign', deviations: { skipLayers: [1, cfg.numLayers - 2] } },
    { name: 'weights in fp8 e4m3', kind: 'malign', deviations: { weightTransform: 'fp8' } },
    { name: 'weights in int4 (group 128)', kind: 'malign', deviations: { weightTransform: 'int4:128' } },
    { name: 'weights with 1 % noise', kind: 'malign', deviations: { weightTransform: 'noise:0.01:calibration' } },
    { name: 'attention inputs in fp8', kind: 'malign', precision: 'fp8-attention' },
    { name: 'ctx_len halved', kind: 'malign', ctxLen: Math.max(1, Math.floor(ctxLen / 2)) },
    { name: 'wrong Householder seed', kind: 'malign', deviations: { householderBlockHash: `${blockHash}-wrong` } },
    { name: 'timestep off by one', kind: 'malign', deviations: { timestepShift: 1 } },
  );
  return v;
}
