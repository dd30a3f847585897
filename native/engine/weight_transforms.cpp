#include "weight_transforms.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "bf16.h"
#include "seeding.h"

namespace ditpoc {

WeightTransform parse_weight_transform(const std::string& text) {
  WeightTransform t;
  auto parts = std::vector<std::string>{};
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i)
    if (i == text.size() || text[i] == ':') {
      parts.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  const std::string& kind = parts[0];
  auto number = [&](size_t i, const char* what) {
    try {
      size_t used = 0;
      const double v = std::stod(parts.at(i), &used);
      if (used != parts[i].size()) throw std::invalid_argument("");
      return v;
    } catch (...) {
      throw std::invalid_argument("weight transform '" + text + "': " + what + " must be a number");
    }
  };
  if (kind == "none" && parts.size() == 1) return t;
  if (kind == "noise" && (parts.size() == 2 || parts.size() == 3)) {
    t.kind = WeightTransform::Kind::Noise;
    t.relative = number(1, "noise level");
    if (!(t.relative > 0 && t.relative < 10)) throw std::invalid_argument("noise level must be in (0, 10)");
    t.seed = parts.size() == 3 ? parts[2] : "noise";
    return t;
  }
  if (kind == "fp8" && parts.size() == 1) {
    t.kind = WeightTransform::Kind::Fp8E4M3;
    return t;
  }
  if (kind == "int4" && parts.size() <= 2) {
    t.kind = WeightTransform::Kind::Int4;
    if (parts.size() == 2) {
      const double g = number(1, "group size");
      if (g < 1 || g > 65536 || g != std::floor(g)) throw std::invalid_argument("int4 group size must be in [1, 65536]");
      t.group_size = static_cast<int>(g);
    }
    return t;
  }
  throw std::invalid_argument("unknown weight transform '" + text +
                              "' (expected none, noise:REL[:SEED], fp8 or int4[:GROUP])");
}

std::string describe(const WeightTransform& t) {
  switch (t.kind) {
    case WeightTransform::Kind::None: return "none";
    case WeightTransform::Kind::Noise: return "noise:" + std::to_string(t.relative) + ":" + t.seed;
    case WeightTransform::Kind::Fp8E4M3: return "fp8";
    case WeightTransform::Kind::Int4: return "int4:" + std::to_string(t.group_size);
  }
  return "?";
}

float round_fp8_e4m3(float x) {
  if (!std::isfinite(x)) return x;
  const float a = std::min(std::fabs(x), 448.0f);
  if (a == 0.0f) return std::copysign(0.0f, x);
  // e4m3fn: 3 mantissa bits, exponent bias 7, smallest normal 2^-6, subnormal step 2^-9.
  int e;
  std::frexp(a, &e);                         // a = m·2^e, m in [0.5, 1)
  const int exp = std::max(e - 1, -6);       // unbiased exponent of a's binade (subnormals clamp)
  const float step = std::ldexp(1.0f, exp - 3);
  const float q = std::nearbyint(a / step) * step;  // ties to even under the default rounding mode
  return std::copysign(std::min(q, 448.0f), x);
}

void apply_weight_transform(const ModelConfig& cfg, int expert, const TensorSpec& spec, Tensor& tensor,
                            const WeightTransform& t, ThreadPool& pool) {
  if (t.kind == WeightTransform::Kind::None || spec.kind != TensorKind::Weight) return;
  uint16_t* d = tensor.data.data();
  const int64_t n = tensor.numel();
  switch (t.kind) {
    case WeightTransform::Kind::Noise: {
      std::vector<float> noise(static_cast<size_t>(n));
      normal(seed32(t.seed + "_" + cfg.experts[expert] + "_" + spec.name), n, noise.data(), &pool);
      const float rel = static_cast<float>(t.relative);
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) d[i] = f32_to_bf16(bf16_to_f32(d[i]) * (1.0f + rel * noise[i]));
      });
      break;
    }
    case WeightTransform::Kind::Fp8E4M3: {
      // Per-tensor scale, as fp8 checkpoints ship it: amax maps to the format's max, 448.
      float amax = 0;
      for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(bf16_to_f32(d[i])));
      const float scale = amax > 0 ? amax / 448.0f : 1.0f;
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) d[i] = f32_to_bf16(round_fp8_e4m3(bf16_to_f32(d[i]) / scale) * scale);
      });
      break;
    }
    case WeightTransform::Kind::Int4: {
      // Symmetric group-wise int4 along the input dimension (rows are contiguous).
      const int64_t k = spec.fan_in(), g = std::min<int64_t>(t.group_size, k);
      const int64_t groups = n / k * ((k + g - 1) / g);
      pool.parallel_for(groups, [&](int64_t b, int64_t e) {
        for (int64_t gi = b; gi < e; ++gi) {
          const int64_t per_row = (k + g - 1) / g;
          const int64_t row = gi / per_row, begin = row * k + (gi % per_row) * g;
          const int64_t end = std::min(begin + g, (row + 1) * k);
          float amax = 0;
          for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(bf16_to_f32(d[i])));
          const float scale = amax > 0 ? amax / 7.0f : 1.0f;
          for (int64_t i = begin; i < end; ++i) {
            const float q = std::clamp(std::nearbyint(bf16_to_f32(d[i]) / scale), -8.0f, 7.0f);
            d[i] = f32_to_bf16(q * scale);
          }
        }
      });
      break;
    }
    case WeightTransform::Kind::None: break;
  }
}

void apply_weight_transform(ModelWeights& w, const WeightTransform& t, ThreadPool& pool) {
  if (t.kind == WeightTransform::Kind::None) return;
  for (size_t x = 0; x < w.experts.size(); ++x)
    for (const auto& spec : tensor_specs(*w.config))
      apply_weight_transform(*w.config, static_cast<int>(x), spec, w.experts[x].tensors.at(spec.name), t, pool);
  w.identity += "+" + describe(t);
}

}  // namespace ditpoc
