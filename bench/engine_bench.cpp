// ditpoc_bench: micro-benchmarks of the C++ engine.
//
//   ditpoc_bench gemm [--threads N] [--json] [--min-time S] [--shape MxNxK]... [--no-blas]
//   ditpoc_bench forward [...]   (bench/forward_bench.cpp)
//   ditpoc_bench cuda [...]      (bench/cuda_bench.cpp; builds with the CUDA backend)
//   ditpoc_bench denoise [...]   (bench/denoise_bench.cpp; s/step of a video generation)
//
// Each sub-command lives in its own run_*_bench function; main only dispatches on the first
// argument. BLAS (OpenBLAS when found by CMake, DITPOC_HAVE_CBLAS) is only the yardstick.
//
// gemm: for each shape, ours (bf16 packed W, A rounded to bf16, with bias) and cblas_sgemm
// (fp32 W, the same rounded A, no bias) are timed alternately after a warm-up, best of the
// runs (at least 3 each and --min-time seconds, default 0.25); ratio = ours GFLOP/s / BLAS
// GFLOP/s. OpenBLAS runs with the same thread count (openblas_set_num_threads). If OpenBLAS
// detects a core too old for this CPU (0.3.21 says "Prescott" on recent Xeons), the bench
// re-runs itself with OPENBLAS_CORETYPE=SkylakeX/Haswell, also in place of an older core the
// environment forces (see maybe_fix_openblas_core).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <unistd.h>

#include "bench_request.h"
#include "bf16.h"
#include "cpu/cpu_isa.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "thread_pool.h"

#ifdef DITPOC_HAVE_CBLAS
#include <cblas.h>
// OpenBLAS's thread control. Weak, so the bench still links against a BLAS that lacks it (on
// Debian libblas.so.3 is OpenBLAS's BLAS-only facade; the symbol then comes from the
// libopenblas.so.0 it pulls in, or stays null and the BLAS uses its default thread count).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
extern "C" int openblas_get_num_threads(void) __attribute__((weak));
extern "C" char* openblas_get_corename(void) __attribute__((weak));
#endif

int forward_main(int argc, char** argv);  // bench/forward_bench.cpp
int cuda_main(int argc, char** argv);     // bench/cuda_bench.cpp
int denoise_main(int argc, char** argv);  // bench/denoise_bench.cpp

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best wall time of fn() over repeated runs after one warm-up: at least min_reps runs and at
// least min_time seconds in all (capped at max_reps).
[[maybe_unused]] double best_time(const std::function<void()>& fn, double min_time, int min_reps = 3,
                 int max_reps = 200) {
  fn();  // warm-up (page faults, thread wake-up, caches)
  double best = 1e30, total = 0;
  for (int rep = 0; rep < max_reps && (rep < min_reps || total < min_time); ++rep) {
    auto t0 = Clock::now();
    fn();
    double dt = seconds_since(t0);
    best = std::min(best, dt);
    total += dt;
  }
  return best;
}

// The same for two functions timed alternately (a, b, a, b, ...), so that a change in machine
// load affects both alike; returns the best time of each.
[[maybe_unused]] std::pair<double, double> best_time_pair(const std::function<void()>& a,
                                         const std::function<void()>& b, double min_time,
                                         int min_reps = 3, int max_reps = 200) {
  a();
  b();
  double best_a = 1e30, best_b = 1e30, total = 0;
  for (int rep = 0; rep < max_reps && (rep < min_reps || total < 2 * min_time); ++rep) {
    auto t0 = Clock::now();
    a();
    const double da = seconds_since(t0);
    t0 = Clock::now();
    b();
    const double db = seconds_since(t0);
    best_a = std::min(best_a, da);
    best_b = std::min(best_b, db);
    total += da + db;
  }
  return {best_a, best_b};
}

struct GemmShape {
  int64_t m, n, k;
};

struct GemmBenchOptions {
  int threads = 0;          // 0: one per hardware thread
  bool json = false;
  bool no_blas = false;     // time ours only (peer scripts bring their own yardstick)
  double min_time = 0.25;   // seconds of timed runs per shape and library
  std::vector<GemmShape> shapes;  // empty: the default list
};

struct GemmResult {
  GemmShape s;
  double ours_s = 0, blas_s = 0;  // best time per call; blas_s = 0 when no BLAS
  double max_rel_diff = -1;       // max |ours - blas| / max |blas| (same rounded A), -1: n/a
};

std::vector<GemmShape> default_gemm_shapes() {
  const int64_t ms[] = {16, 32, 64, 512, 2048};
  const std::pair<int64_t, int64_t> nks[] = {{1536, 1536}, {8960, 1536}, {1536, 8960},
                                             {1536, 4096}, {256, 256},   {512, 256},
                                             {256, 4096},  {64, 256}};
  std::vector<GemmShape> out;
  for (int64_t m : ms)
    for (auto [n, k] : nks) out.push_back({m, n, k});
  // odd sizes: M, N and K tails
  out.push_back({1, 1536, 1536});
  out.push_back({7, 1536, 1536});
  out.push_back({37, 1000, 999});
  out.push_back({100, 8960, 1536});
  out.push_back({333, 1537, 1535});
  out.push_back({2047, 1531, 1533});
  return out;
}

#ifdef DITPOC_HAVE_CBLAS
std::string blas_core() {
  return openblas_get_corename ? std::string(openblas_get_corename()) : std::string("unknown");
}

// OpenBLAS (DYNAMIC_ARCH builds, as Debian's) picks its kernels from the CPU model when it is
// loaded, or from OPENBLAS_CORETYPE. On a CPU newer than the library (OpenBLAS 0.3.21 on a
// family-6 model-207 Xeon, say) it falls back to its generic SSE3 "Prescott" kernels, and an
// environment may force an older core (OPENBLAS_CORETYPE=Haswell on an AVX-512 machine): both
// make a flattering yardstick. So the bench re-executes itself with OPENBLAS_CORETYPE set to the
// best core the CPU's features allow (SkylakeX with AVX-512, else Haswell; the variable is read
// at load time, so setting it in-process is too late) and says which core it replaced
// (DITPOC_BENCH_BLAS_CORE_WAS). Returns only if nothing was done. DITPOC_BENCH_KEEP_BLAS_CORE=1
// keeps the core as loaded.
void maybe_fix_openblas_core(char** argv) {
  if (!openblas_get_corename || std::getenv("DITPOC_BENCH_KEEP_BLAS_CORE") ||
      std::getenv("DITPOC_BENCH_BLAS_CORE_WAS"))
    return;
  const char* want = nullptr;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    want = "Haswell";
#endif
  if (!want) return;
  auto lower = [](std::string v) {
    for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return v;
  };
  const std::string core = blas_core();
  // Cores at least as good as `want` for sgemm are kept (Cooperlake and Sapphire Rapids extend
  // SkylakeX; Zen uses the Haswell kernels).
  const std::string lc = lower(core);
  if (lc == lower(want) || lc == "cooperlake" || lc == "sapphirerapids" ||
      (std::string(want) == "Haswell" && (lc == "zen" || lc == "skylakex")))
    return;
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  const std::string was = core + (env ? std::string(" (OPENBLAS_CORETYPE=") + env + ")" : std::string(" (detected)"));
  setenv("OPENBLAS_CORETYPE", want, 1);
  setenv("DITPOC_BENCH_BLAS_CORE_WAS", was.c_str(), 1);
  execv("/proc/self/exe", argv);
  unsetenv("DITPOC_BENCH_BLAS_CORE_WAS");  // exec failed: carry on with the loaded core
  if (env) setenv("OPENBLAS_CORETYPE", env, 1);
}
#endif

int run_gemm_bench(const GemmBenchOptions& opt) {
  const int threads = opt.threads > 0 ? opt.threads
                                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ditpoc::ThreadPool pool(threads);
  const std::vector<GemmShape> shapes = opt.shapes.empty() ? default_gemm_shapes() : opt.shapes;

  bool have_blas = false;
  int blas_threads = 0;
  std::string core = "none";
#ifdef DITPOC_HAVE_CBLAS
  have_blas = !opt.no_blas;
  if (have_blas) {
    if (openblas_set_num_threads) openblas_set_num_threads(threads);
    blas_threads = openblas_get_num_threads ? openblas_get_num_threads() : -1;
    core = blas_core();
  }
#endif

  if (!opt.json) {
    std::printf("gemm: C[M,N] = bf16round(A)[M,K] . W[N,K]^T + bias, ours: bf16 W, CPU path %s, %d thread(s)\n",
                ditpoc::cpu::isa_name(ditpoc::cpu::active_isa()), threads);
    if (have_blas) {
      std::printf("yardstick: cblas_sgemm (fp32 W, RowMajor NoTrans/Trans), BLAS threads %s, core %s",
                  blas_threads > 0 ? std::to_string(blas_threads).c_str() : "unknown",
                  core.c_str());
      if (const char* was = std::getenv("DITPOC_BENCH_BLAS_CORE_WAS"))
        std::printf(" (set by the bench in place of %s)", was);
      std::printf("\n");
    }
    else
      std::printf("yardstick: none (%s)\n", opt.no_blas ? "--no-blas" : "built without CBLAS");
    std::printf("%6s %6s %6s | %10s %10s | %8s %8s | %6s | %9s\n", "M", "N", "K", "ours ms",
                "blas ms", "ours GF/s", "blas GF/s", "ratio", "max rdiff");
  }

  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<GemmResult> results;
  for (const GemmShape& s : shapes) {
    // A, bias, C and W (bf16 and packed), with BLAS also W in fp32, the rounded A and its C.
    const double m = static_cast<double>(s.m), n = static_cast<double>(s.n), k = static_cast<double>(s.k);
    ditpoc::bench::require_memory(4 * (m * k + n + m * n) + 4 * n * k + (have_blas ? 4 * (n * k + m * k + m * n) : 0),
                                  "the gemm bench's matrices of shape " + std::to_string(s.m) + "x" +
                                      std::to_string(s.n) + "x" + std::to_string(s.k));
    std::vector<float> A(static_cast<size_t>(s.m * s.k)), bias(static_cast<size_t>(s.n));
    std::vector<uint16_t> Wb(static_cast<size_t>(s.n * s.k));
    for (auto& v : A) v = uni(rng);
    for (auto& v : bias) v = uni(rng);
    const float wscale = 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(1, s.k)));
    for (auto& v : Wb) v = ditpoc::f32_to_bf16(uni(rng) * wscale);
    auto W = ditpoc::cpu::PackedWeight::pack(Wb.data(), s.n, s.k);
    std::vector<float> C(static_cast<size_t>(s.m * s.n));

    GemmResult r;
    r.s = s;
    auto ours = [&] {
      ditpoc::cpu::gemm(A.data(), s.k, s.m, W, bias.data(), C.data(), s.n, true, pool);
    };
#ifdef DITPOC_HAVE_CBLAS
    if (have_blas) {
      std::vector<float> Wf(Wb.size()), Ar(A.size()), Cb(C.size());
      for (size_t i = 0; i < Wb.size(); ++i) Wf[i] = ditpoc::bf16_to_f32(Wb[i]);
      for (size_t i = 0; i < A.size(); ++i) Ar[i] = ditpoc::round_bf16(A[i]);
      auto blas = [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(s.m),
                    static_cast<int>(s.n), static_cast<int>(s.k), 1.0f, Ar.data(),
                    static_cast<int>(s.k), Wf.data(), static_cast<int>(s.k), 0.0f, Cb.data(),
                    static_cast<int>(s.n));
      };
      std::tie(r.ours_s, r.blas_s) = best_time_pair(ours, blas, opt.min_time);
      // sanity: same math up to summation order (BLAS result + bias vs ours)
      double maxabs = 0, maxdiff = 0;
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t j = 0; j < s.n; ++j) {
          const double ref = static_cast<double>(Cb[i * s.n + j]) + bias[j];
          maxabs = std::max(maxabs, std::fabs(ref));
          maxdiff = std::max(maxdiff, std::fabs(ref - C[i * s.n + j]));
        }
      r.max_rel_diff = maxabs > 0 ? maxdiff / maxabs : maxdiff;
    }
#endif
    if (!have_blas) r.ours_s = best_time(ours, opt.min_time);
    const double flops = 2.0 * s.m * s.n * s.k;
    const double ours_gf = flops / r.ours_s * 1e-9;
    const double blas_gf = r.blas_s > 0 ? flops / r.blas_s * 1e-9 : 0;
    if (!opt.json) {
      if (r.blas_s > 0)
        std::printf("%6lld %6lld %6lld | %10.3f %10.3f | %8.1f %8.1f | %6.2f | %9.2e\n",
                    (long long)s.m, (long long)s.n, (long long)s.k, r.ours_s * 1e3, r.blas_s * 1e3,
                    ours_gf, blas_gf, ours_gf / blas_gf, r.max_rel_diff);
      else
        std::printf("%6lld %6lld %6lld | %10.3f %10s | %8.1f %8s | %6s | %9s\n", (long long)s.m,
                    (long long)s.n, (long long)s.k, r.ours_s * 1e3, "-", ours_gf, "-", "-", "-");
      std::fflush(stdout);
    }
    results.push_back(r);
  }

  if (opt.json) {
    std::printf("{\n  \"bench\": \"gemm\",\n  \"cpu_path\": \"%s\",\n  \"threads\": %d,\n  \"blas\": %s,\n  \"blas_threads\": %d,\n"
                "  \"blas_core\": \"%s\",\n  \"blas_core_detected\": \"%s\",\n  \"results\": [\n",
                ditpoc::cpu::isa_name(ditpoc::cpu::active_isa()), threads,
                have_blas ? "\"cblas_sgemm\"" : "null", blas_threads, core.c_str(),
                std::getenv("DITPOC_BENCH_BLAS_CORE_WAS") ? std::getenv("DITPOC_BENCH_BLAS_CORE_WAS")
                                                          : core.c_str());
    for (size_t i = 0; i < results.size(); ++i) {
      const GemmResult& r = results[i];
      const double flops = 2.0 * r.s.m * r.s.n * r.s.k;
      std::printf("    {\"m\": %lld, \"n\": %lld, \"k\": %lld, \"ours_ms\": %.6f, \"ours_gflops\": %.3f",
                  (long long)r.s.m, (long long)r.s.n, (long long)r.s.k, r.ours_s * 1e3,
                  flops / r.ours_s * 1e-9);
      if (r.blas_s > 0)
        std::printf(", \"blas_ms\": %.6f, \"blas_gflops\": %.3f, \"ratio\": %.4f, \"max_rel_diff\": %.3e}",
                    r.blas_s * 1e3, flops / r.blas_s * 1e-9, r.blas_s / r.ours_s, r.max_rel_diff);
      else
        std::printf(", \"blas_ms\": null, \"blas_gflops\": null, \"ratio\": null}");
      std::printf("%s\n", i + 1 < results.size() ? "," : "");
    }
    std::printf("  ]\n}\n");
  }
  return 0;
}

// ditpoc_bench attention: the CPU attention (cpu/attention.h) on one sequence of L tokens (self
// attention, bf16-rounded inputs as the forward gives it, numerics of --precision) against the
// forward's GEMM on the same rows (L x D x D, bf16 weights) in the same run, timed alternately,
// both on the active CPU path; efficiency = attention GFLOP/s ÷ GEMM GFLOP/s (FLOPs: 4·L²·D for
// attention, 2·L·D² for the GEMM).
int attention_main(int argc, char** argv) {
  int64_t L = 1024;
  int heads = 12, threads = 0;
  double min_time = 1.0;
  std::string precision = "bf16";
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) { std::fprintf(stderr, "attention: %s needs a value\n", a.c_str()); return 2; }
    if (a == "--len") L = std::atoll(argv[++i]);
    else if (a == "--precision") precision = argv[++i];
    else if (a == "--heads") heads = std::atoi(argv[++i]);
    else if (a == "--threads") threads = std::atoi(argv[++i]);
    else if (a == "--min-time") min_time = std::atof(argv[++i]);
    else { std::fprintf(stderr, "attention: unknown option '%s'\n", a.c_str()); return 2; }
  }
  // The attention numerics of the forward's precision modes (cpu_backend.cpp); the inputs are
  // bf16 values in every mode here.
  ditpoc::cpu::AttentionNumerics numerics;
  if (precision == "bf16" || precision == "bf16-flash") {
    numerics.bf16_inputs = true;
    numerics.round_p_bf16 = precision == "bf16-flash";
  } else if (precision != "fp32") {
    std::fprintf(stderr, "attention: --precision must be bf16, bf16-flash or fp32\n");
    return 2;
  }
  if (L <= 0 || heads <= 0) { std::fprintf(stderr, "attention: --len and --heads must be positive\n"); return 2; }
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ditpoc::ThreadPool pool(threads);
  const ditpoc::cpu::Isa isa = ditpoc::cpu::active_isa();
  const int64_t D = static_cast<int64_t>(heads) * 128;
  // q, k, v, o and the weight (bf16 and packed).
  ditpoc::bench::require_memory(16.0 * L * D + 4.0 * D * D, "the attention bench's tensors at L = " + std::to_string(L));
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> q(L * D), k(L * D), v(L * D), o(L * D);
  for (auto* t : {&q, &k, &v})
    for (auto& x : *t) x = ditpoc::round_bf16(nd(rng));
  std::vector<uint16_t> wb(D * D);
  for (auto& x : wb) x = ditpoc::f32_to_bf16(nd(rng) * 0.03f);
  const auto W = ditpoc::cpu::PackedWeight::pack(wb.data(), D, D);
  const auto [att_s, gemm_s] = best_time_pair(
      [&] { ditpoc::cpu::attention(q.data(), k.data(), v.data(), 1, L, L, heads, 128, o.data(), pool, numerics, isa); },
      [&] { ditpoc::cpu::gemm(q.data(), D, L, W, nullptr, o.data(), D, true, pool, isa); }, min_time);
  const double att_gf = 4.0 * L * L * D / att_s * 1e-9, gemm_gf = 2.0 * L * D * D / gemm_s * 1e-9;
  std::printf("attention L=%lld heads=%d (D=%lld), %d threads, CPU path %s, precision %s: attention %.1f GFLOP/s, GEMM %lldx%lldx%lld %.1f GFLOP/s, efficiency %.2f\n",
              (long long)L, heads, (long long)D, threads, ditpoc::cpu::isa_name(isa), precision.c_str(), att_gf,
              (long long)L, (long long)D, (long long)D, gemm_gf, att_gf / gemm_gf);
  return 0;
}

void usage() {
  std::fprintf(stderr,
               "usage: ditpoc_bench <command> [options]\n"
               "commands:\n"
               "  gemm [--threads N] [--json] [--min-time S] [--shape MxNxK]... [--no-blas]\n"
               "      CPU GEMM (bf16 weights) against cblas_sgemm when built with a CBLAS\n"
               "      (--no-blas: ours only; bench/compare_gemm_peer.py compares with oneDNN)\n"
               "  forward [--model ID]... [--grid F,H,W] [--ctx-len N] [--batch B] [--threads N]\n"
               "          [--min-time S] [--json]\n"
               "      whole-nonce CPU forward: s/nonce, GFLOP/s, against sgemm on its GEMM shapes\n"
               "  attention [--len L] [--heads H] [--threads N] [--min-time S] [--precision bf16|bf16-flash|fp32]\n"
               "      CPU attention GFLOP/s against the forward's GEMM on the same rows\n"
               "  cuda [--model ID] [--grid F,H,W] [--ctx-len N] [--batch B|auto] [--device N]\n"
               "       [--precision P] [--min-time S] [--gemm-n N] [--json]\n"
               "      whole-nonce CUDA forward: nonces/s, model TFLOP/s, MFU against cuBLASLt's dense\n"
               "      bf16 GEMM rate on the same device, per-op time split\n"
               "  denoise [--model ID]... [--video W,H,T] [--ctx-len N] [--contexts K] [--backend B]\n"
               "          [--device N] [--threads N] [--precision P] [--min-time S] [--json]\n"
               "      one video denoising step (SPEC §13, CFG pair batched): s/step and GFLOP/s\n");
}

bool parse_shape(const char* s, GemmShape& out) {
  long long m, n, k;
  if (std::sscanf(s, "%lldx%lldx%lld", &m, &n, &k) != 3 || m < 0 || n < 0 || k < 0) return false;
  out = {m, n, k};
  return true;
}

int gemm_main(int argc, char** argv) {
  GemmBenchOptions opt;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      opt.threads = std::atoi(argv[++i]);
    } else if (a == "--json") {
      opt.json = true;
    } else if (a == "--no-blas") {
      opt.no_blas = true;
    } else if (a == "--min-time" && i + 1 < argc) {
      opt.min_time = std::atof(argv[++i]);
    } else if (a == "--shape" && i + 1 < argc) {
      GemmShape s;
      if (!parse_shape(argv[++i], s)) {
        std::fprintf(stderr, "bad --shape '%s' (want MxNxK)\n", argv[i]);
        return 2;
      }
      opt.shapes.push_back(s);
    } else {
      std::fprintf(stderr, "gemm: unknown option '%s'\n", a.c_str());
      usage();
      return 2;
    }
  }
  return run_gemm_bench(opt);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
#ifdef DITPOC_HAVE_CBLAS
  maybe_fix_openblas_core(argv);
#endif
  const std::string cmd = argv[1];
  // Errors (too little memory, a bad option value, ...) end the bench with a message and exit
  // code 3, never an abort.
  try {
    if (cmd == "gemm") return gemm_main(argc - 2, argv + 2);
    if (cmd == "forward") return forward_main(argc - 2, argv + 2);
    if (cmd == "cuda") return cuda_main(argc - 2, argv + 2);
    if (cmd == "attention") return attention_main(argc - 2, argv + 2);
    if (cmd == "denoise") return denoise_main(argc - 2, argv + 2);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: %s\n", cmd.c_str(), e.what());
    return 3;
  }
  if (cmd == "-h" || cmd == "--help") {
    usage();
    return 0;
  }
  std::fprintf(stderr, "unknown command '%s'\n", cmd.c_str());
  usage();
  return 2;
}
