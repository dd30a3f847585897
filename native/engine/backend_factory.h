// Backend selection: "cpu", "cuda" or "auto" (CUDA when this build has the CUDA backend and a
// device is visible, else CPU). The CPU backend is always built; the CUDA backend only when
// CMake found nvcc and cuBLASLt (DITPOC_HAVE_CUDA_BACKEND).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "weight_transforms.h"

namespace ditpoc {

// Whether this build contains the CUDA backend.
bool cuda_backend_compiled();
// Backends usable now: "cpu", plus "cuda" when compiled in and a device is visible.
std::vector<std::string> available_backends();
// "auto" → "cuda" or "cpu"; "cpu"/"cuda" are returned as given, and so is "cpu:<path>" (the
// CPU backend on a given path of cpu/cpu_isa.h) when this CPU runs that path. Throws std::invalid_argument
// for another name and std::runtime_error for "cuda" in a build without it.
std::string resolve_backend(const std::string& kind);

// A backend over host weights. `device` is the CUDA device index (ignored by the CPU backend);
// `threads` sizes the host thread pool (0: one per hardware thread).
std::unique_ptr<Backend> make_backend(const std::string& kind, int device, std::shared_ptr<const ModelWeights> weights,
                                      int threads);

// A backend with SPEC §6 random weights, `transform` applied. CUDA generates them on the GPU
// (no host copy, seconds instead of minutes for the A14B models) or, with a transform, on the
// host tensor by tensor, each uploaded once transformed; the CPU backend takes them tensor by
// tensor too, each packed once transformed, so host memory holds the packed model only.
std::unique_ptr<Backend> make_backend_random(const std::string& kind, int device, const ModelConfig& cfg,
                                             const std::string& weights_seed, int threads,
                                             const WeightTransform& transform = {},
                                             const ProgressFn& progress = nullptr);

// A backend over a safetensors checkpoint (checkpoint.h), `transform` applied. Both backends
// stream it shard by shard: CUDA to the device, so host memory holds one batch of tensors; the
// CPU backend into its packed copy, so host memory holds that copy and one batch, never the
// bf16 model beside it.
std::unique_ptr<Backend> make_backend_checkpoint(const std::string& kind, int device, const ModelConfig& cfg,
                                                 const std::string& dir, int threads,
                                                 const WeightTransform& transform = {},
                                                 const ProgressFn& progress = nullptr);

}  // namespace ditpoc
