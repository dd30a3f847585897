// The Box–Muller fill's vector loops, one per width (seeding.cpp picks one at run time). Pair i
// of N(seed, n), m = ceil(n/2), writes out[i] (cos) and out[m + i] (sin, when m + i < n); every
// width gives the same bits (native/tests/test_seeding.cpp).
#pragma once
#include <cstdint>

namespace ditpoc::seeding_detail {

// AVX2 + FMA, 8 pairs at a time (x86 builds).
void normal_pairs_avx2(uint32_t seed, int64_t n, int64_t m, int64_t begin, int64_t end, float* out);
// AVX-512F/DQ, 16 pairs at a time (x86 builds; call only where the CPU has AVX-512).
void normal_pairs_avx512(uint32_t seed, int64_t n, int64_t m, int64_t begin, int64_t end, float* out);

}  // namespace ditpoc::seeding_detail
