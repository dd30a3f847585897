// fp32 linear layer with bf16 weights: C = A·Wᵀ + bias, no input rounding. Used where the
// reference runs in fp32 (time embedding MLPs, the head); these are a few percent of the
// FLOPs, so a plain shared-memory tiled SIMT kernel is enough. Each output element is one
// thread's fp32 fused multiply-add chain over k = 0..K−1 in order, so its bits depend only on
// its own row of A, W and the bias (never on M or on the other rows).
#include "common.cuh"
#include "kernels.h"

namespace ditpoc::cuda {

namespace {

constexpr int kTm = 64, kTn = 64, kTk = 16;  // block tile; 256 threads, 4×4 outputs each

__global__ void __launch_bounds__(256) linear_f32_kernel(const float* __restrict__ A, int64_t lda, int64_t M,
                                                         const uint16_t* __restrict__ W,
                                                         const float* __restrict__ bias, int64_t N, int64_t K,
                                                         float* __restrict__ C, int64_t ldc) {
  __shared__ float sA[kTk][kTm + 1];
  __shared__ float sW[kTk][kTn + 1];
  const int64_t m0 = int64_t(blockIdx.y) * kTm, n0 = int64_t(blockIdx.x) * kTn;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;  // outputs rows ty + 16i, cols tx + 16j
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kTk) {
    for (int idx = threadIdx.x; idx < kTm * kTk; idx += blockDim.x) {
      const int r = idx / kTk, c = idx % kTk;
      const int64_t gm = m0 + r, gk = k0 + c;
      sA[c][r] = (gm < M && gk < K) ? A[gm * lda + gk] : 0.0f;
      const int64_t gn = n0 + r;
      sW[c][r] = (gn < N && gk < K) ? dev::bf16_to_f32(W[gn * K + gk]) : 0.0f;
    }
    __syncthreads();
    const int kmax = static_cast<int>(K - k0 < kTk ? K - k0 : kTk);
    for (int kk = 0; kk < kmax; ++kk) {
      float a[4], w[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = sA[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) w[j] = sW[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], w[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t gm = m0 + ty + 16 * i, gn = n0 + tx + 16 * j;
      if (gm < M && gn < N) C[gm * ldc + gn] = acc[i][j] + (bias ? bias[gn] : 0.0f);
    }
}

}  // namespace

void linear_f32(const float* A, int64_t lda, int64_t M, const uint16_t* W, const float* bias, int64_t N, int64_t K,
                float* C, int64_t ldc, cudaStream_t s) {
  if (M <= 0 || N <= 0) return;
  const int64_t gy = (M + kTm - 1) / kTm, gx = (N + kTn - 1) / kTn;
  if (gy > 65535) throw std::invalid_argument("linear_f32: M too large (at most 4194240 rows)");
  linear_f32_kernel<<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), 256, 0, s>>>(A, lda, M, W, bias, N,
                                                                                              K, C, ldc);
  DITPOC_CUDA_CHECK_LAUNCH();
}

}  // namespace ditpoc::cuda
