// The CPU backend's GEMM driver: C[M, N] = A'[M, K] · Wᵀ + bias, bf16 weights. Packing, work
// split and threads live here; the unit kernels, one per instruction-set path, in gemm_unit.inc
// (see there for the blocking and the exact arithmetic of each path).
//
// Layout: W is repacked once into panels of NR = 32 output columns over Kp = K rounded up to
// even, in k pairs: panel p, pair i holds 64 bf16, W[32p + j][2i + e] at 2j + e for j < 16 and
// at 32 + 2(j − 16) + e for 16 <= j < 32 (e = 0, 1). One 64-byte load gives 16 columns at two
// consecutive k: the FMA paths widen it exactly with one shift (even k) or one mask (odd k), and
// the bf16 dot path feeds it to vdpbf16ps as is. N and K are zero-padded.
//
// Work: units of (M block of up to MC rows) x (group of G panels), handed out dynamically (an
// atomic counter) so that a thread slowed by other load does not hold up the call. Which thread
// computes a unit does not change any bit of it. On the bf16 dot path A is first rounded and
// packed once per call (chunks of whole M blocks, at most kPackBytes each), shared by all units.
#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "cpu_isa.h"
#include "gemm_kernels.h"

namespace ditpoc::cpu {

using namespace gemm_detail;

namespace {

// C block (M block x N block, fp32) kept within this many bytes so that it stays in L2 while the
// K slices sweep over it.
constexpr int64_t kCBlockBytes = 512 * 1024;
// Below this many multiply-adds (M · Npadded · K) the call runs on the calling thread alone:
// waking the pool costs more than it saves.
constexpr int64_t kSerialFlops = int64_t(1) << 21;
// Most bytes of A packed to bf16 at once (bf16 dot path): rows beyond it are done in chunks.
constexpr int64_t kPackBytes = int64_t(8) << 20;

// Per-thread scratch (64-byte aligned, grown on demand).
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

// Position of W[col][k] in the packed panels.
inline int64_t packed_index(int64_t col, int64_t k, int64_t kp) {
  const int64_t p = col / NR, j = col % NR;
  const int64_t slot = (j < 16 ? 2 * j : 32 + 2 * (j - 16)) + (k & 1);
  return (p * kp + (k & ~int64_t(1))) * NR + slot;
}

UnitFn unit_for(Isa isa, bool round_a) {
  switch (isa) {
#if defined(__x86_64__)
    case Isa::Avx512Bf16: return round_a ? &unit_avx512bf16 : &unit_avx512;
    case Isa::Avx512: return &unit_avx512;
    case Isa::Avx2: return &unit_avx2;
#endif
    default: return &unit_portable;
  }
}

}  // namespace

PackedWeight PackedWeight::pack(const uint16_t* w_bf16, int64_t n, int64_t k) {
  if (n < 0 || k < 0) throw std::invalid_argument("PackedWeight::pack: negative shape");
  PackedWeight pw;
  pw.n_ = n;
  pw.k_ = k;
  const int64_t kp = k + (k & 1), panels = (n + NR - 1) / NR;
  pw.panels_.resize(static_cast<size_t>(panels * kp * NR));
  if (n % NR || k & 1) std::fill(pw.panels_.begin(), pw.panels_.end(), uint16_t(0));
  constexpr int64_t kb = 64;  // k block: 32 source rows x 64 k in, 64 x 64 bytes out (L1)
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t cols = std::min<int64_t>(NR, n - p * NR);
    for (int64_t k0 = 0; k0 < k; k0 += kb) {
      const int64_t k1 = std::min(k, k0 + kb);
      for (int64_t j = 0; j < cols; ++j) {
        const uint16_t* src = w_bf16 + (p * NR + j) * k;
        for (int64_t kk = k0; kk < k1; ++kk) pw.panels_[packed_index(p * NR + j, kk, kp)] = src[kk];
      }
    }
  }
  return pw;
}

std::vector<uint16_t> PackedWeight::unpack() const {
  std::vector<uint16_t> out(static_cast<size_t>(n_ * k_));
  const int64_t kp = k_ + (k_ & 1);
  for (int64_t j = 0; j < n_; ++j)
    for (int64_t kk = 0; kk < k_; ++kk) out[j * k_ + kk] = panels_[packed_index(j, kk, kp)];
  return out;
}

void gemm(const float* A, int64_t lda, int64_t M, const PackedWeight& W, const float* bias,
          float* C, int64_t ldc, bool round_a_to_bf16, ThreadPool& pool, Isa isa) {
  const int64_t N = W.n_, K = W.k_;
  if (M < 0) throw std::invalid_argument("gemm: negative M");
  if (M == 0 || N == 0) return;
  if (lda < K || ldc < N) throw std::invalid_argument("gemm: lda < K or ldc < N");

  if (K == 0) {  // empty sum: C = bias (or 0)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = bias ? 0.0f + bias[j] : 0.0f;
    return;
  }

  Call call{A, lda, M, N, K, K + (K & 1), W.panels_.data(), bias, C, ldc, round_a_to_bf16};
  const UnitFn unit = unit_for(isa, round_a_to_bf16);
  const int64_t panels = (N + NR - 1) / NR;

  const bool serial = pool.size() == 1 || M * panels * NR * K < kSerialFlops;
  const int T = serial ? 1 : pool.size();

  // Units over rows [m0, m1): G keeps the C block of a unit within kCBlockBytes (L2); when M
  // alone does not give about 4 units per thread, G is lowered to split N as well.
  auto run_rows = [&](int64_t m0, int64_t m1) {
    const int64_t rows = m1 - m0;
    const int64_t mblocks = (rows + MC - 1) / MC;
    const int64_t block_rows = std::min(rows, MC);
    const int64_t g_cache = std::max<int64_t>(1, kCBlockBytes / (4 * NR * block_rows));
    const int64_t g_balance = mblocks >= 4 * T ? panels : (panels * mblocks + 4 * T - 1) / (4 * T);
    const int64_t G = std::max<int64_t>(1, std::min(g_cache, g_balance));
    const int64_t groups = (panels + G - 1) / G;
    const int64_t units = mblocks * groups;
    std::atomic<int64_t> unit_next{0};
    auto body = [&](int /*t*/, int /*count*/) {
      static thread_local Scratch wscratch, ascratch;
      float* abuf = ascratch.get(static_cast<size_t>(MC * kAStride));
      float* wbuf = wscratch.get(static_cast<size_t>(kWScratch));
      for (;;) {
        const int64_t u = unit_next.fetch_add(1, std::memory_order_relaxed);
        if (u >= units) break;
        const int64_t mb = m0 + (u / groups) * MC, pb = (u % groups) * G;
        unit(call, Unit{mb, std::min(mb + MC, m1), pb, std::min(pb + G, panels)}, abuf, wbuf);
      }
    };
    if (T == 1) body(0, 1);
    else pool.run_on_all(body);
  };

#if defined(__x86_64__)
  if (unit == &unit_avx512bf16) {
    // A is rounded and packed once per call (all of N reuses it), in chunks of whole M blocks
    // that keep the packed copy within kPackBytes; the copy lives in the calling thread's scratch.
    const int64_t row_words = dot_packed_words(call.Kp);
    const int64_t chunk = std::max<int64_t>(1, kPackBytes / (4 * row_words * MC)) * MC;
    static thread_local Scratch pscratch;
    uint32_t* packed =
        reinterpret_cast<uint32_t*>(pscratch.get(static_cast<size_t>(std::min(M, chunk) * row_words)));
    for (int64_t m0 = 0; m0 < M; m0 += chunk) {
      const int64_t m1 = std::min(M, m0 + chunk);
      call.a_packed = packed;
      call.a_row0 = m0;
      call.a_rows = m1 - m0;
      // Rows pack independently: split them finely, so that both threads share the packing even
      // when M is one block (packing on the calling thread alone was a tenth of wan-tiny's forward).
      auto pack_rows = [&](int64_t b, int64_t e) { pack_a_avx512bf16(call, m0 + b, m0 + e, packed); };
      if (T == 1) pack_rows(0, m1 - m0);
      else pool.parallel_for(m1 - m0, pack_rows);
      run_rows(m0, m1);
    }
    return;
  }
#endif
  run_rows(0, M);
}

}  // namespace ditpoc::cpu
