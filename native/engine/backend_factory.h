// Backend selection: "cpu", "cuda" or "auto" (CUDA when this build has the CUDA backend and a
// device is visible, else CPU). The CPU backend is always built; the CUDA backend only when
// CMake found nvcc and cuBLASLt (DITPOC_HAVE_CUDA_BACKEND).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend.h"

namespace ditpoc {

// Whether this build contains the CUDA backend.
bool cuda_backend_compiled();
// Backends usable now: "cpu", plus "cuda" when compiled in and a device is visible.
std::vector<std::string> available_backends();
// "auto" → "cuda" or "cpu"; "cpu"/"cuda" are returned as given. Throws std::invalid_argument
// for another name and std::runtime_error for "cuda" in a build without it.
std::string resolve_backend(const std::string& kind);

// A backend over host weights. `device` is the CUDA device index (ignored by the CPU backend);
// `threads` sizes the host thread pool (0: one per hardware thread).
std::unique_ptr<Backend> make_backend(const std::string& kind, int device, std::shared_ptr<const ModelWeights> weights,
                                      int threads);

// A backend with SPEC §6 random weights: generated on the GPU for CUDA (no host copy, seconds
// instead of minutes for the A14B models), on the host (random_weights) for the CPU.
std::unique_ptr<Backend> make_backend_random(const std::string& kind, int device, const ModelConfig& cfg,
                                             const std::string& weights_seed, int threads);

}  // namespace ditpoc
