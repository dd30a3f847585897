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

namespace {

// Dot product of two head vectors with 16 independent fp32 lanes reduced in a fixed order:
// vectorises without -ffast-math and gives the same bits everywhere it is called.
inline float dot_lanes(const float* a, const float* b, int n) {
  float acc[16] = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) acc[l] += a[i + l] * b[i + l];
  for (; i < n; ++i) acc[i & 15] += a[i] * b[i];
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

}  // namespace

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

#ifdef DITPOC_SIMD_MATH
namespace {

// Blocked attention, the CPU twin of kernels/attention.cu (FlashAttention-2 style): a work item
// is QB query rows of one (group, head); it streams the keys and values in tiles of KB rows,
// computes the tile's fp32 scores S = q·kᵀ·scale, updates each row's running max m and sum l
// (online softmax; p = e^(s − m) with simd::exp8), rescales the output accumulator O by
// e^(m_old − m_new) and adds P·V (P rounded to bf16 first for Bf16Flash; the row sum uses the
// unrounded p, as on the GPU). Epilogue O / l. Every row's arithmetic is a fixed sequence over
// the key tiles in order, independent of the other rows of its item, of the item split and of
// the thread, so bits do not depend on batch, position or thread count. head_dim % 32 == 0.
constexpr int64_t QB = 16, KB = 64;

struct AttentionScratch {
  alignas(32) float kt[128 * KB];     // the key tile transposed: kt[d * KB + j]
  alignas(32) float s[QB * KB];       // scores, then probabilities
  alignas(32) float pv[QB * KB];      // probabilities used in P·V (bf16-rounded for flash)
  alignas(32) float o[QB * 128];      // output accumulators
  alignas(32) float qpad[QB * 128];   // query rows of a short last block, zero-padded
  float m[QB], l[QB];
};

inline float hmax8(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
inline float hsum8(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// Scores of rows [r0, r0 + 4) x the KB keys of the tile: s[r][j] = (Σ_d q[r][d]·kt[d][j]) · scale,
// fma over d in order.
inline void scores_4xkb(const float* const* qrow, int hd, const float* kt, float scale, float* s) {
  for (int j0 = 0; j0 < KB; j0 += 16) {
    __m256 acc[4][2];
    for (int r = 0; r < 4; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int d = 0; d < hd; ++d) {
      const __m256 k0 = _mm256_load_ps(kt + d * KB + j0), k1 = _mm256_load_ps(kt + d * KB + j0 + 8);
      for (int r = 0; r < 4; ++r) {
        const __m256 qv = _mm256_broadcast_ss(qrow[r] + d);
        acc[r][0] = _mm256_fmadd_ps(qv, k0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(qv, k1, acc[r][1]);
      }
    }
    const __m256 sc = _mm256_set1_ps(scale);
    for (int r = 0; r < 4; ++r) {
      _mm256_store_ps(s + r * KB + j0, _mm256_mul_ps(acc[r][0], sc));
      _mm256_store_ps(s + r * KB + j0 + 8, _mm256_mul_ps(acc[r][1], sc));
    }
  }
}

// o[r][:] += Σ_j p[r][j] · v[j][:] for rows r0, r0 + 1, fma over the tile's keys in order.
inline void pv_2rows(const float* p, const float* vt, int64_t vstride, int kn, int hd, float* o) {
  for (int d0 = 0; d0 < hd; d0 += 32) {
    __m256 acc[2][4];
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_load_ps(o + r * 128 + d0 + 8 * c);
    for (int j = 0; j < kn; ++j) {
      const float* vj = vt + j * vstride + d0;
      const __m256 v0 = _mm256_loadu_ps(vj), v1 = _mm256_loadu_ps(vj + 8), v2 = _mm256_loadu_ps(vj + 16),
                   v3 = _mm256_loadu_ps(vj + 24);
      for (int r = 0; r < 2; ++r) {
        const __m256 pr = _mm256_broadcast_ss(p + r * KB + j);
        acc[r][0] = _mm256_fmadd_ps(pr, v0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(pr, v1, acc[r][1]);
        acc[r][2] = _mm256_fmadd_ps(pr, v2, acc[r][2]);
        acc[r][3] = _mm256_fmadd_ps(pr, v3, acc[r][3]);
      }
    }
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 4; ++c) _mm256_store_ps(o + r * 128 + d0 + 8 * c, acc[r][c]);
  }
}

void attention_item(const float* qg, const float* kg, const float* vg, int64_t width, int64_t rows,
                    int64_t lk, int hd, float scale, bool round_p, float* og, AttentionScratch& w) {
  const float* qrow[QB];
  for (int64_t r = 0; r < QB; ++r) {
    if (r < rows) {
      qrow[r] = qg + r * width;
    } else {  // padding rows: computed like the others, never stored
      std::fill(w.qpad + r * 128, w.qpad + r * 128 + hd, 0.0f);
      qrow[r] = w.qpad + r * 128;
    }
    w.m[r] = -INFINITY;
    w.l[r] = 0.0f;
    std::fill(w.o + r * 128, w.o + r * 128 + hd, 0.0f);
  }
  for (int64_t j0 = 0; j0 < lk; j0 += KB) {
    const int kn = static_cast<int>(std::min<int64_t>(KB, lk - j0));
    for (int j = 0; j < KB; ++j) {
      const float* kj = kg + (j0 + j) * width;
      for (int d = 0; d < hd; ++d) w.kt[d * KB + j] = j < kn ? kj[d] : 0.0f;
    }
    for (int64_t r = 0; r < QB; r += 4) scores_4xkb(qrow + r, hd, w.kt, scale, w.s + r * KB);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t r = 0; r < QB; ++r) {
      float* sr = w.s + r * KB;
      // Running max over this tile's valid keys.
      __m256 mx = _mm256_set1_ps(-INFINITY);
      for (int j = 0; j < KB; j += 8) {
        const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(kn - j), lane));
        mx = _mm256_max_ps(mx, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_load_ps(sr + j), valid));
      }
      const float m_new = std::max(w.m[r], hmax8(mx));
      const float corr = w.m[r] == -INFINITY ? 0.0f : _mm256_cvtss_f32(simd::exp8(_mm256_set1_ps(w.m[r] - m_new)));
      w.m[r] = m_new;
      __m256 sum = _mm256_setzero_ps();
      for (int j = 0; j < KB; j += 8) {
        const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(kn - j), lane));
        const __m256 p = _mm256_and_ps(simd::exp8(_mm256_sub_ps(_mm256_load_ps(sr + j), _mm256_set1_ps(m_new))), valid);
        sum = _mm256_add_ps(sum, p);
        __m256 pp = p;
        if (round_p) {  // bf16, round to nearest even (p is finite and non-negative)
          const __m256i u = _mm256_castps_si256(p);
          const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
          pp = _mm256_castsi256_ps(_mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)),
                                                    _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
        }
        _mm256_store_ps(w.pv + r * KB + j, pp);
      }
      w.l[r] = w.l[r] * corr + hsum8(sum);
      float* orow = w.o + r * 128;
      const __m256 c = _mm256_set1_ps(corr);
      for (int d = 0; d < hd; d += 8) _mm256_store_ps(orow + d, _mm256_mul_ps(_mm256_load_ps(orow + d), c));
    }
    for (int64_t r = 0; r < QB; r += 2) pv_2rows(w.pv + r * KB, vg + j0 * width, width, kn, hd, w.o + r * 128);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const __m256 inv = _mm256_set1_ps(1.0f / w.l[r]);
    for (int d = 0; d < hd; d += 8)
      _mm256_storeu_ps(og + r * width + d, _mm256_mul_ps(_mm256_load_ps(w.o + r * 128 + d), inv));
  }
}

}  // namespace
#endif

void attention(const float* q, const float* k, const float* v, int64_t groups, int64_t lq,
               int64_t lk, int heads, int head_dim, float* out, ThreadPool& pool,
               bool round_p_bf16) {
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
#ifdef DITPOC_SIMD_MATH
  if (head_dim % 32 == 0 && head_dim <= 128 && lk > 0) {
    const int64_t q_blocks = (lq + QB - 1) / QB;
    pool.parallel_for(groups * heads * q_blocks, [&](int64_t b, int64_t e) {
      auto w = std::make_unique<AttentionScratch>();
      for (int64_t it = b; it < e; ++it) {
        const int64_t g = it / (heads * q_blocks);
        const int h = static_cast<int>((it / q_blocks) % heads);
        const int64_t i0 = (it % q_blocks) * QB;
        const int64_t off = static_cast<int64_t>(h) * head_dim;
        attention_item(q + (g * lq + i0) * width + off, k + g * lk * width + off, v + g * lk * width + off,
                       width, std::min(QB, lq - i0), lk, head_dim, scale, round_p_bf16,
                       out + (g * lq + i0) * width + off, *w);
      }
    });
    return;
  }
#endif
  // One work item = (group, head, block of queries); each query row is computed wholly by one
  // thread.
  const int64_t q_block = 16;
  const int64_t q_blocks = (lq + q_block - 1) / q_block;
  const int64_t items = groups * heads * q_blocks;
  pool.parallel_for(items, [&](int64_t b, int64_t e) {
    std::vector<float> p(static_cast<size_t>(lk));
    std::vector<float> acc(static_cast<size_t>(head_dim));
    for (int64_t it = b; it < e; ++it) {
      const int64_t g = it / (heads * q_blocks);
      const int h = static_cast<int>((it / q_blocks) % heads);
      const int64_t qb = it % q_blocks;
      const float* kg = k + g * lk * width + static_cast<int64_t>(h) * head_dim;
      const float* vg = v + g * lk * width + static_cast<int64_t>(h) * head_dim;
      for (int64_t i = qb * q_block; i < std::min(lq, (qb + 1) * q_block); ++i) {
        const float* qi = q + (g * lq + i) * width + static_cast<int64_t>(h) * head_dim;
        float m = -INFINITY;
        for (int64_t j = 0; j < lk; ++j) {
          p[j] = dot_lanes(qi, kg + j * width, head_dim) * scale;
          m = std::max(m, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < lk; ++j) {
          p[j] = std::exp(p[j] - m);
          sum += p[j];
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j = 0; j < lk; ++j) {
          const float pj = round_p_bf16 ? round_bf16(p[j]) : p[j];
          const float* vj = vg + j * width;
          for (int d = 0; d < head_dim; ++d) acc[d] += pj * vj[d];
        }
        const float inv = static_cast<float>(1.0 / sum);
        float* o = out + (g * lq + i) * width + static_cast<int64_t>(h) * head_dim;
        for (int d = 0; d < head_dim; ++d) o[d] = acc[d] * inv;
      }
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
