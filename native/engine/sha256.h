// SHA-256 (FIPS 180-4). Hand-written, ~80 lines, so the engine needs no crypto library on
// GPU hosts; checked against the FIPS test vectors and Gonka's seed32 golden vectors.
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace ditpoc {

std::array<uint8_t, 32> sha256(const void* data, size_t len);
inline std::array<uint8_t, 32> sha256(const std::string& s) { return sha256(s.data(), s.size()); }

}  // namespace ditpoc
