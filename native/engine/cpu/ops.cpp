#include "ops.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "../bf16.h"
#include "../simd_math.h"
#include "../weight_transforms.h"

namespace ditpoc::cpu {

namespace {

// Work split for cheap element-wise loops: chunks of rows large enough to amortise a dispatch.
void rows_parallel(ThreadPool& pool, int64_t rows, int64_t cost_per_row,
                   const std::function<void(int64_t, int64_t)>& fn) {
  if (rows * cost_per_row < 16384) {
    fn(0, rows);
    return;
  }
  pool.parallel_for(rows, fn);
}

// Row statistics in float64 (SPEC §7 asks fp32 or better), summed in 8 interleaved lanes reduced
// in a fixed tree: the lanes vectorise without -ffast-math and break the add latency chain
// (a serial double sum over D made the norms a sixth of a small model's forward), and the bits
// are the same on every CPU path.
constexpr int kLanes = 8;
inline double reduce_lanes(double* acc) {
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}
inline double sum_lanes(const float* x, int n) {
  double acc[kLanes] = {0};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l];
  for (; i < n; ++i) acc[i % kLanes] += x[i];
  return reduce_lanes(acc);
}
// Σ (x[i] − c)².
inline double sum_sq_dev_lanes(const float* x, int n, double c) {
  double acc[kLanes] = {0};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double d = x[i + l] - c;
      acc[l] += d * d;
    }
  for (; i < n; ++i) {
    const double d = x[i] - c;
    acc[i % kLanes] += d * d;
  }
  return reduce_lanes(acc);
}

void mean_rstd(const float* x, int dim, double eps, double* mean, double* rstd) {
  const double m = sum_lanes(x, dim) / dim;
  *mean = m;
  *rstd = 1.0 / std::sqrt(sum_sq_dev_lanes(x, dim, m) / dim + eps);
}

}  // namespace

void layernorm_modulate(const float* x, int64_t rows, int dim, double eps, const float* shift,
                        const float* scale, int64_t mod_stride, int64_t rows_per_group, float* out,
                        ThreadPool& pool) {
  rows_parallel(pool, rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * dim;
      const int64_t g = r / rows_per_group;
      const float* sh = shift + g * mod_stride;
      const float* sc = scale + g * mod_stride;
      double mean, rstd;
      mean_rstd(xr, dim, eps, &mean, &rstd);
      float* o = out + r * dim;
      for (int i = 0; i < dim; ++i)
        o[i] = static_cast<float>((xr[i] - mean) * rstd) * (1.0f + sc[i]) + sh[i];
    }
  });
}

void layernorm_affine(const float* x, int64_t rows, int dim, double eps, const float* weight,
                      const float* bias, float* out, ThreadPool& pool) {
  rows_parallel(pool, rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * dim;
      double mean, rstd;
      mean_rstd(xr, dim, eps, &mean, &rstd);
      float* o = out + r * dim;
      for (int i = 0; i < dim; ++i)
        o[i] = static_cast<float>((xr[i] - mean) * rstd) * weight[i] + bias[i];
    }
  });
}

void rmsnorm_inplace(float* x, int64_t rows, int dim, double eps, const float* weight,
                     ThreadPool& pool) {
  rows_parallel(pool, rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* xr = x + r * dim;
      const double inv = 1.0 / std::sqrt(sum_sq_dev_lanes(xr, dim, 0.0) / dim + eps);
      for (int i = 0; i < dim; ++i) xr[i] = static_cast<float>(xr[i] * inv) * weight[i];
    }
  });
}

RopeTable make_rope_table(int frames, int height, int width, int head_dim, double theta) {
  RopeTable t;
  t.tokens = static_cast<int64_t>(frames) * height * width;
  t.pairs = head_dim / 2;
  const int hw_pairs = head_dim / 6;                 // ⌊d/6⌋ pairs each for height and width
  const int f_pairs = t.pairs - 2 * hw_pairs;        // the rest for frames
  // Band widths in real elements: 2·pairs. Pair j of a band of width n turns at theta^(−2j/n).
  std::vector<double> omega(t.pairs);
  std::vector<int> axis(t.pairs);
  for (int j = 0; j < t.pairs; ++j) {
    int band_j, band_pairs;
    if (j < f_pairs) { band_j = j; band_pairs = f_pairs; axis[j] = 0; }
    else if (j < f_pairs + hw_pairs) { band_j = j - f_pairs; band_pairs = hw_pairs; axis[j] = 1; }
    else { band_j = j - f_pairs - hw_pairs; band_pairs = hw_pairs; axis[j] = 2; }
    omega[j] = std::pow(theta, -2.0 * band_j / (2.0 * band_pairs));
  }
  t.cos.resize(static_cast<size_t>(t.tokens * t.pairs));
  t.sin.resize(t.cos.size());
  int64_t tok = 0;
  for (int f = 0; f < frames; ++f)
    for (int h = 0; h < height; ++h)
      for (int w = 0; w < width; ++w, ++tok) {
        const int pos[3] = {f, h, w};
        for (int j = 0; j < t.pairs; ++j) {
          const double a = pos[axis[j]] * omega[j];
          t.cos[tok * t.pairs + j] = static_cast<float>(std::cos(a));
          t.sin[tok * t.pairs + j] = static_cast<float>(std::sin(a));
        }
      }
  return t;
}

void rope_inplace(float* x, int64_t rows, int heads, int head_dim, const RopeTable& table,
                  ThreadPool& pool) {
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  rows_parallel(pool, rows, width, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t tok = r % table.tokens;
      const float* c = table.cos.data() + tok * table.pairs;
      const float* s = table.sin.data() + tok * table.pairs;
      for (int h = 0; h < heads; ++h) {
        float* p = x + r * width + static_cast<int64_t>(h) * head_dim;
        for (int j = 0; j < table.pairs; ++j) {
          const float a = p[2 * j], bb = p[2 * j + 1];
          p[2 * j] = a * c[j] - bb * s[j];
          p[2 * j + 1] = a * s[j] + bb * c[j];
        }
      }
    }
  });
}

void round_bf16_inplace(float* x, int64_t n, ThreadPool& pool) {
  rows_parallel(pool, n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] = round_bf16(x[i]);
  });
}

void round_fp8_groups_inplace(float* x, int64_t groups, int64_t group_size, ThreadPool& pool) {
  pool.parallel_for(groups, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g) {
      float* p = x + g * group_size;
      float amax = 0;
      for (int64_t i = 0; i < group_size; ++i) amax = std::max(amax, std::fabs(p[i]));
      const float scale = amax > 0 ? amax / 448.0f : 1.0f;
      for (int64_t i = 0; i < group_size; ++i) p[i] = round_fp8_e4m3(p[i] / scale) * scale;
    }
  });
}

void gelu_tanh_inplace(float* x, int64_t n, ThreadPool& pool) {
  const float c = static_cast<float>(std::sqrt(2.0 / M_PI));
#ifdef DITPOC_SIMD_MATH
  // 0.5·u·(1 + tanh(y)) = u / (1 + e^(−2y)), y = c·(u + 0.044715·u³), 8 lanes at a time; a
  // short last group goes through a padded copy, so each value is computed the same way.
  auto gelu8 = [c](__m256 u) {
    const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), _mm256_mul_ps(u, u)), u, u);
    const __m256 e = simd::exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f * c), inner));
    return _mm256_div_ps(u, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  };
  const int64_t groups = (n + 7) / 8;
  rows_parallel(pool, groups, 64, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g) {
      float* p = x + 8 * g;
      if (8 * g + 8 <= n) {
        _mm256_storeu_ps(p, gelu8(_mm256_loadu_ps(p)));
      } else {
        float tmp[8] = {0};
        const int64_t left = n - 8 * g;
        for (int64_t i = 0; i < left; ++i) tmp[i] = p[i];
        _mm256_storeu_ps(tmp, gelu8(_mm256_loadu_ps(tmp)));
        for (int64_t i = 0; i < left; ++i) p[i] = tmp[i];
      }
    }
  });
#else
  rows_parallel(pool, n, 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float u = x[i];
      x[i] = 0.5f * u * (1.0f + std::tanh(c * (u + 0.044715f * u * u * u)));
    }
  });
#endif
}

void silu_inplace(float* x, int64_t n, ThreadPool& pool) {
  rows_parallel(pool, n, 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i]));
  });
}

void residual_add(float* x, const float* y, const float* gate, int64_t gate_stride, int64_t rows,
                  int dim, int64_t rows_per_group, ThreadPool& pool) {
  rows_parallel(pool, rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* xr = x + r * dim;
      const float* yr = y + r * dim;
      if (gate) {
        const float* gr = gate + (r / rows_per_group) * gate_stride;
        for (int i = 0; i < dim; ++i) xr[i] += yr[i] * gr[i];
      } else {
        for (int i = 0; i < dim; ++i) xr[i] += yr[i];
      }
    }
  });
}

void reflect_rows(float* x, int64_t rows, int dim, const float* w, ThreadPool& pool) {
  rows_parallel(pool, rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* xr = x + r * dim;
      double d = 0;
      for (int i = 0; i < dim; ++i) d += double(w[i]) * xr[i];
      const float two_d = static_cast<float>(2.0 * d);
      for (int i = 0; i < dim; ++i) xr[i] -= two_d * w[i];
    }
  });
}

void timestep_sinusoid(int timestep, int freq_dim, float* out) {
  const int half = freq_dim / 2;
  for (int i = 0; i < half; ++i) {
    const double a = timestep * std::pow(10000.0, -static_cast<double>(i) / half);
    out[i] = static_cast<float>(std::cos(a));
    out[half + i] = static_cast<float>(std::sin(a));
  }
}

}  // namespace ditpoc::cpu
