// Host-side launchers of the CUDA kernels in kernels/*.cu: every non-GEMM op of the SPEC §5
// forward (GEMMs go through cuBLASLt, native/engine/cuda/lt_gemm.h). Plain C++: callers need
// only the CUDA runtime API header. bf16 tensors are passed as uint16_t bit patterns (the
// engine's storage type, weights.h); all pointers are device pointers unless stated.
//
// Each launcher has a CPU twin in native/engine/cpu/ops.h or native/engine/seeding.h that
// native/tests/test_cuda_kernels.cpp compares it with. Determinism: every output element is
// produced by one thread (or one block with a fixed reduction tree), no float atomics, so the
// bits of a launch depend only on its inputs and shape, never on timing.
//
// Row-modulated ops take `rows_per_group`: row r uses modulation/gate row r / rows_per_group at
// `mod_stride` floats apart (one group = one nonce's L tokens), as the CPU ops do.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace ditpoc::cuda {

// ---- seeded fills (SPEC §2; kernels/seeding.cu) ----
// U(seed, n): bit-identical to ditpoc::uniform.
void fill_uniform(uint32_t seed, int64_t n, float* out, cudaStream_t s);
// N(seed, n): ditpoc::normal within an ulp or two (device logf/sinf/cosf).
void fill_normal(uint32_t seed, int64_t n, float* out, cudaStream_t s);
// N8: eight N segments with the words of SHA-256(s) (host-computed).
void fill_normal8(const uint32_t words[8], int64_t n, float* out, cudaStream_t s);
// bf16(mu + sigma·N(seed, n)): SPEC §6 weight values (and, with mu 0 and sigma 1, N rounded
// to bf16 as the text-embedding GEMM input).
void fill_normal_bf16(uint32_t seed, int64_t n, float mu, float sigma, uint16_t* out, cudaStream_t s);
// The same bf16-rounded values stored as float32 (biases, norm weights, modulation tables).
void fill_normal_bf16_as_f32(uint32_t seed, int64_t n, float mu, float sigma, float* out, cudaStream_t s);

// ---- conversions and element-wise ops (kernels/elementwise.cu) ----
// out[r, c] = bf16(in[r·in_stride + c]) for r < rows, c < cols (round to nearest even).
void f32_to_bf16(const float* in, int64_t in_stride, int64_t rows, int64_t cols, uint16_t* out,
                 cudaStream_t s);
// out = bf16(GELU_tanh(in)), in [rows, cols] with row stride in_stride.
void gelu_tanh_to_bf16(const float* in, int64_t in_stride, int64_t rows, int64_t cols, uint16_t* out,
                       cudaStream_t s);
void silu_inplace(float* x, int64_t n, cudaStream_t s);
// out[g, i] = a[i] + b[g·b_stride + i] for g < groups, i < n (modulation table + e0).
void add_broadcast(const float* a, const float* b, int64_t b_stride, int64_t groups, int64_t n,
                   float* out, cudaStream_t s);
// Patch embedding input: latent [C, F·pt, H·ph, W·pw] (fp32) → patches [F·H·W, C·pt·ph·pw]
// (bf16), tokens in (f, h, w) order, patch vector in (c, pt, ph, pw) order (c slowest).
void patchify_bf16(const float* latent, int channels, int frames, int height, int width, int pt,
                   int ph, int pw, uint16_t* out, cudaStream_t s);

// ---- LayerNorm / RMSNorm / RoPE (kernels/norms.cu); float64 row statistics like the CPU ----
// out = LN(x)·(1 + scale) + shift; out is bf16 (GEMM input) or fp32 (head).
void layernorm_modulate_bf16(const float* x, int64_t rows, int dim, double eps, const float* shift,
                             const float* scale, int64_t mod_stride, int64_t rows_per_group,
                             uint16_t* out, cudaStream_t s);
void layernorm_modulate_f32(const float* x, int64_t rows, int dim, double eps, const float* shift,
                            const float* scale, int64_t mod_stride, int64_t rows_per_group,
                            float* out, cudaStream_t s);
// out = LN(x)·weight + bias (bf16 out).
void layernorm_affine_bf16(const float* x, int64_t rows, int dim, double eps, const float* weight,
                           const float* bias, uint16_t* out, cudaStream_t s);
// Fused residual + LayerNorm: x += y·gate (gate row r / rows_per_group, null = ungated), then
// out = LN(x)·weight + bias (affine; weight/bias non-null) or LN(x)·(1 + scale) + shift.
void residual_layernorm_affine_bf16(float* x, const float* y, const float* gate, int64_t gate_stride,
                                    int64_t rows_per_group, int64_t rows, int dim, double eps,
                                    const float* weight, const float* bias, uint16_t* out,
                                    cudaStream_t s);
void residual_layernorm_modulate_bf16(float* x, const float* y, const float* gate,
                                      int64_t gate_stride, int64_t rows_per_group, int64_t rows,
                                      int dim, double eps, const float* shift, const float* scale,
                                      int64_t mod_stride, uint16_t* out, cudaStream_t s);
// Fused gated residual + Householder reflection: x += y·gate (gate may be null; y may be null:
// no residual), then, when w is non-null, x = x − 2(w·x)w with the dot product in float64.
void residual_reflect(float* x, const float* y, const float* gate, int64_t gate_stride,
                      int64_t rows_per_group, int64_t rows, int dim, const float* w, cudaStream_t s);
// QK RMSNorm over the full row (all heads) fused with 3D RoPE: in [rows, heads·head_dim] with
// row stride in_stride; norm_w may be null (no norm), rope may be null (no rotation; else
// [rope_tokens, head_dim/2] (cos, sin) pairs, row r uses token r % rope_tokens). Writes
// out_bf16 (attention input) and/or out_f32 (row stride heads·head_dim), whichever is non-null.
void rmsnorm_rope(const float* in, int64_t in_stride, int64_t rows, int heads, int head_dim,
                  double eps, const float* norm_w, const float2* rope, int64_t rope_tokens,
                  uint16_t* out_bf16, float* out_f32, cudaStream_t s);

// ---- float8 attention inputs (Precision::Fp8Attention; kernels/elementwise.cu) ----
// Per group of rows_per_group rows × cols: scale = amax/448 (1 when amax is 0) and
// out = e4m3(x / scale) stored exactly as bf16; scale_out[g] receives the scale, which the
// attention kernel applies (q·k scores and P·V outputs), so values equal the CPU's
// e4m3(x/scale)·scale. `partial` is scratch of fp8_partial_floats(groups) floats.
int64_t fp8_partial_floats(int64_t groups);
void quantize_fp8_groups(const float* x, int64_t in_stride, int64_t rows_per_group, int64_t cols,
                         int64_t groups, uint16_t* out, float* scale_out, float* partial,
                         cudaStream_t s);

// ---- attention (kernels/attention.cu) ----
// Flash attention, head_dim 128: q [groups·lq, heads·128], k, v [groups·lk, heads·128] (bf16,
// row stride heads·128) → out [groups·lq, heads·128] (bf16). softmax(q·kᵀ/√128)·v per (group,
// head) with bf16 tensor-core products, fp32 scores, an fp32 online softmax and fp32 row sums;
// the probabilities enter P·V as bf16 (Precision::Bf16Flash semantics). Optional per-group
// scales (fp8 inputs): scores are multiplied by q_scale[g]·k_scale[g], outputs by v_scale[g].
void flash_attention(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t groups,
                     int64_t lq, int64_t lk, int heads, int head_dim, const float* q_scale,
                     const float* k_scale, const float* v_scale, uint16_t* out, cudaStream_t s);
// The same in plain fp32 (no tensor cores, probabilities kept fp32): a slow reference used by
// the tests to separate kernel bugs from bf16 rounding.
void attention_reference(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t groups,
                         int64_t lq, int64_t lk, int heads, int head_dim, float* out, cudaStream_t s);

// ---- fp32 linear layers (kernels/linear_f32.cu) ----
// C[M, N] = A[M, K]·Wᵀ + bias in fp32 with bf16 weights W [N, K] (no input rounding): the time
// MLPs and the head, which the reference runs in fp32. Each C element is one thread's fixed-
// order fp32 sum over K. lda/ldc in elements; bias may be null.
void linear_f32(const float* A, int64_t lda, int64_t M, const uint16_t* W, const float* bias,
                int64_t N, int64_t K, float* C, int64_t ldc, cudaStream_t s);

}  // namespace ditpoc::cuda
