// normal_pairs on AVX-512 (seeding_kernels.h), compiled with the AVX-512 flags (CMakeLists.txt).
// GCC 12 warns about the _mm512_undefined_epi32() inside its own shift intrinsics (a false
// positive in avx512fintrin.h), hence the pragma.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <algorithm>
#include <cmath>

#include "seeding_kernels.h"
#include "simd_math_avx512.h"

#ifdef DITPOC_SIMD_MATH_AVX512
namespace ditpoc::seeding_detail {

void normal_pairs_avx512(uint32_t seed, int64_t n, int64_t m, int64_t begin, int64_t end, float* out) {
  using simd::V16;
  const float two_pi = static_cast<float>(2.0 * M_PI);
  // The last lanes of a short group are computed and not stored, as in the 8-lane loop.
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  auto first = [](int64_t count) { return static_cast<__mmask16>((1u << std::clamp<int64_t>(count, 0, 16)) - 1u); };
  for (int64_t i = begin; i < end; i += 16) {
    const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(i)), lane);
    const __m512 u1 = _mm512_max_ps(simd::uniform_v<V16>(seed, idx), _mm512_set1_ps(1e-10f));
    const __m512 u2 = simd::uniform_v<V16>(seed, _mm512_add_epi32(idx, _mm512_set1_epi32(static_cast<int>(m))));
    const __m512 r = _mm512_sqrt_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f), simd::log_v<V16>(u1)));
    __m512 s, c;
    simd::sincos_v<V16>(_mm512_mul_ps(_mm512_set1_ps(two_pi), u2), &s, &c);
    const __mmask16 valid = first(end - i);
    _mm512_mask_storeu_ps(out + i, valid, _mm512_mul_ps(r, c));
    _mm512_mask_storeu_ps(out + m + i, valid & first(n - m - i), _mm512_mul_ps(r, s));
  }
}

}  // namespace ditpoc::seeding_detail
#endif
