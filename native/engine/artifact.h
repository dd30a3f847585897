// SPEC §5 step 9: a nonce's output y (M = L·4·C_out values) reduced to k fp16 values,
//   v = y/(‖y‖+1e-8), a = haar(Q, v[pick(seed32(Q + "_pick_" + k), M, k)]), a/(‖a‖+1e-8).
// The twin of computeArtifact (src/artifact/artifact.ts) with the same float32 roundings, sums
// in float64 and float64 transcendentals rounded to float32, so both give the same bits
// (test/native-artifacts.test.ts, native/tests/test_artifact.cpp against Gonka's vectors).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ditpoc {

// The k indices j in [0, dim) with the smallest mm(j, seed), ascending by (score, j).
// Throws std::invalid_argument unless 0 ≤ k ≤ dim ≤ 2^32.
std::vector<uint32_t> pick(uint32_t seed, int64_t dim, int k);

// The Haar-like chain: for j = 0..k−2, x = reflect(x, unit(N(seed32(prefix + "_haar_hh_" + k +
// "_" + j), k))), with N evaluated as Gonka's float32 torch code (not the SIMD fill).
std::vector<float> haar(const std::string& prefix, std::vector<float> x);

// IEEE binary16 bits of x, rounded to nearest even (NaN: 0x7e00).
uint16_t f32_to_f16_bits(float x);

// Writes the k fp16 values of the artifact of (block_hash, public_key, nonce) to out, and
// returns true; returns false, writing nothing, when y has a non-finite value (no artifact).
// Throws std::invalid_argument when m < k, k < 1 or a round string is empty.
bool compute_artifact(const float* y, int64_t m, const std::string& block_hash, const std::string& public_key,
                      int32_t nonce, int k, uint16_t* out);

}  // namespace ditpoc
