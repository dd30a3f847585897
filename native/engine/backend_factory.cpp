#include "backend_factory.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "checkpoint.h"
#include "cpu/cpu_isa.h"

#ifdef DITPOC_HAVE_CUDA_BACKEND
#include "cuda/cuda_backend.h"
#endif

namespace ditpoc {

namespace {

const char* const kNoCuda = "this build has no CUDA backend: CUDA toolkit/cuBLASLt not found at configure time";

// A sink that applies `transform` to each tensor before passing it on.
TensorSink transformed(const ModelConfig& cfg, const WeightTransform& transform, ThreadPool& pool,
                                        const TensorSink& next) {
  if (transform.kind == WeightTransform::Kind::None) return next;
  std::map<std::string, TensorSpec> specs;
  for (const auto& s : tensor_specs(cfg)) specs.emplace(s.name, s);
  return [&cfg, &transform, &pool, &next, specs = std::move(specs)](int expert, const std::string& key, Tensor& t) {
    apply_weight_transform(cfg, expert, specs.at(key), t, transform, pool);
    next(expert, key, t);
  };
}

// The weights' identity: their source ("random:<seed>" or the checkpoint path), "+<transform>"
// when one is applied.
std::string identity_of(const std::string& source, const WeightTransform& transform) {
  return transform.kind == WeightTransform::Kind::None ? source : source + "+" + describe(transform);
}

int visible_cuda_devices() {
#ifdef DITPOC_HAVE_CUDA_BACKEND
  return cuda_device_count();
#else
  return 0;
#endif
}

}  // namespace

bool cuda_backend_compiled() {
#ifdef DITPOC_HAVE_CUDA_BACKEND
  return true;
#else
  return false;
#endif
}

std::vector<std::string> available_backends() {
  std::vector<std::string> out{"cpu"};
  if (visible_cuda_devices() > 0) out.push_back("cuda");
  return out;
}

namespace {
// "cpu" or "cpu:<path>" (a CPU path of cpu_isa.h, for comparisons and calibration).
bool is_cpu_kind(const std::string& k) { return k == "cpu" || k.rfind("cpu:", 0) == 0; }
cpu::Isa cpu_path_of(const std::string& k) { return k == "cpu" ? cpu::active_isa() : cpu::parse_isa(k.substr(4)); }
std::unique_ptr<Backend> make_cpu(const std::string& k, std::shared_ptr<const ModelWeights> w, int threads) {
  return make_cpu_backend(std::move(w), threads, cpu_path_of(k));
}
std::unique_ptr<Backend> make_cpu_streamed(const std::string& k, const ModelConfig& cfg, const std::string& identity,
                                           const WeightStream& stream, int threads) {
  return make_cpu_backend_streamed(cfg, identity, stream, threads, cpu_path_of(k));
}
}  // namespace

std::string resolve_backend(const std::string& kind) {
  if (kind == "cpu") return kind;
  if (is_cpu_kind(kind)) {
    cpu::Isa isa = cpu::parse_isa(kind.substr(4));  // std::invalid_argument for an unknown path
    const auto ok = cpu::supported_isas();
    if (std::find(ok.begin(), ok.end(), isa) == ok.end())
      throw std::runtime_error("backend " + kind + ": this CPU cannot run that path");
    return kind;
  }
  if (kind == "cuda") {
    if (!cuda_backend_compiled()) throw std::runtime_error(kNoCuda);
    return kind;
  }
  if (kind == "auto" || kind.empty()) return visible_cuda_devices() > 0 ? "cuda" : "cpu";
  throw std::invalid_argument("backend must be auto, cpu, cpu:<path> or cuda, got '" + kind + "'");
}

std::unique_ptr<Backend> make_backend(const std::string& kind, int device, std::shared_ptr<const ModelWeights> weights,
                                      int threads) {
  const std::string k = resolve_backend(kind);
  if (is_cpu_kind(k)) return make_cpu(k, std::move(weights), threads);
#ifdef DITPOC_HAVE_CUDA_BACKEND
  return make_cuda_backend(std::move(weights), device, threads);
#else
  (void)device;
  throw std::runtime_error(kNoCuda);
#endif
}

std::unique_ptr<Backend> make_backend_random(const std::string& kind, int device, const ModelConfig& cfg,
                                             const std::string& weights_seed, int threads,
                                             const WeightTransform& transform, const ProgressFn& progress) {
  const std::string k = resolve_backend(kind);
  const std::string identity = identity_of("random:" + weights_seed, transform);
  if (is_cpu_kind(k)) {
    ThreadPool pool(threads);
    return make_cpu_streamed(
        k, cfg, identity,
        [&](const TensorSink& take) {
          stream_random_weights(cfg, weights_seed, pool, transformed(cfg, transform, pool, take), progress);
        },
        threads);
  }
#ifdef DITPOC_HAVE_CUDA_BACKEND
  if (transform.kind == WeightTransform::Kind::None) return make_cuda_backend_random(cfg, weights_seed, device, threads);
  ThreadPool pool(threads);
  return make_cuda_backend_streamed(
      cfg, identity,
      [&](const TensorSink& upload) {
        stream_random_weights(cfg, weights_seed, pool, transformed(cfg, transform, pool, upload), progress);
      },
      device, threads);
#else
  (void)device, (void)progress;
  throw std::runtime_error(kNoCuda);
#endif
}

std::unique_ptr<Backend> make_backend_checkpoint(const std::string& kind, int device, const ModelConfig& cfg,
                                                 const std::string& dir, int threads,
                                                 const WeightTransform& transform, const ProgressFn& progress) {
  const std::string k = resolve_backend(kind);
  ThreadPool pool(threads);
  const std::string identity = identity_of(dir, transform);
  if (is_cpu_kind(k)) {
    detect_checkpoint_layout(cfg, dir);  // a wrong folder is reported before the memory check
    return make_cpu_streamed(
        k, cfg, identity,
        [&](const TensorSink& take) {
          stream_checkpoint(cfg, dir, pool, transformed(cfg, transform, pool, take), progress);
        },
        threads);
  }
#ifdef DITPOC_HAVE_CUDA_BACKEND
  return make_cuda_backend_streamed(
      cfg, identity,
      [&](const TensorSink& upload) {
        stream_checkpoint(cfg, dir, pool, transformed(cfg, transform, pool, upload), progress);
      },
      device, threads);
#else
  (void)device;
  throw std::runtime_error(kNoCuda);
#endif
}

}  // namespace ditpoc
