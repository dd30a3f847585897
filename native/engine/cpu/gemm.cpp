// The CPU backend's GEMM: C[M, N] = A'[M, K] · Wᵀ + bias, bf16 weights, fp32 FMA accumulation.
//
// Layout
//  * W is repacked once into panels of NR = 32 output columns: panel p holds columns
//    [32p, 32p + 32) for every k, k-major: panel[k * 32 + 2j] = W[32p + j][k] and
//    panel[k * 32 + 2j + 1] = W[32p + 16 + j][k] (j < 16). So one 64-byte load gives, per
//    32-bit lane j, column j in the low half and column j + 16 in the high half, and the
//    micro-kernel widens bf16 -> fp32 exactly with one shift (columns 0..15) and one mask
//    (columns 16..31). N is padded with zero columns to a multiple of 32.
//  * A is read in place (row pointers, broadcast per element). When round_a_to_bf16, the rows
//    are first rounded into a row-major scratch copy (vectorised, once per call, shared by the
//    threads), so the micro-kernel is the same in both cases.
//
// Blocking: the micro-kernel computes an R x 32 tile (R <= MR = 8 rows, 2·R zmm accumulators)
// over a KC = 256 slice of K. The KC x 32 bf16 W micro-panel (16 KB) stays in L1 while the
// thread walks the MC = 256 rows of its current M block; the MC x KC slice of A (256 KB)
// stays in L2 while the thread walks its W panels. Between K slices the partial sums go
// through C (an fp32 store/load is exact).
//
// Determinism (gemm.h): every C element is accumulated as acc = 0; for k = 0..K-1 in order:
// acc = fma(a[k], w[k], acc) in fp32; then C = acc + bias. Nothing in that sequence depends
// on M, on the row's position, on the tile height R, on the K slicing, on the N padding or on
// the thread split, and the portable fallback performs the very same operations (std::fma),
// so both paths give the same bits.
#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "../bf16.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define DITPOC_GEMM_AVX512 1
#endif

namespace ditpoc::cpu {

namespace {

constexpr int NR = 32;        // panel width (columns), 2 zmm of fp32
constexpr int MR = 8;         // rows per micro-tile (2·MR accumulators)
constexpr int64_t KC = 256;   // K slice: KC x NR bf16 W micro-panel = 16 KB (L1)
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

// ---- scratch memory (64-byte aligned, grown on demand, one per calling thread) ----
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

// ---- rounding A to bf16 (row-major copy) ----
// Same result as ditpoc::round_bf16 element by element (round to nearest even, NaN -> quiet NaN).
void round_rows(const float* A, int64_t lda, float* dst, int64_t ldd, int64_t r0, int64_t r1,
                int64_t K) {
  for (int64_t r = r0; r < r1; ++r) {
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

// Spin barrier for the threads of one run_on_all job (every pool thread runs the job once,
// concurrently, so all of them arrive).
class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  void arrive_and_wait() {
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) return;
    int spins = 0;
    while (count_.load(std::memory_order_acquire) < n_) {
      if (++spins > 64) std::this_thread::yield();
#ifdef DITPOC_GEMM_AVX512
      else _mm_pause();
#endif
    }
  }

 private:
  const int n_;
  std::atomic<int> count_{0};
};

}  // namespace

// ---------------------------------------------------------------------------------------------

PackedWeight PackedWeight::pack(const uint16_t* w_bf16, int64_t n, int64_t k) {
  if (n < 0 || k < 0) throw std::invalid_argument("PackedWeight::pack: negative shape");
  PackedWeight pw;
  pw.n_ = n;
  pw.k_ = k;
  const int64_t panels = (n + NR - 1) / NR;
  pw.panels_.assign(static_cast<size_t>(panels * k * NR), 0);
  for (int64_t p = 0; p < panels; ++p) {
    uint16_t* dst = pw.panels_.data() + p * k * NR;
    for (int64_t j = 0; j < NR; ++j) {
      const int64_t col = p * NR + j;
      if (col >= n) break;
      const int64_t slot = j < NR / 2 ? 2 * j : 2 * (j - NR / 2) + 1;
      const uint16_t* src = w_bf16 + col * k;
      for (int64_t kk = 0; kk < k; ++kk) dst[kk * NR + slot] = src[kk];
    }
  }
  return pw;
}

std::vector<uint16_t> PackedWeight::unpack() const {
  std::vector<uint16_t> out(static_cast<size_t>(n_ * k_));
  for (int64_t col = 0; col < n_; ++col) {
    const int64_t p = col / NR, j = col % NR;
    const int64_t slot = j < NR / 2 ? 2 * j : 2 * (j - NR / 2) + 1;
    const uint16_t* src = panels_.data() + p * k_ * NR;
    for (int64_t kk = 0; kk < k_; ++kk) out[col * k_ + kk] = src[kk * NR + slot];
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

  // A' : either A itself or its bf16-rounded copy (row stride lda2, skewed off multiples of
  // 4 KB so the rows of a tile do not collide in the same L1 sets).
  static thread_local Scratch scratch;
  const float* Ap = A;
  int64_t lda2 = lda;
  float* Ar = nullptr;
  if (round_a_to_bf16) {
    lda2 = (K + 15) / 16 * 16;
    if ((lda2 * 4) % 4096 == 0) lda2 += 16;
    Ar = scratch.get(static_cast<size_t>(M * lda2));
    Ap = Ar;
  }

  // Work split: threads form a tn x tm grid; thread (in, im) gets a contiguous range of W
  // panels and a contiguous range of MR-row tiles. Splitting N first keeps each thread's share
  // of W private (small M is bound by streaming W).
  const int64_t mtiles = (M + MR - 1) / MR;
  const bool serial = pool.size() == 1 || M * panels * NR * K < kSerialFlops;
  int T = serial ? 1 : pool.size();

  auto body = [&](int t, int count, SpinBarrier* barrier) {
    if (Ar) {
      round_rows(A, lda, Ar, lda2, M * t / count, M * (t + 1) / count, K);
      if (barrier) barrier->arrive_and_wait();
    }
    int64_t tn = std::min<int64_t>(count, panels);
    int64_t tm = std::min<int64_t>(count / tn, mtiles);
    if (t >= tn * tm) return;
    const int64_t in = t % tn, im = t / tn;
    const int64_t p0 = panels * in / tn, p1 = panels * (in + 1) / tn;
    const int64_t m0 = mtiles * im / tm * MR, m1 = std::min<int64_t>(mtiles * (im + 1) / tm * MR, M);
    static thread_local Scratch wscratch;
    float* wf = wscratch.get(static_cast<size_t>(KC * NR));
    for (int64_t mb = m0; mb < m1; mb += MC) {
      const int64_t me = std::min(mb + MC, m1);
      const bool widen = me - mb > kWidenRows;
      // N block: as many panels as keep the C block (me - mb) x (32 nbp) in kCBlockBytes.
      const int64_t nbp = std::max<int64_t>(1, kCBlockBytes / (4 * NR * (me - mb)));
      for (int64_t nb = p0; nb < p1; nb += nbp) {
        const int64_t ne = std::min(nb + nbp, p1);
        for (int64_t kb = 0; kb < K; kb += KC) {
          const int64_t kl = std::min(KC, K - kb);
          const bool first = kb == 0, last = kb + kl == K;
          for (int64_t p = nb; p < ne; ++p) {
            const int ncols = static_cast<int>(std::min<int64_t>(NR, N - p * NR));
            const uint16_t* wk = wp + (p * K + kb) * NR;
            const float* bp = bias ? bias + p * NR : nullptr;
            // The W slice this thread uses next, prefetched into L2 during the first tile
            // (prefetching a little past a short last slice is harmless).
            const uint16_t* next = nullptr;
            if (p + 1 < ne) next = wp + ((p + 1) * K + kb) * NR;
            else if (kb + KC < K) next = wp + (nb * K + kb + KC) * NR;
            else if (ne < p1) next = wp + ne * K * NR;
            const char* pf = reinterpret_cast<const char*>(next);
            if (widen) {  // several tiles share this slice: widen it to fp32 once
              widen_panel(wk, kl, wf);
              for (int64_t i = mb; i < me; i += MR) {
                const int rows = static_cast<int>(std::min<int64_t>(MR, me - i));
                kKernels<LoadF32>[rows - 1](Ap + i * lda2 + kb, lda2, LoadF32{wf}, kl,
                                            C + i * ldc + p * NR, ldc, ncols, first, last, bp,
                                            i == mb ? pf : nullptr);
              }
            } else {
              for (int64_t i = mb; i < me; i += MR) {
                const int rows = static_cast<int>(std::min<int64_t>(MR, me - i));
                kKernels<WidenBf16>[rows - 1](Ap + i * lda2 + kb, lda2, WidenBf16{wk}, kl,
                                              C + i * ldc + p * NR, ldc, ncols, first, last,
                                              bp, i == mb ? pf : nullptr);
              }
            }
          }
        }
      }
    }
  };

  if (T == 1) {
    body(0, 1, nullptr);
  } else {
    SpinBarrier barrier(T);
    pool.run_on_all([&](int t, int count) { body(t, count, &barrier); });
  }
}

}  // namespace ditpoc::cpu
