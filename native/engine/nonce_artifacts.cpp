#include "nonce_artifacts.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "artifact.h"
#include "host_memory.h"
#include "nonce_inputs.h"

namespace ditpoc {

BatchRequest nonce_artifacts_forward(const ModelConfig& cfg, const NonceArtifactsRequest& req) {
  if (req.block_hash.empty()) throw std::invalid_argument("block hash must be a non-empty string");
  if (req.public_key.empty()) throw std::invalid_argument("public key must be a non-empty string");
  BatchRequest fwd;
  fwd.grid = req.grid;
  fwd.ctx_len = req.ctx_len;
  fwd.precision = req.precision;
  fwd.householder_seeds = householder_seeds(req.block_hash, cfg.num_layers);
  const RoundSeeds round{req.block_hash, req.public_key, cfg.num_layers, req.stronger_rng};
  fwd.nonces.reserve(req.nonces.size());
  for (int32_t n : req.nonces) fwd.nonces.push_back(derive_nonce_input(round, n));
  validate_request(cfg, fwd);
  const int64_t m = fwd.grid.tokens() * cfg.head_out();
  if (req.k < 1) throw std::invalid_argument("k must be a positive integer, got " + std::to_string(req.k));
  if (m < req.k)
    throw std::invalid_argument("output length " + std::to_string(m) + " is smaller than k = " + std::to_string(req.k));
  return fwd;
}

void require_nonce_artifacts_memory(const ModelConfig& cfg, const NonceArtifactsRequest& req) {
  // A double: absurd requests exceed int64.
  const double bytes = static_cast<double>(req.nonces.size()) * static_cast<double>(req.grid.tokens()) * cfg.head_out() * sizeof(float);
  require_host_memory(bytes > 9e18 ? INT64_MAX : static_cast<int64_t>(bytes), "the outputs of " + std::to_string(req.nonces.size()) + " nonce(s)");
}

void nonce_artifacts(Backend& backend, const NonceArtifactsRequest& req, uint16_t* artifacts, uint8_t* finite,
                     const std::atomic<bool>* cancel) {
  const BatchRequest fwd = nonce_artifacts_forward(backend.config(), req);
  require_nonce_artifacts_memory(backend.config(), req);
  const int64_t m = backend.output_size(fwd.grid);
  std::vector<float> y(static_cast<size_t>(m) * req.nonces.size());
  const size_t k = static_cast<size_t>(req.k);
  backend.forward_then(fwd, y.data(), cancel, [&](int64_t begin, int64_t end) {
    for (size_t i = static_cast<size_t>(begin); i < static_cast<size_t>(end); ++i) {
      uint16_t* out = artifacts + i * k;
      finite[i] = compute_artifact(y.data() + i * static_cast<size_t>(m), m, req.block_hash, req.public_key,
                                   req.nonces[i], req.k, out) ? 1 : 0;
      if (!finite[i]) std::fill(out, out + k, uint16_t(0));
    }
  });
}

}  // namespace ditpoc
