// A batch of PoC nonces end to end (SPEC §5 steps 1–9): derive each nonce's seeds and routing,
// run the forward, reduce each output to its artifact. The coordinator's sprint hands the engine
// bare nonces through this, so the JS thread does no per-nonce work beside the forward; the
// TypeScript path (src/engine/nonce-runner.ts: deriveNonceInputs, forward, computeArtifact) is
// its reference and gives the same bits.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "backend.h"

namespace ditpoc {

struct NonceArtifactsRequest {
  Grid grid;
  int ctx_len = 0;
  Precision precision = Precision::Bf16;
  std::string block_hash;
  std::string public_key;
  bool stronger_rng = false;
  int k = 12;                   // the artifact's length (k_dim)
  std::vector<int32_t> nonces;
};

// Checks the request against the model (round strings, k ≤ output length, and the forward's own
// checks) and returns the forward it runs. Throws std::invalid_argument with the reason.
BatchRequest nonce_artifacts_forward(const ModelConfig& cfg, const NonceArtifactsRequest& req);

// Refuses (std::runtime_error, host_memory.h) a request whose outputs, which nonce_artifacts
// holds beside the backend's workspace, cannot fit in the host's available memory.
void require_nonce_artifacts_memory(const ModelConfig& cfg, const NonceArtifactsRequest& req);

// Writes k fp16 values per nonce to artifacts ([nonces, k]) and finite[i] = 1, or finite[i] = 0
// (its k values zero) when nonce i's output was non-finite. Throws like Backend::forward.
void nonce_artifacts(Backend& backend, const NonceArtifactsRequest& req, uint16_t* artifacts, uint8_t* finite,
                     const std::atomic<bool>* cancel = nullptr);

}  // namespace ditpoc
