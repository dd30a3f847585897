// The CPU backend's non-GEMM ops (SPEC §5, precision per §7). Each is row-parallel: a row's
// result is computed by one thread with one instruction sequence, so bits never depend on
// the thread count or on which other rows share the call. Reductions use float64 accumulators
// (more precise than the fp32 reference semantics, which SPEC §7 allows).
#pragma once
#include <cstdint>

#include "../thread_pool.h"
#include "attention.h"

namespace ditpoc::cpu {

// out = LN(x)·(1 + scale) + shift; LayerNorm over `dim` without affine, biased variance.
// Row r uses modulation row r / rows_per_group (scale/shift have one row per group).
void layernorm_modulate(const float* x, int64_t rows, int dim, double eps, const float* shift,
                        const float* scale, int64_t mod_stride, int64_t rows_per_group, float* out,
                        ThreadPool& pool);

// out = LN(x)·weight + bias (the affine cross-attention LayerNorm, norm3).
void layernorm_affine(const float* x, int64_t rows, int dim, double eps, const float* weight,
                      const float* bias, float* out, ThreadPool& pool);

// In place: x = x / sqrt(mean(x²) + eps) · weight, over the full `dim` (all heads at once).
void rmsnorm_inplace(float* x, int64_t rows, int dim, double eps, const float* weight,
                     ThreadPool& pool);

// 3D RoPE tables for a grid: per token (f,h,w row-major) and per pair of a head, cos and sin.
struct RopeTable {
  int64_t tokens = 0;
  int pairs = 0;  // head_dim / 2
  std::vector<float> cos, sin;  // [tokens, pairs]
};
RopeTable make_rope_table(int frames, int height, int width, int head_dim, double theta = 10000.0);

// In place on x [rows, heads·head_dim]: rotates adjacent pairs of each head by the token's
// angles; row r is token r % table.tokens.
void rope_inplace(float* x, int64_t rows, int heads, int head_dim, const RopeTable& table,
                  ThreadPool& pool);

// Rounds every element to bf16 (the attention-input rounding of SPEC §7).
void round_bf16_inplace(float* x, int64_t n, ThreadPool& pool);

// Rounds each group of `rows_per_group` rows to float8 e4m3 with one scale per group
// (amax → 448), the per-tensor scaling of fp8 attention kernels, applied per nonce.
void round_fp8_groups_inplace(float* x, int64_t groups, int64_t group_size, ThreadPool& pool);

// attention(): see attention.h.

// In place: x = GELU_tanh(x).
void gelu_tanh_inplace(float* x, int64_t n, ThreadPool& pool);
// In place: x = SiLU(x).
void silu_inplace(float* x, int64_t n, ThreadPool& pool);

// x += y · gate, gate row r / rows_per_group (gate may be null: ungated residual).
void residual_add(float* x, const float* y, const float* gate, int64_t gate_stride,
                  int64_t rows, int dim, int64_t rows_per_group, ThreadPool& pool);

// Every row: x = x − 2(w·x)w (a Householder reflection; w is a unit vector).
void reflect_rows(float* x, int64_t rows, int dim, const float* w, ThreadPool& pool);

// Sinusoidal timestep embedding [cos(t·ω), sin(t·ω)], ω_i = 10000^(−i/half), in float64.
void timestep_sinusoid(int timestep, int freq_dim, float* out);

}  // namespace ditpoc::cpu
