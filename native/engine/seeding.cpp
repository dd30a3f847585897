#include "seeding.h"

#include <algorithm>
#include <cmath>

#include "cpu/cpu_isa.h"
#include "seeding_kernels.h"
#include "sha256.h"
#include "simd_math.h"

namespace ditpoc {

uint32_t seed32(const std::string& s) {
  const auto d = sha256(s);
  return (uint32_t(d[0]) << 24) | (uint32_t(d[1]) << 16) | (uint32_t(d[2]) << 8) | uint32_t(d[3]);
}

std::array<uint32_t, 8> sha256_words(const std::string& s) {
  const auto d = sha256(s);
  std::array<uint32_t, 8> w;
  for (int i = 0; i < 8; ++i)
    w[i] = (uint32_t(d[4 * i]) << 24) | (uint32_t(d[4 * i + 1]) << 16) |
           (uint32_t(d[4 * i + 2]) << 8) | uint32_t(d[4 * i + 3]);
  return w;
}

void uniform(uint32_t seed, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = uniform_at(seed, static_cast<uint32_t>(i));
}

#ifdef DITPOC_SIMD_MATH
void seeding_detail::normal_pairs_avx2(uint32_t seed, int64_t n, int64_t m, int64_t begin, int64_t end, float* out) {
  const float two_pi = static_cast<float>(2.0 * M_PI);
  // The last lanes of a short group are computed and not stored, so every value is the same
  // whatever the group it falls in.
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t i = begin; i < end; i += 8) {
    const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(i)), lane);
    const __m256 u1 = _mm256_max_ps(simd::uniform8(seed, idx), _mm256_set1_ps(1e-10f));
    const __m256 u2 = simd::uniform8(seed, _mm256_add_epi32(idx, _mm256_set1_epi32(static_cast<int>(m))));
    const __m256 r = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), simd::log8(u1)));
    __m256 s, c;
    simd::sincos8(_mm256_mul_ps(_mm256_set1_ps(two_pi), u2), &s, &c);
    const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(end - i, 8))), lane);
    const __m256i valid_sin = _mm256_and_si256(valid, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::clamp<int64_t>(n - m - i, 0, 8))), lane));
    _mm256_maskstore_ps(out + i, valid, _mm256_mul_ps(r, c));
    _mm256_maskstore_ps(out + m + i, valid_sin, _mm256_mul_ps(r, s));
  }
}
#endif

namespace {

// Box–Muller pairs [begin, end) of N(seed, n) with m = ceil(n/2): pair i writes out[i] (cos)
// and out[m + i] (sin) when m + i < n. float32 throughout, as Gonka's torch code; on x86 the
// vector loops of seeding_kernels.h, 16 pairs at a time where the CPU path has AVX-512.
void normal_pairs(uint32_t seed, int64_t n, int64_t m, int64_t begin, int64_t end, float* out) {
#ifdef DITPOC_SIMD_MATH
  if (cpu::active_isa() >= cpu::Isa::Avx512) seeding_detail::normal_pairs_avx512(seed, n, m, begin, end, out);
  else seeding_detail::normal_pairs_avx2(seed, n, m, begin, end, out);
#else
  const float two_pi = static_cast<float>(2.0 * M_PI);
  for (int64_t i = begin; i < end; ++i) {
    const float u1 = std::max(uniform_at(seed, static_cast<uint32_t>(i)), 1e-10f);
    const float u2 = uniform_at(seed, static_cast<uint32_t>(m + i));
    const float r = std::sqrt(-2.0f * std::log(u1));
    const float theta = two_pi * u2;
    out[i] = r * std::cos(theta);
    if (m + i < n) out[m + i] = r * std::sin(theta);
  }
#endif
}

}  // namespace

void normal(uint32_t seed, int64_t n, float* out, ThreadPool* pool) {
  if (n <= 0) return;
  const int64_t m = (n + 1) / 2;
  if (!pool || m < (1 << 12)) {
    normal_pairs(seed, n, m, 0, m, out);
    return;
  }
  pool->parallel_for(m, [&](int64_t b, int64_t e) { normal_pairs(seed, n, m, b, e, out); });
}

void normal8(const std::array<uint32_t, 8>& words, int64_t n, float* out, ThreadPool* pool) {
  const int64_t seg = (n + 7) / 8;
  for (int t = 0; t < 8 && t * seg < n; ++t)
    normal(words[t], std::min(seg, n - t * seg), out + t * seg, pool);
}

std::vector<float> householder_vector(uint32_t seed, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  normal(seed, n, w.data());
  double ss = 0;
  for (float v : w) ss += double(v) * v;
  const float inv = static_cast<float>(1.0 / std::sqrt(ss));
  for (float& v : w) v *= inv;
  return w;
}

}  // namespace ditpoc
