#include "weights.h"

#include <cmath>
#include <set>
#include <stdexcept>

#include "bf16.h"
#include "host_memory.h"
#include "seeding.h"

namespace ditpoc {

const Tensor& ExpertWeights::at(const std::string& key) const {
  auto it = tensors.find(key);
  if (it == tensors.end()) throw std::runtime_error("weights: missing tensor '" + key + "'");
  return it->second;
}

void init_params(const ModelConfig& cfg, const TensorSpec& t, float* mu, float* sigma) {
  switch (t.kind) {
    case TensorKind::Weight:
      *mu = 0.0f;
      *sigma = static_cast<float>(1.0 / std::sqrt(static_cast<double>(t.fan_in())));
      break;
    case TensorKind::Modulation:
      *mu = 0.0f;
      *sigma = static_cast<float>(1.0 / std::sqrt(static_cast<double>(cfg.dim)));
      break;
    case TensorKind::NormWeight:
      *mu = 1.0f;
      *sigma = 0.02f;
      break;
    case TensorKind::Bias:
      *mu = 0.0f;
      *sigma = 0.02f;
      break;
  }
}

void stream_random_weights(const ModelConfig& cfg, const std::string& weights_seed, ThreadPool& pool,
                           const TensorSink& sink, const ProgressFn& progress) {
  const auto specs = tensor_specs(cfg);
  const int64_t total = static_cast<int64_t>(specs.size()) * cfg.num_experts();
  int64_t done = 0;
  std::vector<float> scratch;
  for (int x = 0; x < cfg.num_experts(); ++x) {
    for (const auto& spec : specs) {
      const int64_t n = spec.numel();
      float mu, sigma;
      init_params(cfg, spec, &mu, &sigma);
      scratch.resize(static_cast<size_t>(n));
      normal(seed32(weights_seed + "_" + cfg.experts[x] + "_" + spec.name), n, scratch.data(), &pool);
      Tensor t;
      t.shape = spec.shape;
      t.data.resize(static_cast<size_t>(n));
      uint16_t* dst = t.data.data();
      const float* src = scratch.data();
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) dst[i] = f32_to_bf16(mu + sigma * src[i]);
      });
      sink(x, spec.name, t);
      if (progress) progress(++done, total);
    }
  }
}

ModelWeights random_weights(const ModelConfig& cfg, const std::string& weights_seed,
                            ThreadPool& pool, const ProgressFn& progress) {
  require_host_memory(params_per_expert(cfg) * cfg.num_experts() * 2,
                      "random bf16 weights of " + cfg.id + " (" + std::to_string(cfg.num_experts()) + " expert(s))");
  ModelWeights w;
  w.config = &cfg;
  w.identity = "random:" + weights_seed;
  w.experts.resize(static_cast<size_t>(cfg.num_experts()));
  stream_random_weights(
      cfg, weights_seed, pool,
      [&](int expert, const std::string& key, Tensor& t) { w.experts[expert].tensors.emplace(key, std::move(t)); },
      progress);
  return w;
}

void check_weights_complete(const ModelWeights& w) {
  if (!w.config) throw std::invalid_argument("weights: no model config");
  const auto& cfg = *w.config;
  if (static_cast<int>(w.experts.size()) != cfg.num_experts())
    throw std::invalid_argument("weights: " + std::to_string(w.experts.size()) + " experts, model " +
                                cfg.id + " has " + std::to_string(cfg.num_experts()));
  const auto specs = tensor_specs(cfg);
  for (int x = 0; x < cfg.num_experts(); ++x) {
    const auto& ew = w.experts[x];
    std::set<std::string> expected;
    for (const auto& spec : specs) {
      expected.insert(spec.name);
      auto it = ew.tensors.find(spec.name);
      if (it == ew.tensors.end())
        throw std::invalid_argument("weights: " + cfg.experts[x] + " lacks tensor " + spec.name);
      if (it->second.shape != spec.shape ||
          static_cast<int64_t>(it->second.data.size()) != spec.numel())
        throw std::invalid_argument("weights: " + cfg.experts[x] + " tensor " + spec.name +
                                    " has the wrong shape");
    }
    for (const auto& [name, t] : ew.tensors)
      if (!expected.count(name))
        throw std::invalid_argument("weights: " + cfg.experts[x] + " has unexpected tensor " + name);
  }
}

}  // namespace ditpoc
