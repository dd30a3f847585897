// The SPEC §2 hash and uniform draw, shared by the host (seeding.cpp) and the CUDA kernels
// (kernels/common.cuh) so both compute them from one definition, bit for bit.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define DITPOC_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DITPOC_HOST_DEVICE inline
#endif

namespace ditpoc {

// MurmurHash3 x86_32 of one 32-bit key, without the length xor.
DITPOC_HOST_DEVICE uint32_t mm(uint32_t key, uint32_t seed) {
  uint32_t k = key * 0xcc9e2d51u;
  k = (k << 15) | (k >> 17);
  k *= 0x1b873593u;
  uint32_t h = seed ^ k;
  h = (h << 13) | (h >> 19);
  h = h * 5u + 0xe6546b64u;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

// U(seed)[i]: f32(mm(i, seed)) / 2^32. The conversion rounds to nearest even on host and
// device alike (cvt.rn.f32.u32), and the scaling by 2^-32 is exact.
DITPOC_HOST_DEVICE float uniform_at(uint32_t seed, uint32_t i) {
  return static_cast<float>(mm(i, seed)) * (1.0f / 4294967296.0f);
}

}  // namespace ditpoc
