// SPEC §5 steps 1–4 and 7 from the round's strings: each nonce's seeds, timestep and routing,
// and the per-layer Householder seeds. The TypeScript twin is src/inputs/nonce-inputs.ts; both
// are integer and float32 arithmetic on SHA-256 and murmur values, so they agree bit for bit
// (test/native-artifacts.test.ts holds them together). Deriving here lets a sprint hand the
// engine bare nonces, so no per-nonce work runs on the JS thread beside the forward.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend.h"

namespace ditpoc {

struct RoundSeeds {
  std::string block_hash;
  std::string public_key;
  int num_layers = 0;
  bool stronger_rng = false;  // SPEC §2: N8 over the SHA-256 words of P for the latent
};

// P = "{block_hash}_{public_key}_nonce{n}": the per-nonce input seed string.
std::string nonce_string(const RoundSeeds& round, int32_t nonce);
// Q = "{block_hash}_{public_key}_nonce_{n}": the artifact (pick/haar) seed prefix.
std::string artifact_string(const std::string& block_hash, const std::string& public_key, int32_t nonce);

// The seeds, timestep and routing of one nonce. Throws std::invalid_argument for an empty
// block hash or public key, or num_layers < 1.
NonceInput derive_nonce_input(const RoundSeeds& round, int32_t nonce);

// seed32(block_hash + "_layer_" + i + "_householder") for each layer i.
std::vector<uint32_t> householder_seeds(const std::string& block_hash, int num_layers);

}  // namespace ditpoc
