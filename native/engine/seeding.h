// SPEC §2 seeding primitives that fill tensors, bit-compatible with Gonka PoC v2. The
// TypeScript twin is src/seeds/rng.ts (pick and haar, used only by the artifact, are in
// artifact.h); tests check both against conformance/rng.json and against each other.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "murmur.h"
#include "thread_pool.h"

namespace ditpoc {

// First 4 bytes of SHA-256(UTF-8 s), big-endian.
uint32_t seed32(const std::string& s);
// The eight big-endian words of SHA-256(s), the per-segment seeds of N8.
std::array<uint32_t, 8> sha256_words(const std::string& s);

void uniform(uint32_t seed, int64_t n, float* out);
// N(seed, n): Box–Muller in float32, half/half layout. Element i of the output depends only on
// (seed, n, i), so the fill is split over the pool without changing any bit.
void normal(uint32_t seed, int64_t n, float* out, ThreadPool* pool = nullptr);
// N8 ("stronger RNG"): eight N segments seeded by the words of SHA-256(s).
void normal8(const std::array<uint32_t, 8>& words, int64_t n, float* out, ThreadPool* pool = nullptr);

// unit(N(seed, n)) in float32: the per-layer Householder vector of SPEC §5 step 7.
std::vector<float> householder_vector(uint32_t seed, int64_t n);

}  // namespace ditpoc
