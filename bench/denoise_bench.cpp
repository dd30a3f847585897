// ditpoc_bench denoise: seconds per denoising step of a video generation (SPEC §13 step 4): one
// Backend::denoise call with the CFG pair [context_null, context] (or --contexts K passes) at
// the latent grid of a W×H×T video, SPEC §6 random weights, seeded inputs; next to the SPEC §12
// FLOPs of those passes (one expert, no reflections) and the rate they imply.
//
//   ditpoc_bench denoise [--model ID]... [--video W,H,T] [--ctx-len N] [--contexts K]
//                        [--backend auto|cpu|cuda] [--device N] [--threads N]
//                        [--precision bf16|fp32|bf16-flash|fp8-attention] [--min-time S] [--json]
//
// --json prints one JSON object per model, one per line.
//
// Defaults: wan-tiny and wan2.1-t2v-1.3b, a 256×256×17 video (latent [16, 5, 32, 32], 1280
// tokens), ctx_len 512 (the SPEC §13 padded length), 2 contexts, backend auto.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "backend_factory.h"
#include "bench_request.h"
#include "flops.h"
#include "model_config.h"
#include "seeding.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Options {
  std::vector<std::string> models;
  int video[3] = {256, 256, 17};  // W, H, T
  int ctx_len = 512, contexts = 2, threads = 0, device = 0;
  std::string backend = "auto", precision = "bf16";
  double min_time = 3.0;
  bool json = false;
};

}  // namespace

int denoise_main(int argc, char** argv) {
  Options o;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "denoise: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") o.models.push_back(next());
    else if (a == "--video") {
      if (std::sscanf(next(), "%d,%d,%d", &o.video[0], &o.video[1], &o.video[2]) != 3) {
        std::fprintf(stderr, "denoise: --video W,H,T\n");
        return 2;
      }
    } else if (a == "--ctx-len") o.ctx_len = std::atoi(next());
    else if (a == "--contexts") o.contexts = std::atoi(next());
    else if (a == "--backend") o.backend = next();
    else if (a == "--device") o.device = std::atoi(next());
    else if (a == "--threads") o.threads = std::atoi(next());
    else if (a == "--precision") o.precision = next();
    else if (a == "--min-time") o.min_time = std::atof(next());
    else if (a == "--json") o.json = true;
    else {
      std::fprintf(stderr, "denoise: unknown option '%s'\n", a.c_str());
      return 2;
    }
  }
  if (o.models.empty()) o.models = {"wan-tiny", "wan2.1-t2v-1.3b"};
  const int W = o.video[0], H = o.video[1], T = o.video[2];
  if (T < 1 || (T - 1) % 4 != 0 || W <= 0 || H <= 0) {
    std::fprintf(stderr, "denoise: --video needs T = 4n+1 frames and positive W, H\n");
    return 2;
  }
  if (o.contexts < 1) {
    std::fprintf(stderr, "denoise: --contexts must be at least 1\n");
    return 2;
  }
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  try {
    const std::string kind = ditpoc::resolve_backend(o.backend);
    const ditpoc::Precision precision = ditpoc::parse_precision(o.precision);
    for (size_t mi = 0; mi < o.models.size(); ++mi) {
      const ditpoc::ModelConfig& cfg = ditpoc::find_model(o.models[mi]);
      const int sw = cfg.vae_stride[2], sh = cfg.vae_stride[1], st = cfg.vae_stride[0];
      if (W % (sw * cfg.patch[2]) != 0 || H % (sh * cfg.patch[1]) != 0) {
        std::fprintf(stderr, "denoise: %s needs W and H multiples of %d\n", cfg.id.c_str(), sw * cfg.patch[2]);
        return 2;
      }
      ditpoc::DenoiseRequest req;
      req.latent_shape = {cfg.in_channels, (T - 1) / st + 1, H / sh, W / sw};
      req.ctx_len = o.ctx_len;
      req.timestep = 901;
      req.expert = 0;
      req.precision = precision;
      ditpoc::validate_denoise_shape(cfg, req);  // before anything is allocated
      const int64_t latent_n = req.latent_shape[0] * req.latent_shape[1] * req.latent_shape[2] * req.latent_shape[3];
      const ditpoc::Grid grid{static_cast<int>(req.latent_shape[1] / cfg.patch[0]),
                              static_cast<int>(req.latent_shape[2] / cfg.patch[1]),
                              static_cast<int>(req.latent_shape[3] / cfg.patch[2])};
      // Inputs and outputs (the step's, and the head's before unpatchify) on the host; on the CPU
      // also the packed weights and the workspace (CUDA keeps both on the device and checks its
      // memory itself). Refused together before any of them is made.
      const bool cpu = kind.rfind("cpu", 0) == 0;
      ditpoc::bench::require_memory(
          4.0 * latent_n +
              4.0 * o.contexts *
                  (static_cast<double>(o.ctx_len) * cfg.text_dim + 2.0 * latent_n / cfg.in_channels * cfg.out_channels) +
              (cpu ? static_cast<double>(ditpoc::cpu_weight_bytes(cfg)) +
                         ditpoc::cpu_workspace_bytes(cfg, grid, o.ctx_len, o.contexts)
                   : 0.0),
          "the bench's denoise step of " + cfg.id + " (" + std::to_string(o.contexts) + " context(s) of " +
              std::to_string(o.ctx_len) + " tokens at latent grid [" + std::to_string(grid.frames) + ", " +
              std::to_string(grid.height) + ", " + std::to_string(grid.width) + "]" +
              (cpu ? ", packed weights, workspace)" : ")"));
      std::vector<float> latent(static_cast<size_t>(latent_n));
      ditpoc::normal(ditpoc::seed32("bench_denoise_noise"), latent_n, latent.data());
      req.latent = latent.data();
      std::vector<std::vector<float>> contexts(o.contexts,
                                               std::vector<float>(static_cast<size_t>(o.ctx_len) * cfg.text_dim));
      for (int k = 0; k < o.contexts; ++k) {
        ditpoc::normal(ditpoc::seed32("bench_denoise_context_" + std::to_string(k)),
                       static_cast<int64_t>(contexts[k].size()), contexts[k].data());
        req.contexts.push_back(contexts[k].data());
      }
      auto t0 = Clock::now();
      std::unique_ptr<ditpoc::Backend> backend =
          ditpoc::make_backend_random(kind, o.device, cfg, "bench", threads);
      const double load_s = since(t0);
      const int64_t per = backend->denoise_output_size(req);
      std::vector<float> out(static_cast<size_t>(per) * o.contexts);
      backend->denoise(req, out.data());  // warm-up (and activation planning on the GPU)
      const double best =
          ditpoc::bench::time_runs([&] { backend->denoise(req, out.data()); }, o.min_time).best;
      const int64_t tokens = (req.latent_shape[1] / cfg.patch[0]) * (req.latent_shape[2] / cfg.patch[1]) *
                             (req.latent_shape[3] / cfg.patch[2]);
      const double flops = o.contexts * ditpoc::forward_flops(cfg, tokens, o.ctx_len, 1);
      if (o.json) {
        std::printf("{\"bench\": \"denoise\", \"backend\": \"%s\", \"threads\": %d, \"model\": \"%s\","
                    " \"video\": [%d, %d, %d], \"latent\": [%lld, %lld, %lld, %lld], \"tokens\": %lld,"
                    " \"ctx_len\": %d, \"contexts\": %d, \"precision\": \"%s\", \"weights_s\": %.3f,"
                    " \"seconds_per_step\": %.6f, \"gflop_per_step\": %.4f, \"achieved_gflops\": %.2f}\n",
                    kind.c_str(), threads, cfg.id.c_str(), W, H, T, (long long)req.latent_shape[0], (long long)req.latent_shape[1],
                    (long long)req.latent_shape[2], (long long)req.latent_shape[3], (long long)tokens, o.ctx_len,
                    o.contexts, o.precision.c_str(), load_s, best, flops * 1e-9, flops / best * 1e-9);
      } else {
        std::printf("%s %dx%dx%d video (latent [%lld, %lld, %lld, %lld], %lld tokens), ctx %d, %d passes, %s, %s, %d threads"
                    " (weights in %.2f s)\n",
                    cfg.id.c_str(), W, H, T, (long long)req.latent_shape[0], (long long)req.latent_shape[1],
                    (long long)req.latent_shape[2], (long long)req.latent_shape[3], (long long)tokens, o.ctx_len,
                    o.contexts, o.precision.c_str(), kind.c_str(), threads, load_s);
        std::printf("  denoise step: %.4f s/step, %.3f GFLOP/step (SPEC §12), %.1f GFLOP/s achieved\n", best,
                    flops * 1e-9, flops / best * 1e-9);
      }
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    const std::string m = e.what();  // request checks already say "denoise: "
    std::fprintf(stderr, "%s%s\n", m.rfind("denoise: ", 0) == 0 ? "" : "denoise: ", m.c_str());
    return 1;
  }
  return 0;
}
