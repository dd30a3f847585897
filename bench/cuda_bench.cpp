// ditpoc_bench cuda: throughput of the CUDA backend's whole nonce forward with SPEC §6 random
// weights generated on the GPU: nonces/s, model TFLOP/s (SPEC §12 FLOPs, flops.h), MFU against
// the dense bf16 GEMM rate measured with cuBLASLt on the same device in the same run, and the
// per-op GPU time split (CUDA events around every op, one profiled forward).
//
//   ditpoc_bench cuda [--model ID] [--grid F,H,W] [--ctx-len N] [--batch B|auto] [--device N]
//                     [--precision bf16|bf16-flash|fp8-attention] [--min-time S] [--gemm-n N]
//                     [--json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_request.h"
#include "backend.h"
#include "backend_factory.h"
#include "flops.h"
#include "model_config.h"
#include "seeding.h"

#ifdef DITPOC_HAVE_CUDA_BACKEND
#include "cuda/cuda_backend.h"
#endif

int cuda_main(int argc, char** argv) {
  std::string model = "wan2.2-t2v-a14b", precision = "bf16", batch_text = "auto";
  int grid[3] = {4, 16, 16}, ctx_len = -1, device = 0;
  double min_time = 5.0;
  int64_t gemm_n = 8192;
  bool json = false;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "cuda: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") model = next();
    else if (a == "--grid") {
      if (std::sscanf(next(), "%d,%d,%d", &grid[0], &grid[1], &grid[2]) != 3) {
        std::fprintf(stderr, "cuda: --grid F,H,W\n");
        return 2;
      }
    } else if (a == "--ctx-len") ctx_len = std::atoi(next());
    else if (a == "--batch") batch_text = next();
    else if (a == "--device") device = std::atoi(next());
    else if (a == "--precision") precision = next();
    else if (a == "--min-time") min_time = std::atof(next());
    else if (a == "--gemm-n") gemm_n = std::atoll(next());
    else if (a == "--json") json = true;
    else {
      std::fprintf(stderr, "cuda: unknown option '%s'\n", a.c_str());
      return 2;
    }
  }
#ifndef DITPOC_HAVE_CUDA_BACKEND
  (void)device, (void)ctx_len, (void)min_time, (void)gemm_n, (void)json;
  std::fprintf(stderr, "cuda: this build has no CUDA backend: CUDA toolkit/cuBLASLt not found at configure time\n");
  return 2;
#else
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  try {
    if (ditpoc::cuda_device_count() == 0) {
      std::fprintf(stderr, "cuda: no CUDA device is visible\n");
      return 3;
    }
    const ditpoc::ModelConfig& cfg = ditpoc::find_model(model);
    const int ctx = ctx_len > 0 ? ctx_len : (cfg.id == "wan-tiny" ? 16 : 512);
    const ditpoc::Precision prec = ditpoc::parse_precision(precision);
    auto t0 = Clock::now();
    auto backend = ditpoc::make_cuda_backend_random(cfg, "bench", device, 0);
    const double load_s = since(t0);
    const double dense_tflops = backend->dense_gemm_tflops(gemm_n, 10);

    ditpoc::BatchRequest req = ditpoc::bench::empty_request(cfg, {grid[0], grid[1], grid[2]}, ctx, prec);
    int batch = 0;
    if (batch_text == "auto") {
      batch = std::min(backend->max_batch(req.grid, ctx), 64);
      if (batch < 1) throw std::runtime_error("not even one nonce of this grid fits in the device's free memory");
    } else {
      batch = std::atoi(batch_text.c_str());
      if (batch < 1) throw std::invalid_argument("--batch must be a positive integer or auto");
    }
    const double flops = ditpoc::bench::add_nonces(cfg, req, batch);
    std::vector<float> out(static_cast<size_t>(batch * backend->output_size(req.grid)));
    backend->reserve(req.grid, ctx, batch);
    backend->forward(req, out.data());  // warm-up: GEMM plans, caches
    const auto timing = ditpoc::bench::time_forward(*backend, req, out.data(), min_time);
    const double best = timing.best, total = timing.total;
    const int reps = timing.reps;
    backend->reset_profile();
    backend->set_profiling(true);
    backend->forward(req, out.data());
    backend->set_profiling(false);
    const auto split = backend->profile_ms();
    double split_total = 0;
    for (const auto& [name, ms] : split) split_total += ms;

    const double tflops = flops / best * 1e-12;
    const double mfu = tflops / dense_tflops;
    if (json) {
      std::printf("{\"bench\": \"cuda\", \"device\": \"%s\", \"model\": \"%s\", \"grid\": [%d, %d, %d], \"ctx_len\": %d,"
                  " \"batch\": %d, \"precision\": \"%s\", \"weights_generation_gpu_s\": %.4f, \"backend_load_s\": %.3f,"
                  " \"seconds_per_batch\": %.6f, \"mean_seconds_per_batch\": %.6f, \"reps\": %d,"
                  " \"nonces_per_s\": %.4f, \"model_tflop_per_nonce\": %.6f, \"model_tflops\": %.3f,"
                  " \"dense_gemm_tflops\": %.3f, \"gemm_n\": %lld, \"mfu\": %.4f, \"op_ms\": {",
                  backend->device_description().c_str(), cfg.id.c_str(), grid[0], grid[1], grid[2], ctx, batch,
                  precision.c_str(), backend->weights_seconds(), load_s, best, total / reps, reps, batch / best,
                  flops / batch * 1e-12, tflops, dense_tflops, static_cast<long long>(gemm_n), mfu);
      for (size_t i = 0; i < split.size(); ++i)
        std::printf("%s\"%s\": %.4f", i ? ", " : "", split[i].first.c_str(), split[i].second);
      std::printf("}}\n");
    } else {
      std::printf("%s\n", backend->device_description().c_str());
      std::printf("%s grid %dx%dx%d ctx %d batch %d precision %s (weights generated on the GPU in %.3f s; load %.2f s)\n",
                  cfg.id.c_str(), grid[0], grid[1], grid[2], ctx, batch, precision.c_str(), backend->weights_seconds(),
                  load_s);
      std::printf("  forward: %.4f s/batch (best of %d), %.3f nonces/s, %.4f TFLOP/nonce (SPEC §12)\n", best, reps,
                  batch / best, flops / batch * 1e-12);
      std::printf("  model %.1f TFLOP/s; dense bf16 GEMM (cuBLASLt %lld^3) %.1f TFLOP/s -> MFU %.1f %%\n", tflops,
                  static_cast<long long>(gemm_n), dense_tflops, 100 * mfu);
      std::printf("  per-op GPU time of one forward (%.2f ms):\n", split_total);
      for (const auto& [name, ms] : split)
        if (ms > 0) std::printf("    %-20s %9.3f ms  %5.1f %%\n", name.c_str(), ms, 100 * ms / split_total);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda: %s\n", e.what());
    return 1;
  }
#endif
}
