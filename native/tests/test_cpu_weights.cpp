// How the CPU backend takes its weights: streamed tensor by tensor (make_backend_random,
// make_cpu_backend_streamed) it computes the same bits and gives the same tensor() values as a
// backend built from the whole model in memory, with and without a weight transform; a stream
// that sends a tensor twice, of the wrong shape, unknown or not at all is refused; a model or a
// forward that cannot fit in host memory is refused before anything is allocated.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "backend_factory.h"
#include "check.h"
#include "seeding.h"
#include "weight_transforms.h"
#include "weights.h"

using namespace ditpoc;

namespace {

// Nonces routed across both experts of wan-tiny (mixed per layer), with their seeds.
BatchRequest mixed_request(const ModelConfig& cfg, Precision precision) {
  BatchRequest req;
  req.grid = {2, 4, 4};
  req.ctx_len = 16;
  req.precision = precision;
  for (int i = 0; i < cfg.num_layers; ++i) req.householder_seeds.push_back(seed32("cpu_weights_layer_" + std::to_string(i)));
  for (int b = 0; b < 3; ++b) {
    NonceInput n;
    n.latent_seed = seed32("cpu_weights_latent_" + std::to_string(b));
    n.context_seed = seed32("cpu_weights_context_" + std::to_string(b));
    n.timestep = 150 + 300 * b;
    for (int i = 0; i < cfg.num_layers; ++i) n.experts.push_back(static_cast<uint8_t>((i + b) % 2));
    req.nonces.push_back(std::move(n));
  }
  return req;
}

std::vector<float> run(Backend& be, const BatchRequest& req) {
  std::vector<float> out(req.nonces.size() * static_cast<size_t>(be.output_size(req.grid)));
  be.forward(req, out.data());
  return out;
}

// `streamed` against `in_memory` (built from `w`): identity, every tensor of every expert (also
// against `w` itself), and the forward bits at two precisions.
void check_same(const ModelWeights& w, Backend& in_memory, Backend& streamed, const char* what) {
  const ModelConfig& cfg = *w.config;
  CHECK_MSG(streamed.identity() == in_memory.identity(), "%s: identity '%s' vs '%s'", what, streamed.identity().c_str(),
            in_memory.identity().c_str());
  CHECK_MSG(streamed.identity() == w.identity, "%s: identity '%s' vs the weights' '%s'", what,
            streamed.identity().c_str(), w.identity.c_str());
  int64_t differ = 0;
  for (int x = 0; x < cfg.num_experts(); ++x)
    for (const auto& spec : tensor_specs(cfg)) {
      const Tensor a = streamed.tensor(x, spec.name), b = in_memory.tensor(x, spec.name);
      const Tensor& src = w.experts[x].at(spec.name);
      if (a.shape != spec.shape || a.data != b.data || a.data != src.data || b.shape != spec.shape) ++differ;
    }
  CHECK_MSG(differ == 0, "%s: %lld tensor(s) differ", what, static_cast<long long>(differ));
  for (Precision p : {Precision::Bf16, Precision::Fp32}) {
    const BatchRequest req = mixed_request(cfg, p);
    const std::vector<float> a = run(streamed, req), b = run(in_memory, req);
    CHECK_MSG(a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0,
              "%s: forward bits differ (precision %d)", what, static_cast<int>(p));
  }
}

void test_streamed_equals_in_memory() {
  const ModelConfig& cfg = find_model("wan-tiny");
  ThreadPool pool(2);
  for (const char* t : {"none", "noise:0.02:cpu-weights", "int4:64", "fp8"}) {
    const WeightTransform transform = parse_weight_transform(t);
    auto w = std::make_shared<ModelWeights>(random_weights(cfg, "cpu-weights", pool));
    apply_weight_transform(*w, transform, pool);
    auto in_memory = make_cpu_backend(w, 2);
    auto streamed = make_backend_random("cpu", 0, cfg, "cpu-weights", 2, transform);
    check_same(*w, *in_memory, *streamed, t);
  }
}

void test_tensor_errors() {
  const ModelConfig& cfg = find_model("wan-tiny");
  auto be = make_backend_random("cpu", 0, cfg, "cpu-weights", 1);
  CHECK_THROWS_WITH(be->tensor(0, "blocks.99.modulation"), "missing tensor 'blocks.99.modulation'");
  CHECK_THROWS_WITH(be->tensor(2, "head.modulation"), "expert 2");
  CHECK_THROWS_WITH(be->tensor(-1, "head.modulation"), "expert -1");
}

// A stream of wan-tiny's random tensors with one fault injected at tensor `at`.
enum class Fault { Twice, WrongShape, Unknown, Missing, BadExpert };

void stream_with_fault(const ModelConfig& cfg, ThreadPool& pool, const TensorSink& sink, Fault fault, int at) {
  int i = 0;
  stream_random_weights(cfg, "cpu-weights", pool, [&](int x, const std::string& key, Tensor& t) {
    if (i++ != at) return sink(x, key, t);
    switch (fault) {
      case Fault::Twice: {
        Tensor copy = t;
        sink(x, key, copy);
        return sink(x, key, t);
      }
      case Fault::WrongShape: t.shape.back() += 1; t.data.resize(static_cast<size_t>(t.numel())); return sink(x, key, t);
      case Fault::Unknown: return sink(x, key + ".extra", t);
      case Fault::Missing: return;
      case Fault::BadExpert: return sink(cfg.num_experts(), key, t);
    }
  });
}

void test_stream_faults() {
  const ModelConfig& cfg = find_model("wan-tiny");
  ThreadPool pool(2);
  auto make = [&](Fault f, int at) {
    return make_cpu_backend_streamed(
        cfg, "faulty", [&](const TensorSink& sink) { stream_with_fault(cfg, pool, sink, f, at); }, 1, cpu::active_isa());
  };
  CHECK_THROWS_WITH(make(Fault::Twice, 2), "sent twice");  // a bias, widened at once
  CHECK_THROWS_WITH(make(Fault::Twice, 5), "sent twice");  // a matrix, waiting to be packed
  CHECK_THROWS_WITH(make(Fault::WrongShape, 1), "wrong shape");
  CHECK_THROWS_WITH(make(Fault::Unknown, 7), "unknown tensor");
  CHECK_THROWS_WITH(make(Fault::Missing, 40), "ended without tensor");
  CHECK_THROWS_WITH(make(Fault::BadExpert, 3), "of expert 2");
  // A stream's own error propagates.
  CHECK_THROWS_WITH(make_cpu_backend_streamed(
                        cfg, "throwing", [](const TensorSink&) { throw std::runtime_error("disk gone"); }, 1,
                        cpu::active_isa()),
                    "disk gone");
}

// A model far larger than any host: refused before the stream is asked for a single tensor.
void test_refuses_what_cannot_fit() {
  ModelConfig huge = find_model("wan-tiny");
  huge.id = "huge-test-model";
  huge.dim = 1 << 16;
  huge.ffn_dim = 1 << 20;
  huge.num_layers = 4096;  // about 2^49 parameters per expert
  bool streamed = false;
  CHECK_THROWS_WITH(make_cpu_backend_streamed(
                        huge, "random:huge", [&](const TensorSink&) { streamed = true; }, 1, cpu::active_isa()),
                    "the CPU backend's packed weights of huge-test-model needs");
  CHECK(!streamed);
  CHECK(cpu_weight_bytes(huge) > (int64_t(1) << 50));

  // A forward whose workspace cannot fit: refused with the request's size, the backend usable after.
  const ModelConfig& cfg = find_model("wan-tiny");
  auto be = make_backend_random("cpu", 0, cfg, "cpu-weights", 1);
  BatchRequest req = mixed_request(cfg, Precision::Bf16);
  req.grid = {1024, 1024, 1024};
  std::vector<float> out(1);
  CHECK_THROWS_WITH(be->forward(req, out.data()), "needs");
  const BatchRequest ok = mixed_request(cfg, Precision::Bf16);
  CHECK(!run(*be, ok).empty());
}

}  // namespace

int main() {
  test_streamed_equals_in_memory();
  test_tensor_errors();
  test_stream_faults();
  test_refuses_what_cannot_fit();
  return check::finish("test_cpu_weights");
}
