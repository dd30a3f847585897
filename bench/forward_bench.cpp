// ditpoc_bench forward: seconds per nonce and achieved GFLOP/s (SPEC §12 FLOPs) of the CPU
// backend's whole nonce forward with seeded random weights, next to the rate OpenBLAS's
// sgemm reaches on the same forward's GEMM shapes in the same run (the yardstick).
//
//   ditpoc_bench forward [--model ID]... [--grid F,H,W] [--ctx-len N] [--batch B]
//                        [--threads N] [--min-time S] [--json] [--rounds-stdin] [--artifacts]
//
// Rates: best of the runs, their median (the sustained rate on a shared machine) and their mean
// (all nonces over all the time, as `dit-poc generate` reports its own rate).
// --artifacts times what a sprint asks of the engine instead of the bare forward: bare nonces in,
// their inputs derived, the forward, their artifacts out (nonce_artifacts.h), the C++ twin of the
// addon's forwardArtifacts that `dit-poc generate` calls.
// --rounds-stdin (one model; no yardsticks): after the warm-up prints {"ready": ...}, then times
// one round (--min-time seconds) per line read on stdin and prints it as one JSON line, so that
// bench/compare_peer.py can interleave rounds with the PyTorch peer's.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "backend_factory.h"
#include "bench_request.h"
#include "bf16.h"
#include "cpu/cpu_isa.h"
#include "cpu/gemm.h"
#include "flops.h"
#include "host_memory.h"
#include "model_config.h"
#include "nonce_artifacts.h"
#include "seeding.h"
#include "weights.h"

#ifdef DITPOC_HAVE_CBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
extern "C" char* openblas_get_corename(void) __attribute__((weak));
#endif

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Shape {
  int64_t m, n, k;
  int count;  // how often one batch forward runs it
};

// Every GEMM of one batch forward with all nonces on one expert (routing mixes experts, which
// splits M but not the work).
std::vector<Shape> forward_gemms(const ditpoc::ModelConfig& c, int64_t B, int64_t L, int64_t Lc) {
  const int64_t D = c.dim, F = c.ffn_dim, layers = c.num_layers;
  return {
      {B * L, D, D, static_cast<int>(6 * layers)},  // self q,k,v,o and cross q,o
      {B * Lc, D, D, static_cast<int>(2 * layers)}, // cross k,v over the text context
      {B * L, F, D, static_cast<int>(layers)},
      {B * L, D, F, static_cast<int>(layers)},
      {B * Lc, D, c.text_dim, 1},
      {B * Lc, D, D, 1},
      {B * L, D, c.patch_in(), 1},
      {B * L, c.head_out(), D, 1},
  };
}

// Host bytes of the yardsticks' matrices: per distinct weight shape its bf16 source, packed and
// fp32 copies; per distinct input shape its A; the largest C.
double yardstick_bytes(const std::vector<Shape>& shapes) {
  std::map<std::pair<int64_t, int64_t>, double> weights, inputs;
  double c = 0;
  for (const Shape& s : shapes) {
    weights[{s.n, s.k}] = 8.0 * s.n * s.k;
    inputs[{s.m, s.k}] = 4.0 * s.m * s.k;
    c = std::max(c, 4.0 * s.m * s.n);
  }
  for (const auto& [shape, b] : weights) c += b;
  for (const auto& [shape, b] : inputs) c += b;
  return c;
}

// Seconds for one pass over the shapes with `run(shape, A, W, C)`, best of reps.
template <class Run>
double time_shapes(const std::vector<Shape>& shapes, Run run, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps + 1; ++r) {  // the first pass warms up
    double total = 0;
    for (const Shape& s : shapes) {
      const auto t0 = Clock::now();
      run(s);
      total += since(t0) * s.count;
    }
    if (r > 0) best = std::min(best, total);
  }
  return best;
}

struct Options {
  std::vector<std::string> models;
  int grid[3] = {1, 4, 4};
  int ctx_len = -1;
  int batch = 4;
  int threads = 0;
  double min_time = 3.0;
  bool json = false;
  bool rounds_stdin = false;
  bool artifacts = false;
};

}  // namespace

namespace {

int forward_bench(int argc, char** argv) {
  Options o;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) { std::fprintf(stderr, "forward: %s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--model") o.models.push_back(next());
    else if (a == "--grid") {
      if (std::sscanf(next(), "%d,%d,%d", &o.grid[0], &o.grid[1], &o.grid[2]) != 3) { std::fprintf(stderr, "forward: --grid F,H,W\n"); return 2; }
    } else if (a == "--ctx-len") o.ctx_len = std::atoi(next());
    else if (a == "--batch") o.batch = std::atoi(next());
    else if (a == "--threads") o.threads = std::atoi(next());
    else if (a == "--min-time") o.min_time = std::atof(next());
    else if (a == "--json") o.json = true;
    else if (a == "--rounds-stdin") o.rounds_stdin = true;
    else if (a == "--artifacts") o.artifacts = true;
    else { std::fprintf(stderr, "forward: unknown option '%s'\n", a.c_str()); return 2; }
  }
  if (o.models.empty()) o.models = {"wan-tiny", "wan2.1-t2v-1.3b"};
  if (o.batch < 1) { std::fprintf(stderr, "forward: --batch must be at least 1\n"); return 2; }
  if (o.rounds_stdin && o.models.size() != 1) { std::fprintf(stderr, "forward: --rounds-stdin takes one --model\n"); return 2; }
  if (o.rounds_stdin && o.artifacts) { std::fprintf(stderr, "forward: --rounds-stdin times the bare forward; drop --artifacts\n"); return 2; }
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#ifdef DITPOC_HAVE_CBLAS
  if (openblas_set_num_threads) openblas_set_num_threads(threads);
#endif
  if (o.json) std::printf("{\"bench\": \"forward\", \"threads\": %d, \"results\": [\n", threads);
  for (size_t mi = 0; mi < o.models.size(); ++mi) {
    const ditpoc::ModelConfig& cfg = ditpoc::find_model(o.models[mi]);
    const int ctx = o.ctx_len > 0 ? o.ctx_len : (cfg.id == "wan-tiny" ? 16 : 512);
    ditpoc::BatchRequest req = ditpoc::bench::empty_request(cfg, {o.grid[0], o.grid[1], o.grid[2]}, ctx);
    ditpoc::validate_request(cfg, req);  // grid and ctx_len, before anything is allocated
    // The packed weights, the request, its output, the backend's workspace and the yardsticks'
    // matrices, refused together before any of them is made.
    const auto shapes = forward_gemms(cfg, o.batch, req.grid.tokens(), ctx);
    ditpoc::bench::require_memory(
        static_cast<double>(ditpoc::cpu_weight_bytes(cfg)) + ditpoc::bench::request_bytes(cfg, req.grid, o.batch) +
            ditpoc::cpu_workspace_bytes(cfg, req.grid, ctx, o.batch) + (o.rounds_stdin ? 0.0 : yardstick_bytes(shapes)),
        "the bench's forward of " + cfg.id + " (packed weights, " + std::to_string(o.batch) + " nonce(s) at grid [" +
            std::to_string(o.grid[0]) + ", " + std::to_string(o.grid[1]) + ", " + std::to_string(o.grid[2]) +
            "], ctx_len " + std::to_string(ctx) + ", workspace" + (o.rounds_stdin ? "" : ", GEMM yardsticks") + ")");
    ditpoc::ThreadPool pool(threads);
    // Generated tensor by tensor into the backend's packed copy, as dit-poc loads them.
    auto t0 = Clock::now();
    auto backend = ditpoc::make_backend_random("cpu", 0, cfg, "bench", threads);
    const double weights_s = since(t0);

    double flops = ditpoc::bench::add_nonces(cfg, req, o.batch);
    std::vector<float> out(static_cast<size_t>(o.batch * backend->output_size(req.grid)));
    backend->forward(req, out.data());  // warm-up
    // --artifacts: the round's nonces 0..B-1, derived as the protocol does (their FLOPs with them).
    ditpoc::NonceArtifactsRequest areq;
    areq.grid = req.grid;
    areq.ctx_len = ctx;
    areq.block_hash = "bench";
    areq.public_key = "bench";
    for (int b = 0; b < o.batch; ++b) areq.nonces.push_back(b);
    std::vector<uint16_t> vectors(static_cast<size_t>(o.batch) * areq.k);
    std::vector<uint8_t> finite(static_cast<size_t>(o.batch));
    if (o.artifacts) {
      flops = 0;
      for (const auto& n : ditpoc::nonce_artifacts_forward(cfg, areq).nonces)
        flops += ditpoc::bench::nonce_flops(cfg, req.grid, ctx, n.experts);
      ditpoc::nonce_artifacts(*backend, areq, vectors.data(), finite.data());  // warm-up
    }
    const char* path = ditpoc::cpu::isa_name(ditpoc::cpu::active_isa());
    if (o.rounds_stdin) {
      std::printf("{\"ready\": true, \"engine\": \"dit-poc cpu\", \"cpu_path\": \"%s\", \"threads\": %d}\n", path, threads);
      std::fflush(stdout);
      char line[256];
      while (std::fgets(line, sizeof line, stdin)) {
        const auto t = ditpoc::bench::time_forward(*backend, req, out.data(), o.min_time);
        std::printf("{\"best_s\": %.6f, \"median_s\": %.6f, \"reps\": %d, \"batch\": %d}\n", t.best, t.median, t.reps, o.batch);
        std::fflush(stdout);
      }
      return 0;
    }
    const auto timing = o.artifacts ? ditpoc::bench::time_runs([&] { ditpoc::nonce_artifacts(*backend, areq, vectors.data(), finite.data()); }, o.min_time)
                                    : ditpoc::bench::time_forward(*backend, req, out.data(), o.min_time);
    const double best = timing.best;
    const double mean = timing.total / timing.reps;
    const char* timed = o.artifacts ? "nonce_artifacts" : "forward";
    const double gflops = flops / best * 1e-9;

    // GEMM yardsticks on this forward's shapes: our GEMM alone, and OpenBLAS sgemm.
    double gemm_flops = 0;
    for (const Shape& s : shapes) gemm_flops += 2.0 * s.m * s.n * s.k * s.count;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uni(-1, 1);
    std::map<std::pair<int64_t, int64_t>, std::pair<ditpoc::cpu::PackedWeight, std::vector<float>>> mats;
    std::map<int64_t, std::vector<float>> as;
    for (const Shape& s : shapes) {
      auto& m = mats[{s.n, s.k}];
      if (m.second.empty()) {
        std::vector<uint16_t> wb(static_cast<size_t>(s.n * s.k));
        for (auto& w : wb) w = ditpoc::f32_to_bf16(uni(rng) * 0.05f);
        m.first = ditpoc::cpu::PackedWeight::pack(wb.data(), s.n, s.k);
        m.second.resize(wb.size());
        for (size_t i = 0; i < wb.size(); ++i) m.second[i] = ditpoc::bf16_to_f32(wb[i]);
      }
      auto& a = as[s.m * 1000003 + s.k];
      if (a.empty()) { a.resize(static_cast<size_t>(s.m * s.k)); for (auto& v : a) v = uni(rng); }
    }
    std::vector<float> c;
    auto A = [&](const Shape& s) { return as[s.m * 1000003 + s.k].data(); };
    const double ours_gemm_s = time_shapes(shapes, [&](const Shape& s) {
      c.resize(static_cast<size_t>(s.m * s.n));
      ditpoc::cpu::gemm(A(s), s.k, s.m, mats[{s.n, s.k}].first, nullptr, c.data(), s.n, true, pool);
    }, 2);
    double blas_s = 0;
#ifdef DITPOC_HAVE_CBLAS
    blas_s = time_shapes(shapes, [&](const Shape& s) {
      c.resize(static_cast<size_t>(s.m * s.n));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s.m, (int)s.n, (int)s.k, 1.0f, A(s), (int)s.k,
                  mats[{s.n, s.k}].second.data(), (int)s.k, 0.0f, c.data(), (int)s.n);
    }, 2);
#endif
    const double blas_gf = blas_s > 0 ? gemm_flops / blas_s * 1e-9 : 0;
    const double ours_gemm_gf = gemm_flops / ours_gemm_s * 1e-9;
    if (o.json) {
      std::printf("  {\"model\": \"%s\", \"grid\": [%d, %d, %d], \"ctx_len\": %d, \"batch\": %d, \"weights_s\": %.3f,"
                  " \"cpu_path\": \"%s\", \"timed\": \"%s\", \"seconds_per_nonce\": %.6f, \"median_seconds_per_nonce\": %.6f, \"mean_seconds_per_nonce\": %.6f,"
                  " \"model_gflop_per_nonce\": %.4f, \"achieved_gflops\": %.2f,"
                  " \"gemm_share_of_flops\": %.4f, \"our_gemm_gflops\": %.2f, \"blas_sgemm_gflops\": %s, \"fraction_of_blas\": %s}%s\n",
                  cfg.id.c_str(), o.grid[0], o.grid[1], o.grid[2], ctx, o.batch, weights_s, path, timed, best / o.batch,
                  timing.median / o.batch, mean / o.batch,
                  flops / o.batch * 1e-9, gflops, gemm_flops / flops, ours_gemm_gf,
                  blas_s > 0 ? std::to_string(blas_gf).c_str() : "null",
                  blas_s > 0 ? std::to_string(gflops / blas_gf).c_str() : "null", mi + 1 < o.models.size() ? "," : "");
    } else {
      std::printf("%s grid %dx%dx%d ctx %d batch %d, %d threads, CPU path %s (weights generated and packed in %.2f s)\n",
                  cfg.id.c_str(), o.grid[0], o.grid[1], o.grid[2], ctx, o.batch, threads, path, weights_s);
      std::printf("  %s: %.4f s/nonce best, %.4f median, %.4f mean of %d runs, %.3f GFLOP/nonce (SPEC §12), %.1f GFLOP/s achieved (best)\n",
                  timed, best / o.batch, timing.median / o.batch, mean / o.batch, timing.reps, flops / o.batch * 1e-9, gflops);
      std::printf("  GEMMs of this forward (%.0f %% of its FLOPs): our GEMM %.1f GFLOP/s", 100 * gemm_flops / flops, ours_gemm_gf);
      if (blas_s > 0)
        std::printf(", OpenBLAS sgemm (core %s%s%s) %.1f GFLOP/s -> forward at %.0f %% of the BLAS rate\n",
                    openblas_get_corename ? openblas_get_corename() : "unknown",
                    std::getenv("DITPOC_BENCH_BLAS_CORE_WAS") ? ", set by the bench in place of " : "",
                    std::getenv("DITPOC_BENCH_BLAS_CORE_WAS") ? std::getenv("DITPOC_BENCH_BLAS_CORE_WAS") : "",
                    blas_gf, 100 * gflops / blas_gf);
      else
        std::printf(", no BLAS yardstick (built without CBLAS)\n");
    }
    std::fflush(stdout);
  }
  if (o.json) std::printf("]}\n");
  return 0;
}

}  // namespace

// Errors (unknown model, too little memory for it, ...) end the bench with a message and exit
// code 3, never an abort.
int forward_main(int argc, char** argv) {
  try {
    return forward_bench(argc, argv);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "forward: %s\n", e.what());
    return 3;
  }
}
