#include "backend_factory.h"

#include <stdexcept>

#ifdef DITPOC_HAVE_CUDA_BACKEND
#include "cuda/cuda_backend.h"
#endif

namespace ditpoc {

namespace {

const char* const kNoCuda = "this build has no CUDA backend: CUDA toolkit/cuBLASLt not found at configure time";

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

std::string resolve_backend(const std::string& kind) {
  if (kind == "cpu") return kind;
  if (kind == "cuda") {
    if (!cuda_backend_compiled()) throw std::runtime_error(kNoCuda);
    return kind;
  }
  if (kind == "auto" || kind.empty()) return visible_cuda_devices() > 0 ? "cuda" : "cpu";
  throw std::invalid_argument("backend must be auto, cpu or cuda, got '" + kind + "'");
}

std::unique_ptr<Backend> make_backend(const std::string& kind, int device, std::shared_ptr<const ModelWeights> weights,
                                      int threads) {
  const std::string k = resolve_backend(kind);
  if (k == "cpu") return make_cpu_backend(std::move(weights), threads);
#ifdef DITPOC_HAVE_CUDA_BACKEND
  return make_cuda_backend(std::move(weights), device, threads);
#else
  (void)device;
  throw std::runtime_error(kNoCuda);
#endif
}

std::unique_ptr<Backend> make_backend_random(const std::string& kind, int device, const ModelConfig& cfg,
                                             const std::string& weights_seed, int threads) {
  const std::string k = resolve_backend(kind);
  if (k == "cpu") {
    ThreadPool pool(threads);
    auto w = std::make_shared<ModelWeights>(random_weights(cfg, weights_seed, pool));
    return make_cpu_backend(std::move(w), threads);
  }
#ifdef DITPOC_HAVE_CUDA_BACKEND
  return make_cuda_backend_random(cfg, weights_seed, device, threads);
#else
  (void)device;
  throw std::runtime_error(kNoCuda);
#endif
}

}  // namespace ditpoc
