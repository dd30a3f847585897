#include "nonce_inputs.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "seeding.h"

namespace ditpoc {

namespace {
void check_round_strings(const std::string& block_hash, const std::string& public_key) {
  if (block_hash.empty()) throw std::invalid_argument("block hash must be a non-empty string");
  if (public_key.empty()) throw std::invalid_argument("public key must be a non-empty string");
}
}  // namespace

std::string nonce_string(const RoundSeeds& round, int32_t nonce) {
  check_round_strings(round.block_hash, round.public_key);
  return round.block_hash + "_" + round.public_key + "_nonce" + std::to_string(nonce);
}

std::string artifact_string(const std::string& block_hash, const std::string& public_key, int32_t nonce) {
  check_round_strings(block_hash, public_key);
  return block_hash + "_" + public_key + "_nonce_" + std::to_string(nonce);
}

NonceInput derive_nonce_input(const RoundSeeds& round, int32_t nonce) {
  if (round.num_layers < 1) throw std::invalid_argument("num_layers must be a positive integer");
  const std::string p = nonce_string(round, nonce);
  NonceInput in;
  in.latent_seed = seed32(p);
  if (round.stronger_rng) {
    in.latent_strong = true;
    in.latent_words = sha256_words(p);
  }
  in.context_seed = seed32(p + "_context");
  // u is a float32; the product is float64 as in the TS twin, and u = 1.0 gives 1000: clamped.
  float u = 0;
  uniform(seed32(p + "_timestep"), 1, &u);
  in.timestep = static_cast<int>(std::min(999.0, std::floor(1000.0 * static_cast<double>(u))));
  const uint32_t expert_seed = seed32(p + "_experts");
  in.experts.resize(static_cast<size_t>(round.num_layers));
  for (int i = 0; i < round.num_layers; ++i)
    in.experts[static_cast<size_t>(i)] = static_cast<uint8_t>(mm(static_cast<uint32_t>(i), expert_seed) >> 31);
  return in;
}

std::vector<uint32_t> householder_seeds(const std::string& block_hash, int num_layers) {
  if (block_hash.empty()) throw std::invalid_argument("block hash must be a non-empty string");
  if (num_layers < 1) throw std::invalid_argument("num_layers must be a positive integer");
  std::vector<uint32_t> seeds(static_cast<size_t>(num_layers));
  for (int i = 0; i < num_layers; ++i) seeds[static_cast<size_t>(i)] = seed32(block_hash + "_layer_" + std::to_string(i) + "_householder");
  return seeds;
}

}  // namespace ditpoc
