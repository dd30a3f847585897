// Model weights as the engine holds them: bf16, official key names, one set per expert.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model_config.h"
#include "thread_pool.h"

namespace ditpoc {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<uint16_t> data;  // bf16 bit patterns, row-major
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// One expert's tensors by official key.
struct ExpertWeights {
  std::map<std::string, Tensor> tensors;
  // Throws std::runtime_error naming the tensor when it is absent.
  const Tensor& at(const std::string& key) const;
};

struct ModelWeights {
  const ModelConfig* config = nullptr;
  std::vector<ExpertWeights> experts;  // index = routing bit (config->experts order)
  std::string identity;               // "random:<seed>" or the checkpoint path
};

// Progress callback: (tensors done, tensors total).
using ProgressFn = std::function<void(int64_t, int64_t)>;

// Receives one tensor of weights that stream in (a checkpoint read shard by shard, random
// weights made tensor by tensor): the expert (routing bit), the official key and the bf16
// tensor, which the sink may move from. Called once per tensor, on the streaming thread.
using TensorSink = std::function<void(int expert, const std::string& key, Tensor& tensor)>;
// Weights that stream in (stream_checkpoint, stream_random_weights): called once, with the sink
// that takes each tensor as it arrives, so a backend holds its own copy and never the model twice.
using WeightStream = std::function<void(const TensorSink& sink)>;

// SPEC §6 (μ, σ) of one tensor.
void init_params(const ModelConfig& cfg, const TensorSpec& spec, float* mu, float* sigma);

// SPEC §6: value = μ + σ·N(seed32("{weights_seed}_{expert}_{key}"), numel), rounded to bf16.
ModelWeights random_weights(const ModelConfig& cfg, const std::string& weights_seed,
                            ThreadPool& pool, const ProgressFn& progress = nullptr);
// The same tensors handed to `sink` one at a time, never all in host memory.
void stream_random_weights(const ModelConfig& cfg, const std::string& weights_seed, ThreadPool& pool,
                           const TensorSink& sink, const ProgressFn& progress = nullptr);

// Throws std::invalid_argument when a tensor is missing, extra or has the wrong shape.
void check_weights_complete(const ModelWeights& w);

}  // namespace ditpoc
