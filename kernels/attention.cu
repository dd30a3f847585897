// Flash attention (forward, non-causal, unmasked), head_dim 128, bf16 inputs on tensor cores
// (mma.sync m16n8k16, sm_80 and sm_90), fp32 scores and online softmax.
//
// Design (FlashAttention-2 style):
//  * grid (⌈lq/64⌉, heads, groups); a block of 4 warps owns 64 query rows (16 per warp) of one
//    (group, head); it streams the group's keys/values in tiles of 64 rows.
//  * shared memory: the Q tile (16 KiB) and double-buffered K and V tiles (2 × 2 × 16 KiB),
//    filled with cp.async (16-byte chunks, zero-fill past the sequence end); rows are 256 B
//    with an XOR swizzle of the 16-byte chunk index (chunk ^ row % 8), so ldmatrix reads of 8
//    rows at the same column hit 8 different bank groups.
//  * each warp keeps its Q rows as mma A fragments in registers (8 k-steps × 4 registers),
//    computes S = Q·Kᵀ for the tile (8 n-tiles of 8 keys, fp32 accumulators), masks keys past
//    lk, updates the running row max m and row sum l (fp32, log2 domain, exp2f), rescales the
//    output accumulator O (16 × 128 fp32 per warp) and adds P·V with P rounded to bf16 (the A
//    operand of the second mma; Precision::Bf16Flash semantics). Row sums use the unrounded
//    fp32 probabilities, as the CPU twin does.
//  * epilogue: O / l (and the v scale of fp8 inputs), rounded to bf16, staged through the
//    warp's own rows of the Q tile and written with 16-byte stores.
// Determinism: every reduction (quad shuffles, tile order) is fixed; no atomics.
#include <atomic>

#include "common.cuh"
#include "kernels.h"

namespace ditpoc::cuda {

namespace {

constexpr int kHd = 128;       // head_dim
constexpr int kBc = 64;        // keys per tile
constexpr int kChunks = kHd / 8;  // 16-byte chunks per row

__device__ __forceinline__ int swz(int row, int chunk) { return row * kHd + ((chunk ^ (row & 7)) << 3); }

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a·b, m16n8k16, bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// rows [row0, row0 + ROWS) of one (group, head) slice into a swizzled tile; rows at or past
// `valid_rows` are zero-filled (their source address is clamped to row 0, never read).
template <int ROWS, int THREADS>
__device__ __forceinline__ void load_tile(uint16_t* tile, const uint16_t* base, int64_t row0, int64_t valid_rows,
                                          int64_t stride) {
  for (int idx = threadIdx.x; idx < ROWS * kChunks; idx += THREADS) {
    const int r = idx / kChunks, c = idx % kChunks;
    const int64_t gr = row0 + r;
    const bool valid = gr < valid_rows;
    cp_async16(tile + swz(r, c), base + (valid ? gr : 0) * stride + c * 8, valid);
  }
}

template <int NW>
struct FlashCfg {
  static constexpr int kThreads = 32 * NW;
  static constexpr int kBr = 16 * NW;
  static constexpr size_t kSmem = sizeof(uint16_t) * (size_t(kBr) * kHd + 4 * size_t(kBc) * kHd);
};

template <int NW>
__global__ void __launch_bounds__(32 * NW) flash_kernel(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
                                                       const uint16_t* __restrict__ v, int64_t lq, int64_t lk,
                                                       int heads, const float* q_scale, const float* k_scale,
                                                       const float* v_scale, uint16_t* __restrict__ out) {
  using Cfg = FlashCfg<NW>;
  extern __shared__ __align__(128) uint16_t smem[];
  uint16_t* sQ = smem;
  uint16_t* sK = sQ + Cfg::kBr * kHd;
  uint16_t* sV = sK + 2 * kBc * kHd;

  const int h = blockIdx.y;
  const int64_t g = blockIdx.z;
  const int64_t stride = int64_t(heads) * kHd;
  const int64_t q0 = int64_t(blockIdx.x) * Cfg::kBr;
  const uint16_t* qg = q + g * lq * stride + int64_t(h) * kHd;
  const uint16_t* kg = k + g * lk * stride + int64_t(h) * kHd;
  const uint16_t* vg = v + g * lk * stride + int64_t(h) * kHd;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  load_tile<Cfg::kBr, Cfg::kThreads>(sQ, qg, q0, lq, stride);
  load_tile<kBc, Cfg::kThreads>(sK, kg, 0, lk, stride);
  load_tile<kBc, Cfg::kThreads>(sV, vg, 0, lk, stride);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  // Q as A fragments: k-step kk covers dims [16kk, 16kk + 16).
  uint32_t qf[kHd / 16][4];
#pragma unroll
  for (int kk = 0; kk < kHd / 16; ++kk) {
    const int row = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
    const int chunk = 2 * kk + (lane >> 4);
    ldmatrix_x4(qf[kk], sQ + swz(row, chunk));
  }

  // Scores in the log2 domain: s·(1/√128)·log2(e) (·q_scale·k_scale for fp8 inputs).
  float sl2 = 0.08838834764831845f * 1.4426950408889634f;
  if (q_scale) sl2 *= q_scale[g] * k_scale[g];

  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  float o[kHd / 8][4];
#pragma unroll
  for (int d = 0; d < kHd / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;

  const int nkb = static_cast<int>((lk + kBc - 1) / kBc);
  for (int kb = 0; kb < nkb; ++kb) {
    const int cur = kb & 1;
    if (kb + 1 < nkb) {
      load_tile<kBc, Cfg::kThreads>(sK + (cur ^ 1) * kBc * kHd, kg, int64_t(kb + 1) * kBc, lk, stride);
      load_tile<kBc, Cfg::kThreads>(sV + (cur ^ 1) * kBc * kHd, vg, int64_t(kb + 1) * kBc, lk, stride);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint16_t* Kt = sK + cur * kBc * kHd;
    const uint16_t* Vt = sV + cur * kBc * kHd;

    // S = Q·Kᵀ: n-tile j = keys [8j, 8j + 8) of the tile.
    float sacc[kBc / 8][4];
#pragma unroll
    for (int j = 0; j < kBc / 8; ++j) sacc[j][0] = sacc[j][1] = sacc[j][2] = sacc[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kHd / 16; ++kk) {
#pragma unroll
      for (int jp = 0; jp < kBc / 16; ++jp) {
        uint32_t b[4];
        const int key = (2 * jp + (lane >> 4)) * 8 + (lane & 7);
        const int chunk = 2 * kk + ((lane >> 3) & 1);
        ldmatrix_x4(b, Kt + swz(key, chunk));
        mma_bf16(sacc[2 * jp], qf[kk], b[0], b[1]);
        mma_bf16(sacc[2 * jp + 1], qf[kk], b[2], b[3]);
      }
    }

    // Mask, online softmax. Thread holds rows g = lane/4 (elements 0, 1) and g + 8 (2, 3).
    const int64_t key_base = int64_t(kb) * kBc;
#pragma unroll
    for (int j = 0; j < kBc / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = key_base + j * 8 + 2 * (lane & 3) + (e & 1);
        sacc[j][e] = key < lk ? sacc[j][e] * sl2 : -INFINITY;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = m_run[r];
#pragma unroll
      for (int j = 0; j < kBc / 8; ++j) mx = fmaxf(mx, fmaxf(sacc[j][2 * r], sacc[j][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float alpha = exp2f(m_run[r] - mx);  // 0 on the first tile (m_run = −inf)
      m_run[r] = mx;
      float l = l_run[r] * alpha;
#pragma unroll
      for (int d = 0; d < kHd / 8; ++d) {
        o[d][2 * r] *= alpha;
        o[d][2 * r + 1] *= alpha;
      }
#pragma unroll
      for (int j = 0; j < kBc / 8; ++j) {
        const float p0 = exp2f(sacc[j][2 * r] - mx), p1 = exp2f(sacc[j][2 * r + 1] - mx);
        sacc[j][2 * r] = p0;
        sacc[j][2 * r + 1] = p1;
        l += p0;
        l += p1;
      }
      l_run[r] = l;
    }

    // O += P·V: k-step kk2 = keys [16kk2, 16kk2 + 16); n-tile d = dims [8d, 8d + 8).
#pragma unroll
    for (int kk2 = 0; kk2 < kBc / 16; ++kk2) {
      const uint32_t pa[4] = {dev::pack_bf16x2(sacc[2 * kk2][0], sacc[2 * kk2][1]),
                              dev::pack_bf16x2(sacc[2 * kk2][2], sacc[2 * kk2][3]),
                              dev::pack_bf16x2(sacc[2 * kk2 + 1][0], sacc[2 * kk2 + 1][1]),
                              dev::pack_bf16x2(sacc[2 * kk2 + 1][2], sacc[2 * kk2 + 1][3])};
#pragma unroll
      for (int dp = 0; dp < kHd / 16; ++dp) {
        uint32_t b[4];
        const int key = kk2 * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
        const int chunk = 2 * dp + (lane >> 4);
        ldmatrix_x4_trans(b, Vt + swz(key, chunk));
        mma_bf16(o[2 * dp], pa, b[0], b[1]);
        mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
    __syncthreads();  // all warps are done with buffer `cur` before it is refilled
  }

  // Epilogue: quad-reduce the row sums, normalise, stage bf16 rows in this warp's Q rows.
  const float vs = v_scale ? v_scale[g] : 1.0f;
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = vs * (1.0f / l);
  }
  const int row_g = warp * 16 + (lane >> 2);
#pragma unroll
  for (int d = 0; d < kHd / 8; ++d) {
    const int col = 2 * (lane & 3);
    *reinterpret_cast<uint32_t*>(sQ + swz(row_g, d) + col) = dev::pack_bf16x2(o[d][0] * inv[0], o[d][1] * inv[0]);
    *reinterpret_cast<uint32_t*>(sQ + swz(row_g + 8, d) + col) =
        dev::pack_bf16x2(o[d][2] * inv[1], o[d][3] * inv[1]);
  }
  __syncwarp();
  uint16_t* og = out + g * lq * stride + int64_t(h) * kHd;
  for (int idx = lane; idx < 16 * kChunks; idx += 32) {
    const int r = warp * 16 + idx / kChunks, c = idx % kChunks;
    const int64_t gr = q0 + r;
    if (gr < lq) *reinterpret_cast<uint4*>(og + gr * stride + c * 8) = *reinterpret_cast<const uint4*>(sQ + swz(r, c));
  }
}

// Reference: one block of 128 threads per (query, head, group); fp32 scores in shared memory,
// float64 row sum, fp32 P·V in key order.
__global__ void attention_reference_kernel(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t lq,
                                           int64_t lk, int heads, float* out) {
  extern __shared__ float sc[];
  __shared__ float qs[kHd];
  __shared__ float redf[32];
  __shared__ double redd[32];
  const int64_t i = blockIdx.x;
  const int h = blockIdx.y;
  const int64_t g = blockIdx.z;
  const int64_t stride = int64_t(heads) * kHd;
  const uint16_t* qi = q + (g * lq + i) * stride + int64_t(h) * kHd;
  for (int d = threadIdx.x; d < kHd; d += blockDim.x) qs[d] = dev::bf16_to_f32(qi[d]);
  __syncthreads();
  const float scale = 0.08838834764831845f;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < lk; j += blockDim.x) {
    const uint16_t* kj = k + (g * lk + j) * stride + int64_t(h) * kHd;
    float s = 0.0f;
    for (int d = 0; d < kHd; ++d) s += qs[d] * dev::bf16_to_f32(kj[d]);
    sc[j] = s * scale;
    mx = fmaxf(mx, sc[j]);
  }
  mx = dev::block_max(mx, redf);
  double sum = 0.0;
  for (int64_t j = threadIdx.x; j < lk; j += blockDim.x) {
    sc[j] = expf(sc[j] - mx);
    sum += sc[j];
  }
  sum = dev::block_sum(sum, redd);
  for (int d = threadIdx.x; d < kHd; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t j = 0; j < lk; ++j) acc += sc[j] * dev::bf16_to_f32(v[(g * lk + j) * stride + int64_t(h) * kHd + d]);
    out[(g * lq + i) * stride + int64_t(h) * kHd + d] = acc * static_cast<float>(1.0 / sum);
  }
}

template <int NW>
void launch_flash(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t groups, int64_t lq, int64_t lk,
                  int heads, const float* q_scale, const float* k_scale, const float* v_scale, uint16_t* out,
                  cudaStream_t s) {
  using Cfg = FlashCfg<NW>;
  // The >48 KiB dynamic shared memory opt-in is per device; remember which devices have it.
  // (Setting it twice from racing threads is harmless.)
  static std::atomic<bool> configured[64];
  int dev_id = 0;
  DITPOC_CUDA_CHECK(cudaGetDevice(&dev_id));
  if (dev_id < 0 || dev_id >= 64) throw std::runtime_error("flash_attention: device index out of range");
  if (!configured[dev_id].load()) {
    DITPOC_CUDA_CHECK(cudaFuncSetAttribute(flash_kernel<NW>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(Cfg::kSmem)));
    configured[dev_id].store(true);
  }
  const dim3 grid(static_cast<unsigned>((lq + Cfg::kBr - 1) / Cfg::kBr), static_cast<unsigned>(heads),
                  static_cast<unsigned>(groups));
  flash_kernel<NW><<<grid, Cfg::kThreads, Cfg::kSmem, s>>>(q, k, v, lq, lk, heads, q_scale, k_scale, v_scale, out);
  DITPOC_CUDA_CHECK_LAUNCH();
}

void check_args(const void* q, const void* k, const void* v, const void* out, int64_t groups, int64_t lq,
                int64_t lk, int heads, int head_dim) {
  if (head_dim != kHd) throw std::invalid_argument("attention: head_dim must be 128");
  if (groups < 1 || groups > 65535 || heads < 1 || heads > 65535 || lq < 1 || lk < 1)
    throw std::invalid_argument("attention: bad shape");
  for (const void* p : {q, k, v, out})
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) throw std::invalid_argument("attention: pointers must be 16-byte aligned");
}

}  // namespace

void flash_attention(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t groups, int64_t lq, int64_t lk,
                     int heads, int head_dim, const float* q_scale, const float* k_scale, const float* v_scale,
                     uint16_t* out, cudaStream_t s) {
  check_args(q, k, v, out, groups, lq, lk, heads, head_dim);
  if ((q_scale == nullptr) != (k_scale == nullptr)) throw std::invalid_argument("attention: q_scale and k_scale go together");
  launch_flash<4>(q, k, v, groups, lq, lk, heads, q_scale, k_scale, v_scale, out, s);
}

void attention_reference(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t groups, int64_t lq,
                         int64_t lk, int heads, int head_dim, float* out, cudaStream_t s) {
  check_args(q, k, v, out, groups, lq, lk, heads, head_dim);
  const size_t smem = sizeof(float) * static_cast<size_t>(lk);
  // 48 KiB in all, the kernel's 896 B of static shared memory included.
  if (smem > 48 * 1024 - 1024) throw std::invalid_argument("attention_reference: lk at most 12032");
  attention_reference_kernel<<<dim3(static_cast<unsigned>(lq), heads, static_cast<unsigned>(groups)), 128, smem, s>>>(
      q, k, v, lq, lk, heads, out);
  DITPOC_CUDA_CHECK_LAUNCH();
}

}  // namespace ditpoc::cuda
