// The CPU backend's GEMM: C[M, N] = A'[M, K] · Wᵀ + bias, bf16 weights, fp32 FMA accumulation.
//
// Layout
//  * W is repacked once into panels of NR = 32 output columns: panel p holds columns
//    [32p, 32p + 32) for every k, k-major: panel[k * 32 + 2j] = W[32p + j][k] and
//    panel[k * 32 + 2j + 1] = W[32p + 16 + j][k] (j < 16). So one 64-byte load gives, per
//    32-bit lane j, column j in the low half and column j + 16 in the high half, and the
//    micro-kernel widens bf16 -> fp32 exactly with one shift (columns 0..15) and one mask
//    (columns 16..31). N is padded with zero columns to a multiple of 32.
//  * A is read row-major (row pointers, one broadcast per element), in place when it is used
//    as is. When round_a_to_bf16, each (M block x K slice) of A is rounded into a per-thread
//    256 KB buffer right before use (vectorised; row stride KC + 16 to spread the L1 sets), so
//    it is read from memory once and then reused from L2 by all the panels of the unit; the
//    micro-kernel is the same in both cases. Nothing is packed or allocated per call beyond
//    these per-thread buffers (kept for later calls).
//
// Blocking (AVX-512): the micro-kernel computes an R x 32 tile (R <= MR = 8 rows, 2·R zmm
// accumulators, the A element broadcast per row) over a KC = 256 slice of K, then stores it to C
// (partial sums go through C between K slices; an fp32 store/load is exact). Work units are
// (M block of <= MC = 256 rows) x (group of G panels); within a unit, for each K slice and panel
// the KC x 32 W slice is reused from L1 by all the tiles of the M block while the MC x KC slice
// of A (256 KB) stays in L2; G keeps the unit's C block within 512 KB (L2). When the M block has
// more than 3 tiles, the W slice is first widened once to fp32 into a 32 KB per-thread buffer
// (the kernel then issues nothing but loads and FMAs: about 95 % of FMA peak in cache), else it
// is widened in the kernel (2 extra ALU ops per 16 FMAs, cheaper when only 1-3 tiles use it).
// The first tile on a W slice prefetches the next slice into L2. Units are handed out
// dynamically (an atomic counter), so a thread slowed by other load does not hold up the call.
// Tails: M tails run the same kernel instantiated for fewer rows; N is zero-padded to 32 columns
// in the packed W and the kernel masks the loads/stores of C and bias.
//
// Determinism (gemm.h): every C element is accumulated as acc = 0; for k = 0..K-1 in order:
// acc = fma(a'[k], w[k], acc) in fp32; then C = acc + bias (C = acc without bias). Nothing in
// that sequence depends on M, on the row's position, on the tile height R, on the K slicing, on
// whether W was widened up front, on the N padding or on the thread split; the AVX2 path and
// the portable fallback (std::fma) perform the very same operations, so every build gives the
// same bits on every machine (test_gemm checks them against that scalar sequence).
#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "../bf16.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define DITPOC_GEMM_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DITPOC_GEMM_AVX2 1
#endif

namespace ditpoc::cpu {

namespace {

constexpr int NR = 32;        // panel width (columns), 2 zmm of fp32
constexpr int MR = 8;         // rows per micro-tile (2·MR accumulators)
constexpr int64_t KC = 256;   // K slice: KC x NR W slice = 16 KB bf16 / 32 KB fp32 (L1)
constexpr int64_t MC = 256;   // M block: MC x KC fp32 A slice = 256 KB (L2)
// M blocks of more rows than this widen each W slice to fp32 once (in a per-thread L1 buffer)
// rather than in the micro-kernel at every use.
constexpr int64_t kWidenRows = 3 * MR;
// C block (M block x N block, fp32) kept within this many bytes so that it stays in L2 while the
// K slices sweep over it.
constexpr int64_t kCBlockBytes = 512 * 1024;
// Below this many multiply-adds (M · Npadded · K) the call runs on the calling thread alone:
// waking the pool costs more than it saves.
constexpr int64_t kSerialFlops = int64_t(1) << 21;

// ---- scratch memory (64-byte aligned, grown on demand; thread_local, one per thread) ----
struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
struct Scratch {
  std::unique_ptr<float[], AlignedFree> buf;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) throw std::bad_alloc();
      buf.reset(p);
      cap = bytes / sizeof(float);
    }
    return buf.get();
  }
};

// ---- rounding A to bf16: rows x K block of A (stride lda) -> dst (stride ldd) ----
// Same result as ditpoc::round_bf16 element by element (round to nearest even, NaN -> quiet NaN).
void round_block(const float* A, int64_t lda, int64_t rows, int64_t K, float* dst, int64_t ldd) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = A + r * lda;
    float* out = dst + r * ldd;
    int64_t k = 0;
#ifdef DITPOC_GEMM_AVX512
    const __m512i bias = _mm512_set1_epi32(0x7fff);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    const __m512i absm = _mm512_set1_epi32(0x7fffffff);
    const __m512i inf = _mm512_set1_epi32(0x7f800000);
    const __m512i qnan = _mm512_set1_epi32(0x00400000);
    for (; k + 16 <= K; k += 16) {
      __m512i u = _mm512_castps_si512(_mm512_loadu_ps(src + k));
      __m512i lsb = _mm512_and_si512(_mm512_maskz_srli_epi32(__mmask16(0xffff), u, 16), one);
      __m512i rounded = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(bias, lsb)), hi);
      __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absm), inf);
      __m512i quiet = _mm512_and_si512(_mm512_or_si512(u, qnan), hi);
      _mm512_storeu_ps(out + k, _mm512_castsi512_ps(_mm512_mask_mov_epi32(rounded, nan, quiet)));
    }
#endif
    for (; k < K; ++k) out[k] = round_bf16(src[k]);
  }
}

// ---- micro-kernel ----
// Computes rows [0, R) x the columns [0, ncols) of one panel over the K slice [k0, k0 + kl):
// a points at A[row 0][k0] (row stride lda), w at the panel's entry for k0, c at C[row 0][col 0].
// first: start from 0, else continue from the partial sums in C. last: add bias, final store.
#ifdef DITPOC_GEMM_AVX512

// Column masks of a panel with ncols valid columns (<= 32), for its two 16-column halves.
inline __mmask16 half_mask(int ncols, int half) {
  const int n = ncols - 16 * half;
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

// The two 16-column halves of the panel at one k, widened to fp32 (exact).
struct WidenBf16 {
  const uint16_t* w;
  __m512i hmask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  inline void load(int64_t k, __m512& w0, __m512& w1) const {
    const __m512i wv = _mm512_load_si512(reinterpret_cast<const void*>(w + k * NR));
    w0 = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(__mmask16(0xffff), wv, 16));
    w1 = _mm512_castsi512_ps(_mm512_and_si512(wv, hmask));
  }
};
// The same, from a panel slice already widened to fp32 (wf[k * 32 + j], column order).
struct LoadF32 {
  const float* w;
  inline void load(int64_t k, __m512& w0, __m512& w1) const {
    w0 = _mm512_load_ps(w + k * NR);
    w1 = _mm512_load_ps(w + k * NR + 16);
  }
};

// pf: when not null, one cache line pf[64 k] is prefetched into L2 per k-step (the W slice the
// thread needs next, so that its first use does not wait on memory).
template <int R, class WSrc>
inline void micro_kernel(const float* __restrict a, int64_t lda, WSrc wsrc, int64_t kl,
                         float* __restrict c, int64_t ldc, int ncols, bool first, bool last,
                         const float* bias, const char* pf) {
  const __mmask16 m0 = half_mask(ncols, 0), m1 = half_mask(ncols, 1);
  __m512 acc0[R], acc1[R];
  const float* ap[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) ap[r] = a + r * lda;
  if (first) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      acc0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      acc1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    }
  }
  auto step = [&](int64_t k) __attribute__((always_inline)) {
    __m512 w0, w1;
    wsrc.load(k, w0, w1);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(ap[r][k]);
      acc0[r] = _mm512_fmadd_ps(av, w0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(av, w1, acc1[r]);
    }
  };
  if (pf) {
    for (int64_t k = 0; k < kl; ++k) {
      _mm_prefetch(pf + 64 * k, _MM_HINT_T1);
      step(k);
    }
  } else {
    for (int64_t k = 0; k < kl; ++k) step(k);
  }
  if (last && bias) {
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, bias);
    const __m512 b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      acc0[r] = _mm512_add_ps(acc0[r], b0);
      acc1[r] = _mm512_add_ps(acc1[r], b1);
    }
  }
  if (ncols == NR) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(c + r * ldc, acc0[r]);
      _mm512_storeu_ps(c + r * ldc + 16, acc1[r]);
    }
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
      _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
    }
  }
}

// Widens kl k-steps of a panel to fp32 in column order: wf[k * 32 + j] = W[col j][k].
inline void widen_panel(const uint16_t* w, int64_t kl, float* wf) {
  const WidenBf16 src{w};
  for (int64_t k = 0; k < kl; ++k) {
    __m512 w0, w1;
    src.load(k, w0, w1);
    _mm512_store_ps(wf + k * NR, w0);
    _mm512_store_ps(wf + k * NR + 16, w1);
  }
}

#elif defined(DITPOC_GEMM_AVX2)

// AVX2 + FMA: a tile is computed as groups of up to 4 rows x 16 columns (8 ymm accumulators),
// one 16-column half of the panel at a time. Each element still gets the canonical sequence.

// Half h (columns 16h .. 16h + 15) of the panel at one k, widened to fp32, as 2 ymm.
struct WidenBf16 {
  const uint16_t* w;
  inline void load(int64_t k, int h, __m256& y0, __m256& y1) const {
    const __m256i v0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + k * NR));
    const __m256i v1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + k * NR + 16));
    if (h == 0) {
      y0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16));
      y1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16));
    } else {
      const __m256i hm = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
      y0 = _mm256_castsi256_ps(_mm256_and_si256(v0, hm));
      y1 = _mm256_castsi256_ps(_mm256_and_si256(v1, hm));
    }
  }
};
struct LoadF32 {
  const float* w;
  inline void load(int64_t k, int h, __m256& y0, __m256& y1) const {
    y0 = _mm256_load_ps(w + k * NR + 16 * h);
    y1 = _mm256_load_ps(w + k * NR + 16 * h + 8);
  }
};

inline __m256i lane_mask(int valid) {  // lanes [0, valid) set
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), idx);
}

template <int G, class WSrc>
inline void group_kernel(const float* __restrict a, int64_t lda, WSrc wsrc, int h, int64_t kl,
                         float* __restrict c, int64_t ldc, int ncols, bool first, bool last,
                         const float* bias, const char* pf) {
  const int n0 = ncols - 16 * h;  // valid columns in this half (> 0)
  const bool full = n0 >= 16;
  const __m256i mk0 = lane_mask(n0), mk1 = lane_mask(n0 - 8);
  __m256 acc0[G], acc1[G];
  for (int r = 0; r < G; ++r) {
    if (first) {
      acc0[r] = acc1[r] = _mm256_setzero_ps();
    } else if (full) {
      acc0[r] = _mm256_loadu_ps(c + r * ldc + 16 * h);
      acc1[r] = _mm256_loadu_ps(c + r * ldc + 16 * h + 8);
    } else {
      acc0[r] = _mm256_maskload_ps(c + r * ldc + 16 * h, mk0);
      acc1[r] = _mm256_maskload_ps(c + r * ldc + 16 * h + 8, mk1);
    }
  }
  for (int64_t k = 0; k < kl; ++k) {
    if (pf) _mm_prefetch(pf + 64 * k, _MM_HINT_T1);
    __m256 w0, w1;
    wsrc.load(k, h, w0, w1);
    for (int r = 0; r < G; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * lda + k);
      acc0[r] = _mm256_fmadd_ps(av, w0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(av, w1, acc1[r]);
    }
  }
  if (last && bias) {
    const __m256 b0 = _mm256_maskload_ps(bias + 16 * h, mk0);
    const __m256 b1 = _mm256_maskload_ps(bias + 16 * h + 8, mk1);
    for (int r = 0; r < G; ++r) {
      acc0[r] = _mm256_add_ps(acc0[r], b0);
      acc1[r] = _mm256_add_ps(acc1[r], b1);
    }
  }
  for (int r = 0; r < G; ++r) {
    if (full) {
      _mm256_storeu_ps(c + r * ldc + 16 * h, acc0[r]);
      _mm256_storeu_ps(c + r * ldc + 16 * h + 8, acc1[r]);
    } else {
      _mm256_maskstore_ps(c + r * ldc + 16 * h, mk0, acc0[r]);
      _mm256_maskstore_ps(c + r * ldc + 16 * h + 8, mk1, acc1[r]);
    }
  }
}

template <int R, class WSrc>
inline void micro_kernel(const float* __restrict a, int64_t lda, WSrc wsrc, int64_t kl,
                         float* __restrict c, int64_t ldc, int ncols, bool first, bool last,
                         const float* bias, const char* pf) {
  for (int h = 0; h < 2 && 16 * h < ncols; ++h) {
    int r = 0;
    for (; r + 4 <= R; r += 4)
      group_kernel<4>(a + r * lda, lda, wsrc, h, kl, c + r * ldc, ldc, ncols, first, last, bias,
                      h == 0 && r == 0 ? pf : nullptr);
    if (R - r == 3)
      group_kernel<3>(a + r * lda, lda, wsrc, h, kl, c + r * ldc, ldc, ncols, first, last, bias,
                      nullptr);
    else if (R - r == 2)
      group_kernel<2>(a + r * lda, lda, wsrc, h, kl, c + r * ldc, ldc, ncols, first, last, bias,
                      nullptr);
    else if (R - r == 1)
      group_kernel<1>(a + r * lda, lda, wsrc, h, kl, c + r * ldc, ldc, ncols, first, last, bias,
                      nullptr);
  }
}

inline void widen_panel(const uint16_t* w, int64_t kl, float* wf) {
  const WidenBf16 src{w};
  for (int64_t k = 0; k < kl; ++k)
    for (int h = 0; h < 2; ++h) {
      __m256 y0, y1;
      src.load(k, h, y0, y1);
      _mm256_store_ps(wf + k * NR + 16 * h, y0);
      _mm256_store_ps(wf + k * NR + 16 * h + 8, y1);
    }
}

#else  // portable fallback: the same operations, in the same order, element by element

struct WidenBf16 {
  const uint16_t* w;
  inline void load(int64_t k, float* wf) const {
    const uint16_t* wk = w + k * NR;
    for (int j = 0; j < NR / 2; ++j) {
      wf[j] = bf16_to_f32(wk[2 * j]);
      wf[j + NR / 2] = bf16_to_f32(wk[2 * j + 1]);
    }
  }
};
struct LoadF32 {
  const float* w;
  inline void load(int64_t k, float* wf) const { std::memcpy(wf, w + k * NR, NR * sizeof(float)); }
};

template <int R, class WSrc>
inline void micro_kernel(const float* __restrict a, int64_t lda, WSrc wsrc, int64_t kl,
                         float* __restrict c, int64_t ldc, int ncols, bool first, bool last,
                         const float* bias, const char* /*pf*/) {
  float acc[R][NR];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NR; ++j) acc[r][j] = (first || j >= ncols) ? 0.0f : c[r * ldc + j];
  float wf[NR];
  for (int64_t k = 0; k < kl; ++k) {
    wsrc.load(k, wf);
    for (int r = 0; r < R; ++r) {
      const float av = a[r * lda + k];
      for (int j = 0; j < NR; ++j) acc[r][j] = std::fma(av, wf[j], acc[r][j]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < ncols; ++j) {
      float v = acc[r][j];
      if (last && bias) v = v + bias[j];
      c[r * ldc + j] = v;
    }
}

inline void widen_panel(const uint16_t* w, int64_t kl, float* wf) {
  const WidenBf16 src{w};
  for (int64_t k = 0; k < kl; ++k) src.load(k, wf + k * NR);
}

#endif

template <class WSrc>
using KernelFn = void (*)(const float*, int64_t, WSrc, int64_t, float*, int64_t, int, bool, bool,
                          const float*, const char*);

template <class WSrc>
constexpr KernelFn<WSrc> kKernels[MR] = {
    &micro_kernel<1, WSrc>, &micro_kernel<2, WSrc>, &micro_kernel<3, WSrc>,
    &micro_kernel<4, WSrc>, &micro_kernel<5, WSrc>, &micro_kernel<6, WSrc>,
    &micro_kernel<7, WSrc>, &micro_kernel<8, WSrc>};
static_assert(MR == 8, "kKernels lists one instantiation per tile height");

}  // namespace

// ---------------------------------------------------------------------------------------------

PackedWeight PackedWeight::pack(const uint16_t* w_bf16, int64_t n, int64_t k) {
  if (n < 0 || k < 0) throw std::invalid_argument("PackedWeight::pack: negative shape");
  PackedWeight pw;
  pw.n_ = n;
  pw.k_ = k;
  const int64_t panels = (n + NR - 1) / NR;
  pw.panels_.resize(static_cast<size_t>(panels * k * NR));
  constexpr int64_t kb = 64;  // k block: 32 source rows x 64 k in, 64 x 64 bytes out (L1)
  for (int64_t p = 0; p < panels; ++p) {
    uint16_t* dst = pw.panels_.data() + p * k * NR;
    const int64_t cols = std::min<int64_t>(NR, n - p * NR);
    if (cols < NR) std::fill(dst, dst + k * NR, uint16_t(0));  // zero padding columns
    for (int64_t k0 = 0; k0 < k; k0 += kb) {
      const int64_t k1 = std::min(k, k0 + kb);
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t slot = j < NR / 2 ? 2 * j : 2 * (j - NR / 2) + 1;
        const uint16_t* src = w_bf16 + (p * NR + j) * k;
        for (int64_t kk = k0; kk < k1; ++kk) dst[kk * NR + slot] = src[kk];
      }
    }
  }
  return pw;
}

std::vector<uint16_t> PackedWeight::unpack() const {
  std::vector<uint16_t> out(static_cast<size_t>(n_ * k_));
  constexpr int64_t kb = 64;
  for (int64_t p = 0; p * NR < n_; ++p) {
    const uint16_t* src = panels_.data() + p * k_ * NR;
    const int64_t cols = std::min<int64_t>(NR, n_ - p * NR);
    for (int64_t k0 = 0; k0 < k_; k0 += kb) {
      const int64_t k1 = std::min(k_, k0 + kb);
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t slot = j < NR / 2 ? 2 * j : 2 * (j - NR / 2) + 1;
        uint16_t* dst = out.data() + (p * NR + j) * k_;
        for (int64_t kk = k0; kk < k1; ++kk) dst[kk] = src[kk * NR + slot];
      }
    }
  }
  return out;
}

void gemm(const float* A, int64_t lda, int64_t M, const PackedWeight& W, const float* bias,
          float* C, int64_t ldc, bool round_a_to_bf16, ThreadPool& pool) {
  const int64_t N = W.n_, K = W.k_;
  if (M < 0) throw std::invalid_argument("gemm: negative M");
  if (M == 0 || N == 0) return;
  if (lda < K || ldc < N) throw std::invalid_argument("gemm: lda < K or ldc < N");

  if (K == 0) {  // empty sum: C = bias (or 0)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = bias ? 0.0f + bias[j] : 0.0f;
    return;
  }

  const int64_t panels = (N + NR - 1) / NR;
  const uint16_t* wp = W.panels_.data();

  // Work: units of (M block of up to MC rows) x (group of G panels), handed out dynamically
  // (an atomic counter) so that a thread slowed by other load on its core does not hold up
  // the call. Which thread computes a unit does not change any bit of it. G keeps the C block
  // of a unit within kCBlockBytes (L2); when M alone does not give about 4 units per thread,
  // G is lowered to split N as well.
  const bool serial = pool.size() == 1 || M * panels * NR * K < kSerialFlops;
  const int T = serial ? 1 : pool.size();
  const int64_t mblocks = (M + MC - 1) / MC;
  const int64_t block_rows = std::min(M, MC);
  const int64_t g_cache = std::max<int64_t>(1, kCBlockBytes / (4 * NR * block_rows));
  const int64_t g_balance = mblocks >= 4 * T ? panels : (panels * mblocks + 4 * T - 1) / (4 * T);
  const int64_t G = std::max<int64_t>(1, std::min(g_cache, g_balance));
  const int64_t groups = (panels + G - 1) / G;
  const int64_t units = mblocks * groups;
  std::atomic<int64_t> unit_next{0};

  auto body = [&](int /*t*/, int /*count*/) {
    // Per-thread buffers: the W slice widened to fp32, and the A slice rounded to bf16 (row
    // stride KC + 16 so the rows of a tile spread over the L1 sets).
    static thread_local Scratch wscratch, ascratch;
    constexpr int64_t ldab = KC + 16;
    float* abuf = round_a_to_bf16 ? ascratch.get(static_cast<size_t>(MC * ldab)) : nullptr;
    float* wf = wscratch.get(static_cast<size_t>(KC * NR));
    for (;;) {
      const int64_t u = unit_next.fetch_add(1, std::memory_order_relaxed);
      if (u >= units) break;
      const int64_t mb = (u / groups) * MC, me = std::min(mb + MC, M);
      const int64_t nb = (u % groups) * G, ne = std::min(nb + G, panels);
      const bool widen = me - mb > kWidenRows;
      for (int64_t kb = 0; kb < K; kb += KC) {
        const int64_t kl = std::min(KC, K - kb);
        const bool first = kb == 0, last = kb + kl == K;
        // A' slice [mb, me) x [kb, kb + kl): rounded into abuf (it stays in L2 for the group's
        // panels), or read in place.
        const float* As = A + mb * lda + kb;
        int64_t lds = lda;
        if (abuf) {
          round_block(As, lda, me - mb, kl, abuf, ldab);
          As = abuf;
          lds = ldab;
        }
        for (int64_t p = nb; p < ne; ++p) {
          const int ncols = static_cast<int>(std::min<int64_t>(NR, N - p * NR));
          const uint16_t* wk = wp + (p * K + kb) * NR;
          const float* bp = bias ? bias + p * NR : nullptr;
          // The W slice used next, prefetched into L2 during the first tile (prefetching a
          // little past a short last slice is harmless).
          const uint16_t* next = nullptr;
          if (p + 1 < ne) next = wp + ((p + 1) * K + kb) * NR;
          else if (kb + KC < K) next = wp + (nb * K + kb + KC) * NR;
          const char* pf = reinterpret_cast<const char*>(next);
          if (widen) {  // several tiles share this slice: widen it to fp32 once
            widen_panel(wk, kl, wf);
            for (int64_t i = mb; i < me; i += MR) {
              const int rows = static_cast<int>(std::min<int64_t>(MR, me - i));
              kKernels<LoadF32>[rows - 1](As + (i - mb) * lds, lds, LoadF32{wf}, kl,
                                          C + i * ldc + p * NR, ldc, ncols, first, last, bp,
                                          i == mb ? pf : nullptr);
            }
          } else {
            for (int64_t i = mb; i < me; i += MR) {
              const int rows = static_cast<int>(std::min<int64_t>(MR, me - i));
              kKernels<WidenBf16>[rows - 1](As + (i - mb) * lds, lds, WidenBf16{wk}, kl,
                                            C + i * ldc + p * NR, ldc, ncols, first, last, bp,
                                            i == mb ? pf : nullptr);
            }
          }
        }
      }
    }
  };

  if (T == 1) {
    body(0, 1);
  } else {
    pool.run_on_all(body);
  }
}

}  // namespace ditpoc::cpu
