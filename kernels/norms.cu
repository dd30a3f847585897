// Row kernels: LayerNorm (+ adaLN modulation or affine), fused with the preceding residual
// update; QK RMSNorm over the full row fused with 3D RoPE; the gated residual fused with the
// per-layer Householder reflection. One block per row; the row lives in shared memory; row
// statistics and the reflection's dot product are float64 sums with a fixed reduction tree
// (the CPU twins in cpu/ops.cpp also use float64), so results are bit-identical run to run.
#include "common.cuh"
#include "kernels.h"

namespace ditpoc::cuda {

namespace {

int row_threads(int dim) { return dim >= 2048 ? 512 : dim >= 512 ? 256 : 128; }
size_t row_smem(int dim) {
  // The row is staged in shared memory: 48 KiB without an opt-in, less the kernels' static
  // 256 B (double red[32]), so D up to 12224.
  if (dim <= 0 || dim > 12224) throw std::invalid_argument("row kernels: dim must be in [1, 12224]");
  return static_cast<size_t>(dim) * sizeof(float);
}

template <class T>
__device__ __forceinline__ void store_as(T* p, float v);
template <>
__device__ __forceinline__ void store_as<float>(float* p, float v) { *p = v; }
template <>
__device__ __forceinline__ void store_as<uint16_t>(uint16_t* p, float v) { *p = dev::f32_to_bf16(v); }

enum class LnMode { Modulate, Affine };

// x_new = x_in + y·gate (when y), optionally stored to x_out; out = LN(x_new) then modulation
// (p0 = shift, p1 = scale, rows of mod_stride per group) or affine (p0 = weight, p1 = bias).
// x + y·gate (gate row g), x + y without a gate, or x alone without y: the residual update the
// fused kernels apply before their own reduction.
__device__ __forceinline__ float residual_value(float x, const float* y, const float* gate, int64_t gate_stride,
                                                int64_t r, int64_t g, int dim, int i) {
  if (!y) return x;
  const float yv = y[r * dim + i];
  return gate ? x + yv * gate[g * gate_stride + i] : x + yv;
}

template <LnMode mode, class Out>
__global__ void residual_ln_kernel(const float* x_in, float* x_out, const float* y, const float* gate,
                                   int64_t gate_stride, int64_t rows_per_group, int dim, double eps,
                                   const float* p0, const float* p1, int64_t mod_stride, Out* out) {
  extern __shared__ float row[];
  __shared__ double red[32];
  const int64_t r = blockIdx.x;
  const int64_t g = r / rows_per_group;
  const float* xr = x_in + r * dim;
  double sum = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = residual_value(xr[i], y, gate, gate_stride, r, g, dim, i);
    row[i] = v;
    if (x_out) x_out[r * dim + i] = v;
    sum += v;
  }
  const double mean = dev::block_sum(sum, red) / dim;
  double var = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const double d = row[i] - mean;
    var += d * d;
  }
  const double rstd = 1.0 / sqrt(dev::block_sum(var, red) / dim + eps);
  Out* o = out + r * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float n = static_cast<float>((row[i] - mean) * rstd);
    float v;
    if (mode == LnMode::Modulate) v = n * (1.0f + p1[g * mod_stride + i]) + p0[g * mod_stride + i];
    else v = n * p0[i] + p1[i];
    store_as<Out>(o + i, v);
  }
}

template <LnMode mode, class Out>
void launch_ln(const float* x_in, float* x_out, const float* y, const float* gate, int64_t gate_stride,
               int64_t rows_per_group, int64_t rows, int dim, double eps, const float* p0, const float* p1,
               int64_t mod_stride, Out* out, cudaStream_t s) {
  if (rows <= 0) return;
  if (rows_per_group <= 0) rows_per_group = rows;
  residual_ln_kernel<mode, Out><<<static_cast<unsigned>(rows), row_threads(dim), row_smem(dim), s>>>(
      x_in, x_out, y, gate, gate_stride, rows_per_group, dim, eps, p0, p1, mod_stride, out);
  DITPOC_CUDA_CHECK_LAUNCH();
}

__global__ void residual_reflect_kernel(float* x, const float* y, const float* gate, int64_t gate_stride,
                                        int64_t rows_per_group, int dim, const float* w) {
  extern __shared__ float row[];
  __shared__ double red[32];
  const int64_t r = blockIdx.x;
  const int64_t g = r / rows_per_group;
  float* xr = x + r * dim;
  double dot = 0.0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = residual_value(xr[i], y, gate, gate_stride, r, g, dim, i);
    row[i] = v;
    if (w) dot += static_cast<double>(w[i]) * v;
  }
  if (!w) {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) xr[i] = row[i];
    return;
  }
  const float two_d = static_cast<float>(2.0 * dev::block_sum(dot, red));
  for (int i = threadIdx.x; i < dim; i += blockDim.x) xr[i] = row[i] - two_d * w[i];
}

// RMSNorm over the row (norm_w), then RoPE on adjacent pairs of each head, per pair p of the
// row: elements 2p, 2p+1, head (2p)/head_dim, pair j = (2p % head_dim)/2 of that head.
__global__ void rmsnorm_rope_kernel(const float* in, int64_t in_stride, int dim, int head_dim, double eps,
                                    const float* norm_w, const float2* rope, int64_t rope_tokens,
                                    uint16_t* out_bf16, float* out_f32) {
  __shared__ double red[32];
  const int64_t r = blockIdx.x;
  const float* xr = in + r * in_stride;
  double inv = 1.0;
  if (norm_w) {
    double ss = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
      const double v = xr[i];
      ss += v * v;
    }
    inv = 1.0 / sqrt(dev::block_sum(ss, red) / dim + eps);
  }
  const int pairs_per_head = head_dim / 2;
  const float2* rt = rope ? rope + (r % rope_tokens) * pairs_per_head : nullptr;
  for (int p = threadIdx.x; p < dim / 2; p += blockDim.x) {
    const int c0 = 2 * p;
    float a = xr[c0], b = xr[c0 + 1];
    if (norm_w) {
      a = static_cast<float>(a * inv) * norm_w[c0];
      b = static_cast<float>(b * inv) * norm_w[c0 + 1];
    }
    if (rt) {
      const float2 cs = rt[(c0 % head_dim) / 2];
      const float ra = a * cs.x - b * cs.y;
      const float rb = a * cs.y + b * cs.x;
      a = ra;
      b = rb;
    }
    if (out_f32) {
      out_f32[r * dim + c0] = a;
      out_f32[r * dim + c0 + 1] = b;
    }
    if (out_bf16) {
      reinterpret_cast<uint32_t*>(out_bf16 + r * dim)[p] = dev::pack_bf16x2(a, b);
    }
  }
}

}  // namespace

void layernorm_modulate_bf16(const float* x, int64_t rows, int dim, double eps, const float* shift,
                             const float* scale, int64_t mod_stride, int64_t rows_per_group, uint16_t* out,
                             cudaStream_t s) {
  launch_ln<LnMode::Modulate>(x, nullptr, nullptr, nullptr, 0, rows_per_group, rows, dim, eps, shift, scale,
                              mod_stride, out, s);
}

void layernorm_modulate_f32(const float* x, int64_t rows, int dim, double eps, const float* shift,
                            const float* scale, int64_t mod_stride, int64_t rows_per_group, float* out,
                            cudaStream_t s) {
  launch_ln<LnMode::Modulate>(x, nullptr, nullptr, nullptr, 0, rows_per_group, rows, dim, eps, shift, scale,
                              mod_stride, out, s);
}

void layernorm_affine_bf16(const float* x, int64_t rows, int dim, double eps, const float* weight,
                           const float* bias, uint16_t* out, cudaStream_t s) {
  launch_ln<LnMode::Affine>(x, nullptr, nullptr, nullptr, 0, rows, rows, dim, eps, weight, bias, 0, out, s);
}

void residual_layernorm_affine_bf16(float* x, const float* y, const float* gate, int64_t gate_stride,
                                    int64_t rows_per_group, int64_t rows, int dim, double eps,
                                    const float* weight, const float* bias, uint16_t* out, cudaStream_t s) {
  launch_ln<LnMode::Affine>(x, x, y, gate, gate_stride, rows_per_group, rows, dim, eps, weight, bias, 0, out, s);
}

void residual_layernorm_modulate_bf16(float* x, const float* y, const float* gate, int64_t gate_stride,
                                      int64_t rows_per_group, int64_t rows, int dim, double eps,
                                      const float* shift, const float* scale, int64_t mod_stride, uint16_t* out,
                                      cudaStream_t s) {
  launch_ln<LnMode::Modulate>(x, x, y, gate, gate_stride, rows_per_group, rows, dim, eps, shift, scale,
                              mod_stride, out, s);
}

void residual_reflect(float* x, const float* y, const float* gate, int64_t gate_stride, int64_t rows_per_group,
                      int64_t rows, int dim, const float* w, cudaStream_t s) {
  if (rows <= 0) return;
  if (rows_per_group <= 0) rows_per_group = rows;
  residual_reflect_kernel<<<static_cast<unsigned>(rows), row_threads(dim), row_smem(dim), s>>>(
      x, y, gate, gate_stride, rows_per_group, dim, w);
  DITPOC_CUDA_CHECK_LAUNCH();
}

void rmsnorm_rope(const float* in, int64_t in_stride, int64_t rows, int heads, int head_dim, double eps,
                  const float* norm_w, const float2* rope, int64_t rope_tokens, uint16_t* out_bf16,
                  float* out_f32, cudaStream_t s) {
  if (rows <= 0) return;
  const int dim = heads * head_dim;
  if (head_dim % 2 != 0) throw std::invalid_argument("rmsnorm_rope: head_dim must be even");
  if (rope && rope_tokens <= 0) throw std::invalid_argument("rmsnorm_rope: rope table without tokens");
  rmsnorm_rope_kernel<<<static_cast<unsigned>(rows), row_threads(dim / 2), 0, s>>>(
      in, in_stride, dim, head_dim, eps, norm_w, rope, rope_tokens, out_bf16, out_f32);
  DITPOC_CUDA_CHECK_LAUNCH();
}

}  // namespace ditpoc::cuda
