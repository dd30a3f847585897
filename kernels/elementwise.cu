// Element-wise kernels: bf16 conversion, GELU-tanh, SiLU, broadcast adds (modulation rows),
// the patch-embedding gather, and the per-nonce float8 quantisation of attention inputs.
#include "common.cuh"
#include "kernels.h"

namespace ditpoc::cuda {

namespace {

constexpr int kThreads = 256;

#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void f32_to_bf16_kernel(const float* in, int64_t in_stride, int64_t rows, int64_t cols, uint16_t* out) {
  GRID_STRIDE(e, rows * cols) {
    const int64_t r = e / cols, c = e % cols;
    out[e] = dev::f32_to_bf16(in[r * in_stride + c]);
  }
}

// CPU: 0.5f·u·(1 + tanh(c·(u + 0.044715f·u³))) with c = f32(√(2/π)).
__device__ __forceinline__ float gelu_tanh(float u) {
  const float c = 0.7978845608028654f;
  return 0.5f * u * (1.0f + tanhf(c * (u + 0.044715f * u * u * u)));
}

__global__ void gelu_bf16_kernel(const float* in, int64_t in_stride, int64_t rows, int64_t cols, uint16_t* out) {
  GRID_STRIDE(e, rows * cols) {
    const int64_t r = e / cols, c = e % cols;
    out[e] = dev::f32_to_bf16(gelu_tanh(in[r * in_stride + c]));
  }
}

__global__ void silu_kernel(float* x, int64_t n) {
  GRID_STRIDE(i, n) x[i] = x[i] / (1.0f + expf(-x[i]));
}

__global__ void add_broadcast_kernel(const float* a, const float* b, int64_t b_stride, int64_t groups, int64_t n, float* out) {
  GRID_STRIDE(e, groups * n) {
    const int64_t g = e / n, i = e % n;
    out[e] = a[i] + b[g * b_stride + i];
  }
}

__global__ void patchify_kernel(const float* latent, int channels, int frames, int height, int width, int pt,
                                int ph, int pw, uint16_t* out) {
  const int P = channels * pt * ph * pw;
  const int64_t tokens = int64_t(frames) * height * width;
  const int64_t Fz = int64_t(frames) * pt, Hz = int64_t(height) * ph, Wz = int64_t(width) * pw;
  GRID_STRIDE(e, tokens * P) {
    const int64_t tok = e / P;
    int p = static_cast<int>(e % P);
    const int j = p % pw; p /= pw;
    const int i = p % ph; p /= ph;
    const int a = p % pt; p /= pt;
    const int c = p;
    const int w = static_cast<int>(tok % width);
    const int h = static_cast<int>((tok / width) % height);
    const int f = static_cast<int>(tok / (int64_t(width) * height));
    const float v = latent[((c * Fz + int64_t(f) * pt + a) * Hz + int64_t(h) * ph + i) * Wz + int64_t(w) * pw + j];
    out[e] = dev::f32_to_bf16(v);
  }
}

// ---- float8 quantisation: amax per group in two deterministic stages (max is exact) ----
constexpr int kFp8Parts = 64;  // partial maxima per group

__global__ void amax_partial_kernel(const float* x, int64_t in_stride, int64_t rows_per_group, int64_t cols,
                                    float* partial) {
  __shared__ float red[32];
  const int64_t g = blockIdx.y;
  const int64_t n = rows_per_group * cols;
  float m = 0.0f;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = g * rows_per_group + e / cols, c = e % cols;
    m = fmaxf(m, fabsf(x[r * in_stride + c]));
  }
  m = dev::block_max(m, red);
  if (threadIdx.x == 0) partial[g * kFp8Parts + blockIdx.x] = m;
}

__global__ void quantize_fp8_kernel(const float* x, int64_t in_stride, int64_t rows_per_group, int64_t cols,
                                    const float* partial, uint16_t* out, float* scale_out) {
  const int64_t g = blockIdx.y;
  float amax = 0.0f;
  for (int p = 0; p < kFp8Parts; ++p) amax = fmaxf(amax, partial[g * kFp8Parts + p]);
  const float scale = amax > 0.0f ? amax / 448.0f : 1.0f;
  if (blockIdx.x == 0 && threadIdx.x == 0) scale_out[g] = scale;
  const int64_t n = rows_per_group * cols;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = g * rows_per_group + e / cols, c = e % cols;
    out[r * cols + c] = dev::f32_to_bf16(dev::round_fp8_e4m3(x[r * in_stride + c] / scale));
  }
}

}  // namespace

void f32_to_bf16(const float* in, int64_t in_stride, int64_t rows, int64_t cols, uint16_t* out, cudaStream_t s) {
  if (rows * cols <= 0) return;
  f32_to_bf16_kernel<<<dev::grid_for(rows * cols, kThreads), kThreads, 0, s>>>(in, in_stride, rows, cols, out);
  DITPOC_CUDA_CHECK_LAUNCH();
}

void gelu_tanh_to_bf16(const float* in, int64_t in_stride, int64_t rows, int64_t cols, uint16_t* out,
                       cudaStream_t s) {
  if (rows * cols <= 0) return;
  gelu_bf16_kernel<<<dev::grid_for(rows * cols, kThreads), kThreads, 0, s>>>(in, in_stride, rows, cols, out);
  DITPOC_CUDA_CHECK_LAUNCH();
}

void silu_inplace(float* x, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  silu_kernel<<<dev::grid_for(n, kThreads), kThreads, 0, s>>>(x, n);
  DITPOC_CUDA_CHECK_LAUNCH();
}

void add_broadcast(const float* a, const float* b, int64_t b_stride, int64_t groups, int64_t n, float* out,
                   cudaStream_t s) {
  if (groups * n <= 0) return;
  add_broadcast_kernel<<<dev::grid_for(groups * n, kThreads), kThreads, 0, s>>>(a, b, b_stride, groups, n, out);
  DITPOC_CUDA_CHECK_LAUNCH();
}

void patchify_bf16(const float* latent, int channels, int frames, int height, int width, int pt, int ph, int pw,
                   uint16_t* out, cudaStream_t s) {
  const int64_t n = int64_t(frames) * height * width * channels * pt * ph * pw;
  if (n <= 0) return;
  patchify_kernel<<<dev::grid_for(n, kThreads), kThreads, 0, s>>>(latent, channels, frames, height, width, pt, ph,
                                                                  pw, out);
  DITPOC_CUDA_CHECK_LAUNCH();
}

int64_t fp8_partial_floats(int64_t groups) { return groups * kFp8Parts; }

void quantize_fp8_groups(const float* x, int64_t in_stride, int64_t rows_per_group, int64_t cols, int64_t groups,
                         uint16_t* out, float* scale_out, float* partial, cudaStream_t s) {
  if (groups <= 0) return;
  if (groups > 65535) throw std::invalid_argument("quantize_fp8_groups: too many groups");
  amax_partial_kernel<<<dim3(kFp8Parts, static_cast<unsigned>(groups)), kThreads, 0, s>>>(
      x, in_stride, rows_per_group, cols, partial);
  DITPOC_CUDA_CHECK_LAUNCH();
  const unsigned blocks = dev::grid_for(rows_per_group * cols, kThreads, 4096);
  quantize_fp8_kernel<<<dim3(blocks, static_cast<unsigned>(groups)), kThreads, 0, s>>>(
      x, in_stride, rows_per_group, cols, partial, out, scale_out);
  DITPOC_CUDA_CHECK_LAUNCH();
}

}  // namespace ditpoc::cuda
