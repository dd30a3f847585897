// Tests of the CPU GEMM (native/engine/cpu/gemm.h), on every CPU path the machine runs: accuracy
// against a float64 reference, exact agreement with the path's fp32 sequence, bit-exact
// determinism across M, row position, neighbouring rows and thread counts, strides, tails, and
// pack/unpack round trip.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "bf16.h"
#include "check.h"
#include "cpu/cpu_isa.h"
#include "cpu/gemm.h"
#include "thread_pool.h"

using ditpoc::ThreadPool;
using ditpoc::cpu::gemm;
using ditpoc::cpu::PackedWeight;

namespace {

std::mt19937 rng(20240607);

// Random non-zero values in ±[0.05, 1) · scale.
float rand_nonzero(float scale = 1.0f) {
  std::uniform_real_distribution<float> mag(0.05f, 1.0f);
  std::bernoulli_distribution neg(0.5);
  const float v = mag(rng) * scale;
  return neg(rng) ? -v : v;
}

struct Problem {
  int64_t m, n, k, lda, ldc;
  std::vector<float> a;      // m x lda
  std::vector<uint16_t> w;   // n x k bf16
  std::vector<float> bias;   // n (empty: none)
};

Problem make_problem(int64_t m, int64_t n, int64_t k, bool with_bias, int64_t lda_pad = 0,
                     int64_t ldc_pad = 0) {
  Problem p;
  p.m = m, p.n = n, p.k = k, p.lda = k + lda_pad, p.ldc = n + ldc_pad;
  p.a.assign(static_cast<size_t>(m * p.lda), std::numeric_limits<float>::quiet_NaN());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t kk = 0; kk < k; ++kk) p.a[i * p.lda + kk] = rand_nonzero(2.0f);
  p.w.resize(static_cast<size_t>(n * k));
  for (auto& v : p.w) v = ditpoc::f32_to_bf16(rand_nonzero(0.5f));
  if (with_bias) {
    p.bias.resize(static_cast<size_t>(n));
    for (auto& v : p.bias) v = rand_nonzero(3.0f);
  }
  return p;
}

// C with its padding columns holding a sentinel, valid region poisoned with NaN.
constexpr float kSentinel = 12345.5f;
std::vector<float> poisoned_c(const Problem& p) {
  std::vector<float> c(static_cast<size_t>(p.m * p.ldc), kSentinel);
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t j = 0; j < p.n; ++j) c[i * p.ldc + j] = std::numeric_limits<float>::quiet_NaN();
  return c;
}

std::vector<float> run(const Problem& p, const PackedWeight& W, bool round_a, ThreadPool& pool) {
  std::vector<float> c = poisoned_c(p);
  gemm(p.a.data(), p.lda, p.m, W, p.bias.empty() ? nullptr : p.bias.data(), c.data(), p.ldc,
       round_a, pool);
  return c;
}

float a_eff(float a, bool round_a) { return round_a ? ditpoc::round_bf16(a) : a; }

// float64 reference with the error bound 1e-5 · (Σ|a'||w| + |bias|) per element; also checks
// the padding columns of C are untouched.
void check_against_reference(const Problem& p, const std::vector<float>& c, bool round_a,
                             const char* what) {
  int bad = 0;
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double ref = 0, abs_sum = 0;
      for (int64_t kk = 0; kk < p.k; ++kk) {
        const double a = a_eff(p.a[i * p.lda + kk], round_a);
        const double w = ditpoc::bf16_to_f32(p.w[j * p.k + kk]);
        ref += a * w;
        abs_sum += std::fabs(a * w);
      }
      if (!p.bias.empty()) {
        ref += p.bias[j];
        abs_sum += std::fabs(p.bias[j]);
      }
      const float got = c[i * p.ldc + j];
      const double err = std::fabs(static_cast<double>(got) - ref);
      if (!(err <= 1e-5 * abs_sum) && bad++ < 5)
        std::printf("  %s: M=%lld N=%lld K=%lld C[%lld,%lld]=%.9g ref=%.9g |err|/sum=%.3g\n", what,
                    (long long)p.m, (long long)p.n, (long long)p.k, (long long)i, (long long)j,
                    got, ref, abs_sum > 0 ? err / abs_sum : err);
    }
    for (int64_t j = p.n; j < p.ldc; ++j)
      if (c[i * p.ldc + j] != kSentinel && bad++ < 5)
        std::printf("  %s: C padding [%lld,%lld] overwritten\n", what, (long long)i, (long long)j);
  }
  CHECK_MSG(bad == 0, "%s: %d bad element(s) for M=%lld N=%lld K=%lld lda=%lld ldc=%lld", what,
            bad, (long long)p.m, (long long)p.n, (long long)p.k, (long long)p.lda,
            (long long)p.ldc);
}

// The exact sequence of the active path (gemm_unit.inc), all in fp32. FMA paths (portable, avx2,
// avx512): acc = 0; acc = fma(a'[k], w[k], acc) for k in order; C = acc + bias: the same bits on
// every machine. bf16 dot path with rounded A: per k pair, in order, acc = fma(a'[k+1], w[k+1],
// acc) then fma(a'[k], w[k], acc) (vdpbf16ps' documented order; both products are exact).
void check_canonical_bits(const Problem& p, const std::vector<float>& c, bool round_a,
                          const char* what) {
  int bad = 0;
  const bool dot = round_a && ditpoc::cpu::active_isa() == ditpoc::cpu::Isa::Avx512Bf16;
  for (int64_t i = 0; i < p.m; ++i)
    for (int64_t j = 0; j < p.n; ++j) {
      float acc = 0.0f;
      auto at = [&](int64_t kk, float* a, float* w) {
        *a = kk < p.k ? a_eff(p.a[i * p.lda + kk], round_a) : 0.0f;
        *w = kk < p.k ? ditpoc::bf16_to_f32(p.w[j * p.k + kk]) : 0.0f;
      };
      if (dot) {
        for (int64_t kk = 0; kk < p.k; kk += 2) {
          float a0, w0, a1, w1;
          at(kk, &a0, &w0);
          at(kk + 1, &a1, &w1);
          acc = std::fma(a1, w1, acc);
          acc = std::fma(a0, w0, acc);
        }
      } else {
        for (int64_t kk = 0; kk < p.k; ++kk)
          acc = std::fma(a_eff(p.a[i * p.lda + kk], round_a),
                         ditpoc::bf16_to_f32(p.w[j * p.k + kk]), acc);
      }
      if (!p.bias.empty()) acc = acc + p.bias[j];
      const float got = c[i * p.ldc + j];
      if (ditpoc::f32_bits(got) != ditpoc::f32_bits(acc) && bad++ < 3)
        std::printf("  %s: C[%lld,%lld]=%.9g canonical=%.9g\n", what, (long long)i,
                    (long long)j, got, acc);
    }
  CHECK_MSG(bad == 0, "%s: %d element(s) differ from the canonical FMA sequence (M=%lld N=%lld K=%lld)",
            what, bad, (long long)p.m, (long long)p.n, (long long)p.k);
}

bool same_bits(const float* x, const float* y, int64_t n) {
  return std::memcmp(x, y, static_cast<size_t>(n) * sizeof(float)) == 0;
}

void test_pack_unpack() {
  const int64_t shapes[][2] = {{1, 1}, {7, 3}, {31, 33}, {32, 64}, {33, 100}, {100, 257}, {64, 256}};
  for (auto& s : shapes) {
    std::vector<uint16_t> w(static_cast<size_t>(s[0] * s[1]));
    for (auto& v : w) v = static_cast<uint16_t>(rng());
    PackedWeight pw = PackedWeight::pack(w.data(), s[0], s[1]);
    CHECK(pw.n() == s[0] && pw.k() == s[1] && !pw.empty());
    CHECK_MSG(pw.unpack() == w, "unpack(pack(w)) != w for N=%lld K=%lld", (long long)s[0],
              (long long)s[1]);
  }
  CHECK(PackedWeight().empty());
}

void test_accuracy(ThreadPool& pool1, ThreadPool& pool2, ThreadPool& pool3) {
  // M: tails of the FMA paths' 8-row tiles and of the dot path's balanced tiles of <= 12 rows.
  const int64_t ms[] = {1, 7, 8, 9, 12, 13, 31, 33, 100};
  const int64_t ns[] = {1, 7, 31, 32, 33, 64, 100};
  const int64_t ks[] = {1, 7, 31, 33, 100, 256, 257, 600, 1025};
  int idx = 0;
  for (int64_t m : ms)
    for (int64_t n : ns)
      for (int64_t k : ks) {
        ++idx;
        const bool with_bias = idx % 2 == 0;
        const bool round_a = idx % 3 != 0;
        const int64_t lda_pad = idx % 4 == 1 ? 5 : 0, ldc_pad = idx % 5 == 2 ? 3 : 0;
        Problem p = make_problem(m, n, k, with_bias, lda_pad, ldc_pad);
        PackedWeight W = PackedWeight::pack(p.w.data(), n, k);
        ThreadPool& pool = idx % 3 == 0 ? pool1 : idx % 3 == 1 ? pool2 : pool3;
        std::vector<float> c = run(p, W, round_a, pool);
        check_against_reference(p, c, round_a, "tails");
        check_canonical_bits(p, c, round_a, "tails");
      }
  // Larger shapes: several K slices, several M blocks, multi-panel thread splits, big strides.
  struct S { int64_t m, n, k, lda_pad, ldc_pad; bool bias, round; };
  const S big[] = {{300, 70, 300, 0, 0, true, true},     {3, 40, 8960, 0, 0, true, true},
                   {64, 256, 512, 16, 32, false, true},  {129, 513, 200, 1, 1, true, false},
                   {17, 1536, 96, 1024, 7, true, true},  {520, 33, 77, 0, 0, false, false},
                   {64, 96, 1536, 0, 0, true, true}};
  for (const S& s : big) {
    Problem p = make_problem(s.m, s.n, s.k, s.bias, s.lda_pad, s.ldc_pad);
    PackedWeight W = PackedWeight::pack(p.w.data(), s.n, s.k);
    for (ThreadPool* pool : {&pool1, &pool2, &pool3}) {
      std::vector<float> c = run(p, W, s.round, *pool);
      check_against_reference(p, c, s.round, "big");
      check_canonical_bits(p, c, s.round, "big");
    }
  }
}

void test_k_zero(ThreadPool& pool) {
  Problem p = make_problem(5, 9, 0, true, 0, 2);
  PackedWeight W = PackedWeight::pack(p.w.data(), 9, 0);
  std::vector<float> c = run(p, W, true, pool);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 9; ++j) CHECK(c[i * p.ldc + j] == p.bias[j]);
}

// Bit-exact determinism: a row's result must not depend on M, its position, the other rows or
// the thread count.
void test_determinism(ThreadPool& pool1, ThreadPool& pool2, ThreadPool& pool3) {
  struct S { int64_t n, k; bool bias; };
  // n * k chosen so M = 37 runs multi-threaded (and M = 1 runs on the calling thread).
  const S shapes[] = {{100, 600, true}, {256, 257, false}, {33, 2000, true}};
  for (const S& s : shapes) {
    for (bool round_a : {false, true}) {
      const int64_t M = 37;
      Problem p = make_problem(M, s.n, s.k, s.bias);
      PackedWeight W = PackedWeight::pack(p.w.data(), s.n, s.k);
      const std::vector<float> c1 = run(p, W, round_a, pool1);
      const std::vector<float> c2 = run(p, W, round_a, pool2);
      const std::vector<float> c3 = run(p, W, round_a, pool3);
      CHECK_MSG(same_bits(c1.data(), c2.data(), M * s.n), "1 vs 2 threads differ (N=%lld K=%lld)",
                (long long)s.n, (long long)s.k);
      CHECK_MSG(same_bits(c1.data(), c3.data(), M * s.n), "1 vs 3 threads differ (N=%lld K=%lld)",
                (long long)s.n, (long long)s.k);
      check_canonical_bits(p, c1, round_a, "determinism");

      // Each row alone (M = 1) gives the same bits as inside M = 37.
      int row_bad = 0;
      for (int64_t i = 0; i < M; ++i) {
        Problem one = p;
        one.m = 1;
        one.a.assign(p.a.begin() + i * p.lda, p.a.begin() + (i + 1) * p.lda);
        for (ThreadPool* pool : {&pool1, &pool3}) {
          const std::vector<float> ci = run(one, W, round_a, *pool);
          if (!same_bits(ci.data(), c1.data() + i * p.ldc, s.n)) ++row_bad;
        }
      }
      CHECK_MSG(row_bad == 0, "%d row(s) differ between M=1 and M=37 (N=%lld K=%lld)", row_bad,
                (long long)s.n, (long long)s.k);

      // Row 0 of p placed at several positions among fresh random rows, at several M.
      int pos_bad = 0;
      const int64_t placements[][2] = {{37, 0}, {37, 5}, {37, 8}, {37, 36}, {9, 8}, {300, 263}, {64, 31}};
      for (auto& pl : placements) {
        Problem q = make_problem(pl[0], s.n, s.k, false);
        q.w = p.w;
        q.bias = p.bias;
        std::copy(p.a.begin(), p.a.begin() + p.k, q.a.begin() + pl[1] * q.lda);
        for (ThreadPool* pool : {&pool1, &pool2, &pool3}) {
          const std::vector<float> cq = run(q, W, round_a, *pool);
          if (!same_bits(cq.data() + pl[1] * q.ldc, c1.data(), s.n)) ++pos_bad;
        }
      }
      CHECK_MSG(pos_bad == 0, "%d placement(s) changed row bits (N=%lld K=%lld)", pos_bad,
                (long long)s.n, (long long)s.k);

      // Non-finite values in the other rows of a tile do not leak into this row.
      {
        Problem q = p;
        for (int64_t i = 1; i < M; ++i)
          q.a[i * q.lda + (i % q.k)] = i % 2 ? std::numeric_limits<float>::quiet_NaN()
                                             : std::numeric_limits<float>::infinity();
        const std::vector<float> cq = run(q, W, round_a, pool2);
        CHECK_MSG(same_bits(cq.data(), c1.data(), s.n),
                  "NaN/Inf in other rows changed row 0 (N=%lld K=%lld)", (long long)s.n,
                  (long long)s.k);
      }

      // Strided A/C do not change the bits either.
      Problem st = make_problem(M, s.n, s.k, s.bias, 13, 9);
      for (int64_t i = 0; i < M; ++i)
        std::copy(p.a.begin() + i * p.lda, p.a.begin() + i * p.lda + p.k, st.a.begin() + i * st.lda);
      st.w = p.w;
      st.bias = p.bias;
      const std::vector<float> cs = run(st, W, round_a, pool2);
      int st_bad = 0;
      for (int64_t i = 0; i < M; ++i)
        if (!same_bits(cs.data() + i * st.ldc, c1.data() + i * p.ldc, s.n)) ++st_bad;
      CHECK_MSG(st_bad == 0, "%d row(s) changed with strides (N=%lld K=%lld)", st_bad,
                (long long)s.n, (long long)s.k);
    }
  }
}

// The bf16 dot path packs A in chunks of whole M blocks (about 8 MB of packed rows: 256 rows at
// K = 8960), so a row's bits must not depend on which chunk or block holds it, nor on where in
// its block's balanced tiles it falls. Rows around the chunk boundary (255, 256) and the last
// one, at several M and thread counts, against the row computed alone.
void test_chunk_determinism(ThreadPool& pool1, ThreadPool& pool2, ThreadPool& pool3) {
  const int64_t N = 40, K = 8960, M = 270;
  Problem p = make_problem(M, N, K, true);
  PackedWeight W = PackedWeight::pack(p.w.data(), N, K);
  const std::vector<float> c2 = run(p, W, true, pool2);
  check_canonical_bits(p, c2, true, "chunks");
  CHECK_MSG(same_bits(c2.data(), run(p, W, true, pool1).data(), M * N), "chunks: 1 vs 2 threads differ");
  CHECK_MSG(same_bits(c2.data(), run(p, W, true, pool3).data(), M * N), "chunks: 2 vs 3 threads differ");
  int bad = 0;
  for (int64_t i : {int64_t(0), int64_t(11), int64_t(255), int64_t(256), int64_t(269)}) {
    Problem one = p;
    one.m = 1;
    one.a.assign(p.a.begin() + i * p.lda, p.a.begin() + (i + 1) * p.lda);
    if (!same_bits(run(one, W, true, pool2).data(), c2.data() + i * p.ldc, N)) ++bad;
    // The same row as row 257 of M = 258 (second chunk, second row) and row 12 of M = 25.
    for (int64_t m2 : {int64_t(258), int64_t(25)}) {
      Problem q = make_problem(m2, N, K, false);
      q.w = p.w;
      q.bias = p.bias;
      const int64_t at = m2 == 258 ? 257 : 12;
      std::copy(p.a.begin() + i * p.lda, p.a.begin() + (i + 1) * p.lda, q.a.begin() + at * q.lda);
      if (!same_bits(run(q, W, true, pool3).data() + at * q.ldc, c2.data() + i * p.ldc, N)) ++bad;
    }
  }
  CHECK_MSG(bad == 0, "chunks: %d row placement(s) changed the bits", bad);
}

}  // namespace

int main() {
  ThreadPool pool1(1), pool2(2), pool3(3);
  test_pack_unpack();
  // Every CPU path this machine can run: the same checks, each against its own exact sequence.
  for (ditpoc::cpu::Isa isa : ditpoc::cpu::supported_isas()) {
    ditpoc::cpu::set_active_isa(isa);
    std::printf("path %s\n", ditpoc::cpu::isa_name(isa));
    test_k_zero(pool2);
    test_accuracy(pool1, pool2, pool3);
    test_determinism(pool1, pool2, pool3);
    test_chunk_determinism(pool1, pool2, pool3);
  }
  return check::finish("test_gemm");
}
