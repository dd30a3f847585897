// Device helpers shared by the kernels: the SPEC §2 hash, bf16 rounding identical to the
// host's (native/engine/bf16.h), float8 e4m3 rounding identical to round_fp8_e4m3, and
// deterministic block reductions (a fixed tree: same bits every run).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.h"
#include "murmur.h"

namespace ditpoc::cuda::dev {

// The SPEC §2 hash and uniform draw: native/engine/murmur.h, shared with the host.
using ::ditpoc::mm;
using ::ditpoc::uniform_at;

// float32 → bf16 bits, round to nearest even; NaN → quiet NaN with the host's bit pattern.
__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
__device__ __forceinline__ float bf16_to_f32(uint16_t h) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}
// Two floats → one 32-bit register of two bf16 (lo = first), as mma fragments want them.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return static_cast<uint32_t>(f32_to_bf16(lo)) | (static_cast<uint32_t>(f32_to_bf16(hi)) << 16);
}

// float8 e4m3fn rounding (max 448, saturating, no infinities): weight_transforms.cpp's
// round_fp8_e4m3, step for step.
__device__ __forceinline__ float round_fp8_e4m3(float x) {
  if (!isfinite(x)) return x;
  const float a = fminf(fabsf(x), 448.0f);
  if (a == 0.0f) return copysignf(0.0f, x);
  int e;
  frexpf(a, &e);
  const int ex = max(e - 1, -6);
  const float step = ldexpf(1.0f, ex - 3);
  const float q = rintf(a / step) * step;
  return copysignf(fminf(q, 448.0f), x);
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024) with a fixed tree:
// warp shuffles, then warp 0 over the per-warp partials. Every thread gets the result.
// `shared` must hold 32 doubles; the function synchronises the block.
__device__ __forceinline__ double block_sum(double v, double* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double w = lane < warps ? shared[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) w += __shfl_xor_sync(0xffffffffu, w, o);
    if (lane == 0) shared[0] = w;
  }
  __syncthreads();
  return shared[0];
}

__device__ __forceinline__ float block_max(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < warps ? shared[lane] : -INFINITY;  // identity of max (0 would clamp negative maxima)
    for (int o = 16; o > 0; o >>= 1) w = fmaxf(w, __shfl_xor_sync(0xffffffffu, w, o));
    if (lane == 0) shared[0] = w;
  }
  __syncthreads();
  return shared[0];
}

inline unsigned grid_for(int64_t n, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}

}  // namespace ditpoc::cuda::dev
