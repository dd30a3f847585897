// simd_math.h's algorithms on AVX-512 vectors (16 lanes), for translation units compiled with
// the AVX-512 flags (CMakeLists.txt) and called only where the CPU has them. Each operation is
// the 8-lane one's 16-lane twin (the same IEEE operation, masks instead of mask vectors), so a
// lane's result is the same bits on either width (native/tests/test_simd_math.cpp).
#pragma once
#include "simd_math.h"

#if defined(DITPOC_SIMD_MATH) && defined(__AVX512F__) && defined(__AVX512DQ__)
#define DITPOC_SIMD_MATH_AVX512 1

namespace ditpoc::simd {

struct V16 {
  using F = __m512;
  using I = __m512i;
  using M = __mmask16;
  static F set(float v) { return _mm512_set1_ps(v); }
  static I seti(int v) { return _mm512_set1_epi32(v); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F fxor(F a, F b) { return _mm512_xor_ps(a, b); }
  static F round_nearest(F x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static I to_int(F x) { return _mm512_cvtps_epi32(x); }
  static F to_float(I x) { return _mm512_cvtepi32_ps(x); }
  static F as_float(I x) { return _mm512_castsi512_ps(x); }
  static I as_int(F x) { return _mm512_castps_si512(x); }
  static I iadd(I a, I b) { return _mm512_add_epi32(a, b); }
  static I isub(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I imul(I a, I b) { return _mm512_mullo_epi32(a, b); }
  static I iand(I a, I b) { return _mm512_and_si512(a, b); }
  static I ior(I a, I b) { return _mm512_or_si512(a, b); }
  static I ixor(I a, I b) { return _mm512_xor_si512(a, b); }
  template <int N> static I srli(I x) { return _mm512_srli_epi32(x, N); }
  template <int N> static I slli(I x) { return _mm512_slli_epi32(x, N); }
  template <int N> static I srai(I x) { return _mm512_srai_epi32(x, N); }
  static M less(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M unordered(F a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static M int_equal(I a, I b) { return _mm512_cmpeq_epi32_mask(a, b); }
  // m ? b : a, lane by lane.
  static F select(M m, F a, F b) { return _mm512_mask_blend_ps(m, a, b); }
  // m ? x : 0, lane by lane.
  static F keep(M m, F x) { return _mm512_maskz_mov_ps(m, x); }
  static I keep_int(M m, I x) { return _mm512_maskz_mov_epi32(m, x); }
};

}  // namespace ditpoc::simd
#endif
