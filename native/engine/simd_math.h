// Vectorised transcendentals with fixed algorithms (AVX2 + FMA, 8 lanes), for the engine's
// element-wise hot loops: Box–Muller (log, sin, cos), GELU and softmax (exp). Each lane's result
// depends only on its own input (no lane mixing, no reassociation), so a value never depends on
// where it sits in a vector, a chunk or a batch; and, being explicit intrinsics in baseline code,
// the same on every x86-64 machine. Accuracy: about 1–3 ulp over the ranges documented per
// function, plenty for the SPEC §2 conformance tolerance (1e-5 relative).
//
// Only compiled into baseline translation units (never into the per-ISA GEMM files), so these
// inline functions are built for one instruction set only.
#pragma once
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <cstdint>

#define DITPOC_SIMD_MATH 1

namespace ditpoc::simd {

// e^x for x in [-87.3, 88.7] (inputs are clamped to it: e^-87.3 ≈ 1.2e-38, so results never
// go subnormal, and no overflow). NaN propagates.
inline __m256 exp8(__m256 x0) {
  const __m256 hi = _mm256_set1_ps(88.7f), lo = _mm256_set1_ps(-87.3f);
  const __m256 nan_mask = _mm256_cmp_ps(x0, x0, _CMP_UNORD_Q);
  const __m256 x = _mm256_max_ps(_mm256_min_ps(x0, hi), lo);
  // x = n·ln2 + r, |r| <= ln2/2, with ln2 split in two for an exact n·ln2_hi.
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  // e^r: Cephes expf polynomial.
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // · 2^n through the exponent field (n in [-126, 128]: split in two factors to stay normal).
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  return _mm256_blendv_ps(y, x0, nan_mask);
}

// ln x for positive normal x (the Box–Muller u1 in [1e-10, 1)).
inline __m256 log8(__m256 x) {
  // x = m · 2^e with m in [sqrt(1/2), sqrt(2)).
  const __m256i xi = _mm256_castps_si256(x);
  __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(126));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(xi, _mm256_set1_epi32(0x007fffff)),
                                                 _mm256_set1_epi32(0x3f000000)));  // [0.5, 1)
  const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_sub_epi32(e, _mm256_and_si256(_mm256_castps_si256(small), _mm256_set1_epi32(1)));
  m = _mm256_add_ps(m, _mm256_and_ps(small, m));  // m < sqrt(1/2): 2m
  const __m256 f = _mm256_sub_ps(m, _mm256_set1_ps(1.0f));
  // ln(1 + f): Cephes logf polynomial.
  __m256 p = _mm256_set1_ps(7.0376836292e-2f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.1514610310e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.1676998740e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.2420140846e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.4249322787e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-1.6668057665e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.0000714765e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(-2.4999993993e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(3.3333331174e-1f));
  const __m256 f2 = _mm256_mul_ps(f, f);
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, f), f2);
  const __m256 ef = _mm256_cvtepi32_ps(e);
  y = _mm256_fmadd_ps(ef, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(f2, _mm256_set1_ps(0.5f), y);
  return _mm256_fmadd_ps(ef, _mm256_set1_ps(0.693359375f), _mm256_add_ps(f, y));
}

// sin and cos of x for x in [0, 2π] (the Box–Muller angle; accurate well beyond that range).
inline void sincos8(__m256 x, __m256* s, __m256* c) {
  // x = j·π/2 + r, |r| <= π/4, π/2 split in three (Cody–Waite).
  const __m256 j = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.636619772367581343f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(j, _mm256_set1_ps(1.5703125f), x);
  r = _mm256_fnmadd_ps(j, _mm256_set1_ps(4.837512969970703125e-4f), r);
  r = _mm256_fnmadd_ps(j, _mm256_set1_ps(7.549789948768648e-8f), r);
  const __m256 r2 = _mm256_mul_ps(r, r);
  // sin r, cos r on [-π/4, π/4]: Cephes sinf/cosf polynomials.
  __m256 ps = _mm256_set1_ps(-1.9515295891e-4f);
  ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(8.3321608736e-3f));
  ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(-1.6666654611e-1f));
  ps = _mm256_fmadd_ps(_mm256_mul_ps(ps, r2), r, r);
  __m256 pc = _mm256_set1_ps(2.443315711809948e-5f);
  pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(-1.388731625493765e-3f));
  pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(4.166664568298827e-2f));
  pc = _mm256_mul_ps(_mm256_mul_ps(pc, r2), r2);
  pc = _mm256_add_ps(_mm256_fnmadd_ps(r2, _mm256_set1_ps(0.5f), pc), _mm256_set1_ps(1.0f));
  // Quadrant q = j mod 4: (sin, cos) = (s, c), (c, −s), (−s, −c), (−c, s).
  const __m256i q = _mm256_cvtps_epi32(j);
  const __m256 swap = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(q, _mm256_set1_epi32(1)), _mm256_set1_epi32(1)));
  const __m256 sin_neg = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(q, _mm256_set1_epi32(2)), 30));
  const __m256 cos_neg = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_and_si256(_mm256_add_epi32(q, _mm256_set1_epi32(1)), _mm256_set1_epi32(2)), 30));
  *s = _mm256_xor_ps(_mm256_blendv_ps(ps, pc, swap), sin_neg);
  *c = _mm256_xor_ps(_mm256_blendv_ps(pc, ps, swap), cos_neg);
}

// MurmurHash3 (murmur.h's mm) of 8 keys with one seed.
inline __m256i mm8(__m256i key, uint32_t seed) {
  auto rotl = [](__m256i v, int r) { return _mm256_or_si256(_mm256_slli_epi32(v, r), _mm256_srli_epi32(v, 32 - r)); };
  __m256i k = _mm256_mullo_epi32(key, _mm256_set1_epi32(static_cast<int>(0xcc9e2d51u)));
  k = _mm256_mullo_epi32(rotl(k, 15), _mm256_set1_epi32(0x1b873593));
  __m256i h = rotl(_mm256_xor_si256(_mm256_set1_epi32(static_cast<int>(seed)), k), 13);
  h = _mm256_add_epi32(_mm256_mullo_epi32(h, _mm256_set1_epi32(5)), _mm256_set1_epi32(static_cast<int>(0xe6546b64u)));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32(static_cast<int>(0x85ebca6bu)));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32(static_cast<int>(0xc2b2ae35u)));
  return _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
}

// murmur.h's uniform_at for 8 indices: the uint32 → float conversion rounds once (to nearest
// even) as the scalar cast does: hi·2^16 + lo is exact before the fused add rounds it.
inline __m256 uniform8(uint32_t seed, __m256i index) {
  const __m256i h = mm8(index, seed);
  const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(h, 16));
  const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(h, _mm256_set1_epi32(0xffff)));
  return _mm256_mul_ps(_mm256_fmadd_ps(hi, _mm256_set1_ps(65536.0f), lo), _mm256_set1_ps(1.0f / 4294967296.0f));
}

}  // namespace ditpoc::simd
#endif
