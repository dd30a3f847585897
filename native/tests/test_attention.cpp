// The CPU attention (cpu/attention.h) on every path this CPU runs, for each numerics mode of the
// forward (fp32; bf16 inputs; bf16 inputs with bf16 P): against a float64 reference on random
// inputs, path against path, and bit-identical across thread counts, query splits and batch
// composition. Outputs are poisoned with NaN before each run.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "bf16.h"
#include "check.h"
#include "float_compare.h"
#include "cpu/attention.h"

using namespace ditpoc;
using check::poisoned;
using check::rel_err;
using check::same_bits;
using namespace ditpoc::cpu;

namespace {

std::mt19937 rng(4321);

std::vector<float> randn(size_t n, bool bf16) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = bf16 ? round_bf16(d(rng)) : d(rng);
  return v;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  return rel_err(a, std::vector<double>(b.begin(), b.end()));
}


struct Mode {
  const char* name;
  AttentionNumerics numerics;
};
const Mode kModes[] = {{"fp32", {false, false}}, {"bf16", {true, false}}, {"bf16-flash", {true, true}}};

// float64 attention. With round_p, the probabilities used in P·V are those of an online
// softmax over key tiles of `tile` keys: p = e^(s − m_t) rounded to bf16, where m_t is the running
// max up to the key's tile (s rounded to fp32, as the kernels hold it), then scaled by
// e^(m_t − m) exactly; the row sum keeps the unrounded e^(s − m). (tile = lk: one softmax pass.)
std::vector<double> reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                              int64_t groups, int64_t lq, int64_t lk, int heads, int hd, bool round_p,
                              int64_t tile) {
  const int64_t width = int64_t(heads) * hd;
  std::vector<double> ref(q.size());
  std::vector<double> s(lk), p(lk), m_run(lk);
  for (int64_t g = 0; g < groups; ++g)
    for (int h = 0; h < heads; ++h)
      for (int64_t i = 0; i < lq; ++i) {
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < lk; ++j) {
          double d = 0;
          for (int e = 0; e < hd; ++e)
            d += double(q[(g * lq + i) * width + h * hd + e]) * k[(g * lk + j) * width + h * hd + e];
          s[j] = d / std::sqrt(double(hd));
          if (round_p) s[j] = static_cast<float>(s[j]);
        }
        for (int64_t t0 = 0; t0 < lk; t0 += tile) {
          for (int64_t j = t0; j < std::min(lk, t0 + tile); ++j) m = std::max(m, s[j]);
          for (int64_t j = t0; j < std::min(lk, t0 + tile); ++j) m_run[j] = m;
        }
        for (int64_t j = 0; j < lk; ++j) {
          sum += std::exp(s[j] - m);
          p[j] = round_p ? double(round_bf16(static_cast<float>(std::exp(s[j] - m_run[j])))) * std::exp(m_run[j] - m)
                         : std::exp(s[j] - m);
        }
        for (int e = 0; e < hd; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < lk; ++j) acc += p[j] * v[(g * lk + j) * width + h * hd + e];
          ref[(g * lq + i) * width + h * hd + e] = acc / sum;
        }
      }
  return ref;
}

}  // namespace

int main() {
  ThreadPool pool1(1), pool3(3);
  const std::vector<Isa> paths = supported_isas();
  // Shapes: one short tile (20 x 7), several tiles with a short last one (70 x 200), a key count
  // of a whole tile and an odd one (33 x 64, 5 x 129), head_dim 96 (a 64 + 32 split of the
  // head) and 32, and head_dim 48, which the SIMD kernels leave to the portable one.
  struct Shape { int64_t groups, lq, lk; int heads, hd; };
  const Shape shapes[] = {{2, 33, 64, 2, 128}, {2, 20, 7, 2, 128}, {2, 70, 200, 2, 128}, {1, 5, 129, 2, 128},
                          {2, 21, 130, 2, 96}, {1, 17, 70, 3, 32}, {2, 9, 70, 2, 48}};
  for (const Shape& sh : shapes) {
    const int64_t width = int64_t(sh.heads) * sh.hd;
    for (const Mode& mode : kModes) {
      const bool bf16 = mode.numerics.bf16_inputs;
      auto q = randn(sh.groups * sh.lq * width, bf16), k = randn(sh.groups * sh.lk * width, bf16),
           v = randn(sh.groups * sh.lk * width, bf16);
      std::vector<std::vector<float>> by_path;
      for (Isa isa : paths) {
        auto out = poisoned(q.size()), out3 = poisoned(q.size());
        attention(q.data(), k.data(), v.data(), sh.groups, sh.lq, sh.lk, sh.heads, sh.hd, out.data(), pool1,
                  mode.numerics, isa);
        attention(q.data(), k.data(), v.data(), sh.groups, sh.lq, sh.lk, sh.heads, sh.hd, out3.data(), pool3,
                  mode.numerics, isa);
        // fp32 accumulation everywhere; with P rounded to bf16, an e^(s − m) a few ulp off the
        // reference's can round to the neighbouring bf16, hence the looser bound.
        const double tol = mode.numerics.round_p_bf16 ? 1e-4 : 1e-5;
        // Every path rounds P within key tiles of 64, as the GPU does.
        const int64_t tile = 64;
        const double err = rel_err(out, reference(q, k, v, sh.groups, sh.lq, sh.lk, sh.heads, sh.hd,
                                                  mode.numerics.round_p_bf16, tile));
        CHECK_MSG(err < tol, "%s %s %ldx%ld hd %d: err %g", isa_name(isa), mode.name, long(sh.lq), long(sh.lk),
                  sh.hd, err);
        CHECK_MSG(same_bits(out, out3), "%s %s: 1 and 3 threads differ", isa_name(isa), mode.name);
        // A query row computed alone (lq = 1, one group: a different batch, position and split)
        // gives the bits it has inside the call.
        for (int64_t i : {int64_t(0), sh.lq / 2, sh.lq - 1}) {
          const int64_t g = sh.groups - 1;
          std::vector<float> qi(q.begin() + (g * sh.lq + i) * width, q.begin() + (g * sh.lq + i + 1) * width);
          std::vector<float> kg(k.begin() + g * sh.lk * width, k.end()), vg(v.begin() + g * sh.lk * width, v.end());
          auto oi = poisoned(width);
          attention(qi.data(), kg.data(), vg.data(), 1, 1, sh.lk, sh.heads, sh.hd, oi.data(), pool3, mode.numerics, isa);
          CHECK_MSG(std::memcmp(oi.data(), out.data() + (g * sh.lq + i) * width, sizeof(float) * width) == 0,
                    "%s %s: row %ld alone differs from inside lq=%ld", isa_name(isa), mode.name, long(i), long(sh.lq));
        }
        by_path.push_back(std::move(out));
      }
      // Path against path: portable, avx2 and avx512 run the same sequence (same bits), and so
      // does avx512-bf16 where it does not use bf16 dot products (fp32 inputs); its bf16 dot
      // products are an honest variant, close to the others.
      for (size_t a = 0; a < paths.size(); ++a)
        for (size_t b = a + 1; b < paths.size(); ++b) {
          const bool fma_pair = paths[b] != Isa::Avx512Bf16 || !bf16;
          if (fma_pair) {
            CHECK_MSG(same_bits(by_path[a], by_path[b]), "%s %s: %s and %s differ", mode.name, isa_name(paths[a]),
                      isa_name(paths[a]), isa_name(paths[b]));
          } else {
            const double d = rel_diff(by_path[a], by_path[b]);
            CHECK_MSG(d < (mode.numerics.round_p_bf16 ? 1e-4 : 1e-5), "%s: %s vs %s rel diff %g", mode.name,
                      isa_name(paths[a]), isa_name(paths[b]), d);
          }
        }
    }
  }
  // The bf16 dot products are really used on the avx512-bf16 path (bf16 inputs): its result is
  // not the fp32 FMA sequence's, yet as close to the reference.
  for (Isa isa : paths)
    if (isa == Isa::Avx512Bf16) {
      const int64_t lq = 40, lk = 300;
      const int heads = 1, hd = 128;
      auto q = randn(lq * hd, true), k = randn(lk * hd, true), v = randn(lk * hd, true);
      auto dot = poisoned(q.size()), fma = poisoned(q.size());
      attention(q.data(), k.data(), v.data(), 1, lq, lk, heads, hd, dot.data(), pool3, {true, true}, Isa::Avx512Bf16);
      attention(q.data(), k.data(), v.data(), 1, lq, lk, heads, hd, fma.data(), pool3, {true, true}, Isa::Avx512);
      CHECK_MSG(!same_bits(dot, fma), "avx512-bf16 gives the avx512 bits: bf16 dot products not used");
    }
  std::printf("attention: %zu paths checked\n", paths.size());
  return check::finish("test_attention");
}
