// Every CPU op against a float64 reference on random, non-zero inputs; outputs poisoned with
// NaN before each run; bit-identical results for 1 and 3 threads.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "bf16.h"
#include "check.h"
#include "float_compare.h"
#include "cpu/ops.h"
#include "weight_transforms.h"

using namespace ditpoc;
using check::poisoned;
using check::rel_err;
using check::same_bits;
using namespace ditpoc::cpu;

namespace {

std::mt19937 rng(1234);

std::vector<float> randn(size_t n, float scale = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> d(mean, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}



void ref_layernorm(const float* x, int dim, double eps, std::vector<double>& out) {
  double m = 0, v = 0;
  for (int i = 0; i < dim; ++i) m += x[i];
  m /= dim;
  for (int i = 0; i < dim; ++i) v += (x[i] - m) * (x[i] - m);
  v /= dim;
  out.resize(dim);
  for (int i = 0; i < dim; ++i) out[i] = (x[i] - m) / std::sqrt(v + eps);
}

}  // namespace

int main() {
  ThreadPool pool1(1), pool3(3);
  const double eps = 1e-6;

  // LayerNorm + adaLN modulation, with per-group modulation rows.
  {
    const int64_t rows = 37, per_group = 12;
    const int dim = 256;
    const int64_t groups = (rows + per_group - 1) / per_group;
    auto x = randn(rows * dim, 3.0f, 0.5f), shift = randn(groups * dim * 2), scale = randn(groups * dim * 2, 0.2f);
    auto out = poisoned(rows * dim), out3 = poisoned(rows * dim);
    layernorm_modulate(x.data(), rows, dim, eps, shift.data(), scale.data(), 2 * dim, per_group, out.data(), pool1);
    layernorm_modulate(x.data(), rows, dim, eps, shift.data(), scale.data(), 2 * dim, per_group, out3.data(), pool3);
    std::vector<double> ref(rows * dim), ln;
    for (int64_t r = 0; r < rows; ++r) {
      ref_layernorm(x.data() + r * dim, dim, eps, ln);
      const int64_t g = r / per_group;
      for (int i = 0; i < dim; ++i)
        ref[r * dim + i] = ln[i] * (1.0 + scale[g * 2 * dim + i]) + shift[g * 2 * dim + i];
    }
    CHECK_MSG(rel_err(out, ref) < 1e-6, "layernorm_modulate err %g", rel_err(out, ref));
    CHECK(same_bits(out, out3));
  }
  // Affine LayerNorm.
  {
    const int64_t rows = 19;
    const int dim = 384;
    auto x = randn(rows * dim, 2.0f, -1.0f), w = randn(dim, 0.02f, 1.0f), b = randn(dim, 0.02f);
    auto out = poisoned(rows * dim);
    layernorm_affine(x.data(), rows, dim, eps, w.data(), b.data(), out.data(), pool3);
    std::vector<double> ref(rows * dim), ln;
    for (int64_t r = 0; r < rows; ++r) {
      ref_layernorm(x.data() + r * dim, dim, eps, ln);
      for (int i = 0; i < dim; ++i) ref[r * dim + i] = ln[i] * w[i] + b[i];
    }
    CHECK_MSG(rel_err(out, ref) < 1e-6, "layernorm_affine err %g", rel_err(out, ref));
  }
  // RMSNorm over the full width.
  {
    const int64_t rows = 23;
    const int dim = 512;
    auto x = randn(rows * dim, 4.0f), w = randn(dim, 0.02f, 1.0f);
    auto y = x, y3 = x;
    rmsnorm_inplace(y.data(), rows, dim, eps, w.data(), pool1);
    rmsnorm_inplace(y3.data(), rows, dim, eps, w.data(), pool3);
    std::vector<double> ref(rows * dim);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
      const double inv = 1.0 / std::sqrt(ss / dim + eps);
      for (int i = 0; i < dim; ++i) ref[r * dim + i] = x[r * dim + i] * inv * w[i];
    }
    CHECK_MSG(rel_err(y, ref) < 1e-6, "rmsnorm err %g", rel_err(y, ref));
    CHECK(same_bits(y, y3));
  }
  // 3D RoPE: the table against the formula, and the rotation against complex arithmetic.
  {
    const int F = 3, H = 4, W = 5, heads = 2, hd = 128;
    const RopeTable t = make_rope_table(F, H, W, hd);
    CHECK(t.tokens == F * H * W && t.pairs == 64);
    const int64_t rows = 2 * t.tokens;  // two sequences: row r is token r % tokens
    auto x = randn(rows * heads * hd);
    auto y = x;
    rope_inplace(y.data(), rows, heads, hd, t, pool3);
    std::vector<double> ref(y.size());
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t tok = r % t.tokens;
      const int pos[3] = {int(tok / (H * W)), int(tok / W % H), int(tok % W)};
      for (int h = 0; h < heads; ++h)
        for (int j = 0; j < 64; ++j) {
          // pairs [0,22) frames (band width 44), [22,43) height and [43,64) width (42 each)
          const int axis = j < 22 ? 0 : (j < 43 ? 1 : 2);
          const int bj = j < 22 ? j : (j < 43 ? j - 22 : j - 43);
          const double n = axis == 0 ? 44 : 42;
          const double ang = pos[axis] * std::pow(10000.0, -2.0 * bj / n);
          const int64_t i = (r * heads + h) * hd + 2 * j;
          ref[i] = x[i] * std::cos(ang) - x[i + 1] * std::sin(ang);
          ref[i + 1] = x[i] * std::sin(ang) + x[i + 1] * std::cos(ang);
        }
    }
    CHECK_MSG(rel_err(y, ref) < 1e-6, "rope err %g", rel_err(y, ref));
  }
  // Attention: test_attention.cpp.
  // float8 e4m3: representable values, ties to even, saturation, per-group scaling.
  {
    CHECK(round_fp8_e4m3(1.0f) == 1.0f);
    CHECK(round_fp8_e4m3(1.0625f) == 1.0f);    // tie between 1.0 and 1.125 → even mantissa
    CHECK(round_fp8_e4m3(1.1875f) == 1.25f);   // tie between 1.125 and 1.25 → even
    CHECK(round_fp8_e4m3(-3.3f) == -3.25f);
    CHECK(round_fp8_e4m3(1000.0f) == 448.0f);
    CHECK(round_fp8_e4m3(std::ldexp(1.0f, -9)) == std::ldexp(1.0f, -9));  // smallest subnormal
    CHECK(round_fp8_e4m3(std::ldexp(1.0f, -11)) == 0.0f);
    auto x = randn(2 * 64, 2.0f);
    x[5] = 50.0f;  // group 0's amax
    auto y = x;
    round_fp8_groups_inplace(y.data(), 2, 64, pool3);
    const float scale0 = 50.0f / 448.0f;
    for (int i = 0; i < 64; ++i) CHECK(y[i] == round_fp8_e4m3(x[i] / scale0) * scale0);
    CHECK(y[5] == 50.0f);
  }
  // GELU (tanh form) and SiLU.
  {
    auto x = randn(5000, 3.0f);
    auto g = x, s = x;
    gelu_tanh_inplace(g.data(), int64_t(g.size()), pool3);
    silu_inplace(s.data(), int64_t(s.size()), pool3);
    std::vector<double> gr(x.size()), sr(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double u = x[i];
      gr[i] = 0.5 * u * (1 + std::tanh(std::sqrt(2 / M_PI) * (u + 0.044715 * u * u * u)));
      sr[i] = u / (1 + std::exp(-u));
    }
    CHECK_MSG(rel_err(g, gr) < 1e-6, "gelu err %g", rel_err(g, gr));
    CHECK_MSG(rel_err(s, sr) < 1e-6, "silu err %g", rel_err(s, sr));
  }
  // Gated and ungated residual adds.
  {
    const int64_t rows = 10, per_group = 5;
    const int dim = 64;
    auto x = randn(rows * dim), y = randn(rows * dim), gate = randn(2 * 3 * dim);
    auto a = x, b = x;
    residual_add(a.data(), y.data(), gate.data(), 3 * dim, rows, dim, per_group, pool3);
    residual_add(b.data(), y.data(), nullptr, 0, rows, dim, per_group, pool3);
    std::vector<double> ra(x.size()), rb(x.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int i = 0; i < dim; ++i) {
        ra[r * dim + i] = double(x[r * dim + i]) + double(y[r * dim + i]) * gate[(r / per_group) * 3 * dim + i];
        rb[r * dim + i] = double(x[r * dim + i]) + y[r * dim + i];
      }
    CHECK(rel_err(a, ra) < 1e-6 && rel_err(b, rb) < 1e-6);
  }
  // Householder reflection: against the formula, norm-preserving, an involution.
  {
    const int64_t rows = 9;
    const int dim = 300;
    auto w = randn(dim);
    double nn = 0;
    for (float v : w) nn += double(v) * v;
    for (auto& v : w) v = static_cast<float>(v / std::sqrt(nn));
    auto x = randn(rows * dim, 5.0f);
    auto y = x;
    reflect_rows(y.data(), rows, dim, w.data(), pool3);
    std::vector<double> ref(x.size());
    for (int64_t r = 0; r < rows; ++r) {
      double d = 0;
      for (int i = 0; i < dim; ++i) d += double(w[i]) * x[r * dim + i];
      for (int i = 0; i < dim; ++i) ref[r * dim + i] = x[r * dim + i] - 2 * d * w[i];
    }
    CHECK_MSG(rel_err(y, ref) < 1e-6, "reflect err %g", rel_err(y, ref));
    reflect_rows(y.data(), rows, dim, w.data(), pool1);
    std::vector<double> xd(x.begin(), x.end());
    CHECK(rel_err(y, xd) < 1e-5);
  }
  // bf16 rounding (nearest even) and the timestep sinusoid.
  {
    auto x = randn(1000, 10.0f);
    auto y = x;
    round_bf16_inplace(y.data(), int64_t(y.size()), pool3);
    for (size_t i = 0; i < x.size(); ++i) {
      CHECK((f32_bits(y[i]) & 0xffffu) == 0);
      CHECK(std::fabs(y[i] - x[i]) <= std::ldexp(std::fabs(x[i]), -8));
    }
    CHECK(f32_to_bf16(f32_from_bits(0x3f808000u)) == 0x3f80);  // tie → even
    CHECK(f32_to_bf16(f32_from_bits(0x3f818000u)) == 0x3f82);  // tie → even (up)
    std::vector<float> s(256);
    timestep_sinusoid(731, 256, s.data());
    for (int i = 0; i < 128; ++i) {
      const double a = 731 * std::pow(10000.0, -i / 128.0);
      CHECK(std::fabs(s[i] - std::cos(a)) < 1e-6 && std::fabs(s[128 + i] - std::sin(a)) < 1e-6);
    }
  }
  return check::finish("test_ops");
}
