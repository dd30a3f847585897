// Vectorised transcendentals with fixed algorithms, for the engine's element-wise hot loops:
// Box–Muller (log, sin, cos), GELU and softmax (exp). Each lane's result depends only on its own
// input (no lane mixing, no reassociation), so a value never depends on where it sits in a
// vector, a chunk or a batch. The algorithms are written once over a vector type V (V8: AVX2 +
// FMA, 8 lanes, here; V16: AVX-512, 16 lanes, simd_math_avx512.h), and both widths run the same
// IEEE operations in the same order, so every lane gets the same bits on every x86-64 machine,
// whichever width it runs. Accuracy: about 1–3 ulp over the ranges documented per function,
// plenty for the SPEC §2 conformance tolerance (1e-5 relative).
//
// V8 is only compiled into baseline translation units (never into the per-ISA GEMM files), so
// these inline functions are built for one instruction set only.
#pragma once
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#define DITPOC_SIMD_MATH 1

namespace ditpoc::simd {

// e^x for x in [-87.3, 88.7] (inputs are clamped to it: e^-87.3 ≈ 1.2e-38, so results never
// go subnormal, and no overflow). NaN propagates.
template <class V>
inline typename V::F exp_v(typename V::F x0) {
  using F = typename V::F;
  const auto nan_mask = V::unordered(x0);
  const F x = V::max(V::min(x0, V::set(88.7f)), V::set(-87.3f));
  // x = n·ln2 + r, |r| <= ln2/2, with ln2 split in two for an exact n·ln2_hi.
  const F n = V::round_nearest(V::mul(x, V::set(1.44269504088896341f)));
  F r = V::fnmadd(n, V::set(0.693359375f), x);
  r = V::fnmadd(n, V::set(-2.12194440e-4f), r);
  // e^r: Cephes expf polynomial.
  F p = V::set(1.9875691500e-4f);
  p = V::fmadd(p, r, V::set(1.3981999507e-3f));
  p = V::fmadd(p, r, V::set(8.3334519073e-3f));
  p = V::fmadd(p, r, V::set(4.1665795894e-2f));
  p = V::fmadd(p, r, V::set(1.6666665459e-1f));
  p = V::fmadd(p, r, V::set(5.0000001201e-1f));
  const F r2 = V::mul(r, r);
  p = V::fmadd(p, r2, V::add(r, V::set(1.0f)));
  // · 2^n through the exponent field (n in [-126, 128]: split in two factors to stay normal).
  const auto ni = V::to_int(n);
  const auto n1 = V::template srai<1>(ni), n2 = V::isub(ni, n1);
  const F s1 = V::as_float(V::template slli<23>(V::iadd(n1, V::seti(127))));
  const F s2 = V::as_float(V::template slli<23>(V::iadd(n2, V::seti(127))));
  const F y = V::mul(V::mul(p, s1), s2);
  return V::select(nan_mask, y, x0);
}

// ln x for positive normal x (the Box–Muller u1 in [1e-10, 1)).
template <class V>
inline typename V::F log_v(typename V::F x) {
  using F = typename V::F;
  // x = m · 2^e with m in [sqrt(1/2), sqrt(2)).
  const auto xi = V::as_int(x);
  auto e = V::isub(V::template srli<23>(xi), V::seti(126));
  F m = V::as_float(V::ior(V::iand(xi, V::seti(0x007fffff)), V::seti(0x3f000000)));  // [0.5, 1)
  const auto small = V::less(m, V::set(0.707106781186547524f));
  e = V::isub(e, V::keep_int(small, V::seti(1)));
  m = V::add(m, V::keep(small, m));  // m < sqrt(1/2): 2m
  const F f = V::sub(m, V::set(1.0f));
  // ln(1 + f): Cephes logf polynomial.
  F p = V::set(7.0376836292e-2f);
  p = V::fmadd(p, f, V::set(-1.1514610310e-1f));
  p = V::fmadd(p, f, V::set(1.1676998740e-1f));
  p = V::fmadd(p, f, V::set(-1.2420140846e-1f));
  p = V::fmadd(p, f, V::set(1.4249322787e-1f));
  p = V::fmadd(p, f, V::set(-1.6668057665e-1f));
  p = V::fmadd(p, f, V::set(2.0000714765e-1f));
  p = V::fmadd(p, f, V::set(-2.4999993993e-1f));
  p = V::fmadd(p, f, V::set(3.3333331174e-1f));
  const F f2 = V::mul(f, f);
  F y = V::mul(V::mul(p, f), f2);
  const F ef = V::to_float(e);
  y = V::fmadd(ef, V::set(-2.12194440e-4f), y);
  y = V::fnmadd(f2, V::set(0.5f), y);
  return V::fmadd(ef, V::set(0.693359375f), V::add(f, y));
}

// sin and cos of x for x in [0, 2π] (the Box–Muller angle; accurate well beyond that range).
template <class V>
inline void sincos_v(typename V::F x, typename V::F* s, typename V::F* c) {
  using F = typename V::F;
  // x = j·π/2 + r, |r| <= π/4, π/2 split in three (Cody–Waite).
  const F j = V::round_nearest(V::mul(x, V::set(0.636619772367581343f)));
  F r = V::fnmadd(j, V::set(1.5703125f), x);
  r = V::fnmadd(j, V::set(4.837512969970703125e-4f), r);
  r = V::fnmadd(j, V::set(7.549789948768648e-8f), r);
  const F r2 = V::mul(r, r);
  // sin r, cos r on [-π/4, π/4]: Cephes sinf/cosf polynomials.
  F ps = V::set(-1.9515295891e-4f);
  ps = V::fmadd(ps, r2, V::set(8.3321608736e-3f));
  ps = V::fmadd(ps, r2, V::set(-1.6666654611e-1f));
  ps = V::fmadd(V::mul(ps, r2), r, r);
  F pc = V::set(2.443315711809948e-5f);
  pc = V::fmadd(pc, r2, V::set(-1.388731625493765e-3f));
  pc = V::fmadd(pc, r2, V::set(4.166664568298827e-2f));
  pc = V::mul(V::mul(pc, r2), r2);
  pc = V::add(V::fnmadd(r2, V::set(0.5f), pc), V::set(1.0f));
  // Quadrant q = j mod 4: (sin, cos) = (s, c), (c, −s), (−s, −c), (−c, s).
  const auto q = V::to_int(j);
  const auto swap = V::int_equal(V::iand(q, V::seti(1)), V::seti(1));
  const F sin_neg = V::as_float(V::template slli<30>(V::iand(q, V::seti(2))));
  const F cos_neg = V::as_float(V::template slli<30>(V::iand(V::iadd(q, V::seti(1)), V::seti(2))));
  *s = V::fxor(V::select(swap, ps, pc), sin_neg);
  *c = V::fxor(V::select(swap, pc, ps), cos_neg);
}

// MurmurHash3 (murmur.h's mm) of a vector of keys with one seed.
template <class V>
inline typename V::I mm_v(typename V::I key, uint32_t seed) {
  using I = typename V::I;
  auto rotl = [](I v, auto r) {
    constexpr int n = decltype(r)::value;
    return V::ior(V::template slli<n>(v), V::template srli<32 - n>(v));
  };
  I k = V::imul(key, V::seti(static_cast<int>(0xcc9e2d51u)));
  k = V::imul(rotl(k, std::integral_constant<int, 15>{}), V::seti(0x1b873593));
  I h = rotl(V::ixor(V::seti(static_cast<int>(seed)), k), std::integral_constant<int, 13>{});
  h = V::iadd(V::imul(h, V::seti(5)), V::seti(static_cast<int>(0xe6546b64u)));
  h = V::ixor(h, V::template srli<16>(h));
  h = V::imul(h, V::seti(static_cast<int>(0x85ebca6bu)));
  h = V::ixor(h, V::template srli<13>(h));
  h = V::imul(h, V::seti(static_cast<int>(0xc2b2ae35u)));
  return V::ixor(h, V::template srli<16>(h));
}

// murmur.h's uniform_at for a vector of indices: the uint32 → float conversion rounds once (to
// nearest even) as the scalar cast does: hi·2^16 + lo is exact before the fused add rounds it.
template <class V>
inline typename V::F uniform_v(uint32_t seed, typename V::I index) {
  const auto h = mm_v<V>(index, seed);
  const auto hi = V::to_float(V::template srli<16>(h));
  const auto lo = V::to_float(V::iand(h, V::seti(0xffff)));
  return V::mul(V::fmadd(hi, V::set(65536.0f), lo), V::set(1.0f / 4294967296.0f));
}

// AVX2 + FMA, 8 lanes. Masks are vectors of all-ones or all-zero lanes.
struct V8 {
  using F = __m256;
  using I = __m256i;
  using M = __m256;
  static F set(float v) { return _mm256_set1_ps(v); }
  static I seti(int v) { return _mm256_set1_epi32(v); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F fxor(F a, F b) { return _mm256_xor_ps(a, b); }
  static F round_nearest(F x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static I to_int(F x) { return _mm256_cvtps_epi32(x); }
  static F to_float(I x) { return _mm256_cvtepi32_ps(x); }
  static F as_float(I x) { return _mm256_castsi256_ps(x); }
  static I as_int(F x) { return _mm256_castps_si256(x); }
  static I iadd(I a, I b) { return _mm256_add_epi32(a, b); }
  static I isub(I a, I b) { return _mm256_sub_epi32(a, b); }
  static I imul(I a, I b) { return _mm256_mullo_epi32(a, b); }
  static I iand(I a, I b) { return _mm256_and_si256(a, b); }
  static I ior(I a, I b) { return _mm256_or_si256(a, b); }
  static I ixor(I a, I b) { return _mm256_xor_si256(a, b); }
  template <int N> static I srli(I x) { return _mm256_srli_epi32(x, N); }
  template <int N> static I slli(I x) { return _mm256_slli_epi32(x, N); }
  template <int N> static I srai(I x) { return _mm256_srai_epi32(x, N); }
  static M less(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M unordered(F a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
  static M int_equal(I a, I b) { return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b)); }
  // m ? b : a, lane by lane.
  static F select(M m, F a, F b) { return _mm256_blendv_ps(a, b, m); }
  // m ? x : 0, lane by lane.
  static F keep(M m, F x) { return _mm256_and_ps(m, x); }
  static I keep_int(M m, I x) { return _mm256_and_si256(_mm256_castps_si256(m), x); }
};

inline __m256 exp8(__m256 x) { return exp_v<V8>(x); }
inline __m256 log8(__m256 x) { return log_v<V8>(x); }
inline void sincos8(__m256 x, __m256* s, __m256* c) { sincos_v<V8>(x, s, c); }
inline __m256i mm8(__m256i key, uint32_t seed) { return mm_v<V8>(key, seed); }
inline __m256 uniform8(uint32_t seed, __m256i index) { return uniform_v<V8>(seed, index); }

}  // namespace ditpoc::simd
#endif
