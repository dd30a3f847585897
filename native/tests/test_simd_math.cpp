// Tests of the vectorised transcendentals (native/engine/simd_math.h) against float64 libm on
// random inputs over the ranges the engine uses, plus the murmur/uniform twins bit for bit.
#include <cmath>
#include <cstdio>
#include <random>

#include "check.h"
#include "murmur.h"
#include "simd_math.h"

#ifdef DITPOC_SIMD_MATH
namespace {

std::mt19937 rng(99);

// Largest error in units of the float spacing at the reference value (ulp of |ref|, floored at
// `floor` so that values near zero are judged against an absolute scale).
template <class F, class R>
double max_ulps(float lo, float hi, int count, F f, R ref, double floor) {
  std::uniform_real_distribution<float> d(lo, hi);
  double worst = 0;
  for (int i = 0; i < count; i += 8) {
    alignas(32) float in[8], out[8];
    for (float& v : in) v = d(rng);
    _mm256_store_ps(out, f(_mm256_load_ps(in)));
    for (int l = 0; l < 8; ++l) {
      const double r = ref(static_cast<double>(in[l]));
      const double ulp = std::ldexp(1.0, std::ilogb(std::max(std::fabs(r), floor)) - 23);
      worst = std::max(worst, std::fabs(out[l] - r) / ulp);
    }
  }
  return worst;
}

}  // namespace

int main() {
  using namespace ditpoc;
  const double e1 = max_ulps(-87.0f, 88.0f, 200000, simd::exp8, [](double x) { return std::exp(x); }, 0);
  const double e2 = max_ulps(-10.0f, 10.0f, 200000, simd::exp8, [](double x) { return std::exp(x); }, 0);
  std::printf("exp: max %.2f ulp on [-87, 88], %.2f on [-10, 10]\n", e1, e2);
  CHECK(e1 <= 3 && e2 <= 3);
  const double l1 = max_ulps(1e-10f, 1.0f, 200000, simd::log8, [](double x) { return std::log(x); }, 1e-3);
  const double l2 = max_ulps(0.5f, 1.0f, 200000, simd::log8, [](double x) { return std::log(x); }, 1e-3);
  std::printf("log: max %.2f ulp on [1e-10, 1), %.2f on [0.5, 1)\n", l1, l2);
  CHECK(l1 <= 3 && l2 <= 3);
  auto sin8 = [](__m256 x) { __m256 s, c; simd::sincos8(x, &s, &c); return s; };
  auto cos8 = [](__m256 x) { __m256 s, c; simd::sincos8(x, &s, &c); return c; };
  const double tp = 2 * M_PI;
  // Against |result| floored at 1: an absolute error bound of a few 2^-23 (the Box–Muller use).
  const double s1 = max_ulps(0.0f, float(tp), 200000, sin8, [](double x) { return std::sin(x); }, 1.0);
  const double c1 = max_ulps(0.0f, float(tp), 200000, cos8, [](double x) { return std::cos(x); }, 1.0);
  std::printf("sin, cos on [0, 2pi]: max %.2f, %.2f ulp(1)\n", s1, c1);
  CHECK(s1 <= 2 && c1 <= 2);
  // Special values: exp of NaN is NaN, exp of large |x| saturates without inf or subnormals.
  alignas(32) float sp[8] = {NAN, 1000.0f, -1000.0f, 0.0f, -0.0f, 1.0f, -1.0f, 88.7f}, so[8];
  _mm256_store_ps(so, simd::exp8(_mm256_load_ps(sp)));
  CHECK(std::isnan(so[0]) && std::isfinite(so[1]) && so[2] > 0 && so[3] == 1.0f && so[4] == 1.0f);
  // uniform8 equals murmur.h's scalar uniform_at bit for bit.
  int bad = 0;
  for (uint32_t seed : {0u, 1u, 0xdeadbeefu})
    for (uint32_t i = 0; i < 100000; i += 8) {
      alignas(32) float u[8];
      _mm256_store_ps(u, simd::uniform8(seed, _mm256_setr_epi32(i, i + 1, i + 2, i + 3, i + 4, i + 5, i + 6, i + 7)));
      for (uint32_t l = 0; l < 8; ++l) bad += u[l] != uniform_at(seed, i + l);
    }
  for (uint32_t i : {0xfffffff8u, 0x7ffffff8u, 0x80000000u}) {
    alignas(32) float u[8];
    _mm256_store_ps(u, simd::uniform8(7, _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))));
    for (uint32_t l = 0; l < 8; ++l) bad += u[l] != uniform_at(7, i + l);
  }
  CHECK_MSG(bad == 0, "%d uniform values differ from uniform_at", bad);
  return check::finish("test_simd_math");
}
#else
int main() {
  std::printf("test_simd_math: no SIMD math in this build (not x86-64 with AVX2), skipped\n");
  return 77;
}
#endif
