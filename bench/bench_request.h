// The seeded batch request the benchmarks time (CPU and CUDA alike), and its SPEC §12 FLOPs.
#pragma once
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "backend.h"
#include "flops.h"
#include "host_memory.h"
#include "seeding.h"

namespace ditpoc::bench {

// Refuses, before anything is allocated, a bench run whose buffers would not fit in host memory
// (std::runtime_error naming `what`): a bad_alloc would end the bench with no reason given, and
// an allocation that overcommit lets through with an OOM kill. Sizes are doubles, as absurd
// options overflow int64.
inline void require_memory(double bytes, const std::string& what) {
  require_host_memory(bytes > 9e18 ? INT64_MAX : static_cast<int64_t>(bytes), what);
}

// Host bytes of a seeded batch request of `batch` nonces (add_nonces) and of its output.
inline double request_bytes(const ModelConfig& cfg, const Grid& grid, int64_t batch) {
  const double L = static_cast<double>(grid.tokens());
  return static_cast<double>(batch) * (sizeof(NonceInput) + cfg.num_layers + 4.0 * L * cfg.head_out());
}

// Householder seeds for every layer of `cfg`, in a request with no nonces yet.
inline BatchRequest empty_request(const ModelConfig& cfg, Grid grid, int ctx_len, Precision precision = Precision::Bf16) {
  BatchRequest req;
  req.grid = grid;
  req.ctx_len = ctx_len;
  req.precision = precision;
  for (int i = 0; i < cfg.num_layers; ++i) req.householder_seeds.push_back(seed32("bench_layer_" + std::to_string(i)));
  return req;
}

// SPEC §12 FLOPs of one nonce's forward with this routing (the experts it uses count).
inline double nonce_flops(const ModelConfig& cfg, const Grid& grid, int ctx_len, const std::vector<uint8_t>& experts) {
  int used[2] = {0, 0};
  for (uint8_t r : experts) used[cfg.num_experts() == 1 ? 0 : r] = 1;
  return forward_flops(cfg, grid.tokens(), ctx_len, used[0] + used[1]);
}

// Appends `batch` seeded nonces (routing drawn like the protocol's) and returns their FLOPs.
inline double add_nonces(const ModelConfig& cfg, BatchRequest& req, int batch) {
  double flops = 0;
  for (int b = 0; b < batch; ++b) {
    NonceInput n;
    n.latent_seed = seed32("bench_latent_" + std::to_string(b));
    n.context_seed = seed32("bench_context_" + std::to_string(b));
    n.timestep = (100 + 37 * b) % 1000;
    for (int i = 0; i < cfg.num_layers; ++i)
      n.experts.push_back(cfg.num_experts() == 1 ? 0 : static_cast<uint8_t>(mm(i, n.context_seed) >> 31));
    flops += nonce_flops(cfg, req.grid, req.ctx_len, n.experts);
    req.nonces.push_back(std::move(n));
  }
  return flops;
}

struct ForwardTiming {
  double best = 1e30;  // seconds of the fastest run
  double median = 0;   // seconds of the median run (the sustained rate on a shared machine)
  double total = 0;    // seconds of all runs
  int reps = 0;
};

// run() timed over at least 3 runs and `min_time` seconds, after the caller's warm-up.
template <class Run>
ForwardTiming time_runs(Run run, double min_time) {
  using Clock = std::chrono::steady_clock;
  ForwardTiming t;
  std::vector<double> runs;
  while (t.reps < 3 || t.total < min_time) {
    const auto t0 = Clock::now();
    run();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    t.best = std::min(t.best, dt);
    t.total += dt;
    ++t.reps;
    runs.push_back(dt);
  }
  std::sort(runs.begin(), runs.end());
  t.median = runs.size() % 2 ? runs[runs.size() / 2] : 0.5 * (runs[runs.size() / 2 - 1] + runs[runs.size() / 2]);
  return t;
}

// backend->forward timed over at least 3 runs and `min_time` seconds, after the caller's
// warm-up.
inline ForwardTiming time_forward(Backend& backend, const BatchRequest& req, float* out, double min_time) {
  return time_runs([&] { backend.forward(req, out); }, min_time);
}

}  // namespace ditpoc::bench
