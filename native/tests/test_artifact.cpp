// The native artifact (SPEC §5 step 9) and nonce derivation against Gonka's golden vectors in
// test/fixtures/conformance/rng.json (the TS tests hold the same file), plus the fp16 rounding's
// edges and the refusals. test/native-artifacts.test.ts holds them bit for bit against the TS twin.
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "artifact.h"
#include "backend.h"
#include "check.h"
#include "json_reader.h"
#include "model_config.h"
#include "nonce_artifacts.h"
#include "nonce_inputs.h"
#include "seeding.h"

using namespace ditpoc;

static std::string read_file(const char* path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

static float f16_to_f32(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const float sign = (h & 0x8000) ? -1.f : 1.f;
  if (e == 0) return sign * std::ldexp(static_cast<float>(m), -24);
  if (e == 31) return m ? NAN : sign * INFINITY;
  return sign * std::ldexp(static_cast<float>(1024 + m), e - 25);
}

// A backend whose "forward" writes a seeded function of each nonce's seeds (one nonce's output
// non-finite): the nonce path's plumbing under Backend::forward_then's default, the one GPU
// backends take.
class SeededOutputBackend : public Backend {
 public:
  explicit SeededOutputBackend(const ModelConfig& cfg) : Backend(shell(cfg)) {}
  std::string name() const override { return "seeded-output"; }
  int threads() const override { return 1; }
  void forward(const BatchRequest& req, float* out, const std::atomic<bool>*) override {
    validate_request(config(), req);
    const int64_t m = output_size(req.grid);
    for (size_t b = 0; b < req.nonces.size(); ++b) {
      const NonceInput& n = req.nonces[b];
      normal(n.latent_seed ^ n.context_seed, m, out + b * m);
      out[b * m] += static_cast<float>(n.timestep + 10 * n.experts[0]);
      if (n.timestep % 7 == 3) out[b * m + m / 2] = NAN;
    }
  }

 private:
  static std::shared_ptr<const ModelWeights> shell(const ModelConfig& cfg) {
    auto w = std::make_shared<ModelWeights>();
    w->config = &cfg;
    w->identity = "seeded-output";
    return w;
  }
};

static void check_nonce_path() {
  const ModelConfig& cfg = find_model("wan-tiny");
  SeededOutputBackend backend(cfg);
  NonceArtifactsRequest req;
  req.grid = {1, 2, 2};
  req.ctx_len = 16;
  req.block_hash = "3F1A9C0B";
  req.public_key = "02a1b2c3";
  req.k = 12;
  for (int32_t n = -20; n < 44; ++n) req.nonces.push_back(n * 1000003);
  std::vector<uint16_t> got(req.nonces.size() * req.k, 0xffff);
  std::vector<uint8_t> finite(req.nonces.size(), 7);
  nonce_artifacts(backend, req, got.data(), finite.data());
  // Each nonce on its own, through the pieces: derive, forward, artifact.
  const RoundSeeds round{req.block_hash, req.public_key, cfg.num_layers, false};
  const int64_t m = backend.output_size(req.grid);
  int non_finite = 0;
  for (size_t i = 0; i < req.nonces.size(); ++i) {
    BatchRequest one;
    one.grid = req.grid;
    one.ctx_len = req.ctx_len;
    one.householder_seeds = householder_seeds(req.block_hash, cfg.num_layers);
    one.nonces.push_back(derive_nonce_input(round, req.nonces[i]));
    std::vector<float> y(static_cast<size_t>(m));
    backend.forward(one, y.data(), nullptr);
    std::vector<uint16_t> want(req.k, 0);
    const bool ok = compute_artifact(y.data(), m, req.block_hash, req.public_key, req.nonces[i], req.k, want.data());
    non_finite += !ok;
    CHECK_MSG(finite[i] == (ok ? 1 : 0), "nonce %d: finite %d", req.nonces[i], finite[i]);
    for (int j = 0; j < req.k; ++j) CHECK_MSG(got[i * req.k + j] == want[j], "nonce %d value %d", req.nonces[i], j);
  }
  CHECK(non_finite > 0 && non_finite < static_cast<int>(req.nonces.size()));  // both kinds were seen
  // Refusals before the forward: k past the output, an empty public key.
  req.k = static_cast<int>(m) + 1;
  CHECK_THROWS_WITH(nonce_artifacts(backend, req, got.data(), finite.data()), "smaller than k");
  req.k = 12;
  req.public_key.clear();
  CHECK_THROWS_WITH(nonce_artifacts(backend, req, got.data(), finite.data()), "public key");
}

static std::string q_of(const json::Value& c) {
  return artifact_string(c.find("block_hash")->as_string(), c.find("public_key")->as_string(),
                         static_cast<int32_t>(c.find("nonce")->as_int()));
}

int main() {
  const std::string text = read_file("test/fixtures/conformance/rng.json");
  CHECK_MSG(!text.empty(), "run from the repository root: test/fixtures/conformance/rng.json not found");
  if (text.empty()) return check::finish("test_artifact");
  const json::Value golden = json::parse(text);

  // pick: exact indices.
  for (const auto& c : golden.find("pick")->items()) {
    const int k = static_cast<int>(c.find("k")->as_int());
    const auto idx = pick(seed32(q_of(c) + "_pick_" + std::to_string(k)), c.find("dim")->as_int(), k);
    const auto& want = c.find("indices_by_ascending_score")->items();
    CHECK(idx.size() == want.size());
    for (size_t i = 0; i < idx.size() && i < want.size(); ++i) CHECK(idx[i] == static_cast<uint32_t>(want[i].as_int()));
  }
  // haar: within 1e-5 relative of Gonka's float32 torch values.
  for (const auto& c : golden.find("haar")->items()) {
    std::vector<float> x;
    for (const auto& v : c.find("x")->items()) x.push_back(static_cast<float>(v.as_double()));
    const auto y = haar(q_of(c), x);
    const auto& want = c.find("y")->items();
    CHECK(y.size() == want.size());
    for (size_t i = 0; i < y.size() && i < want.size(); ++i) {
      const double w = want[i].as_double();
      CHECK_MSG(std::fabs(y[i] - w) <= 1e-5 * std::max(1.0, std::fabs(w)), "haar[%zu] %g vs %g", i, y[i], w);
    }
  }
  // artifact: exactly Gonka's fp16 values.
  for (const auto& c : golden.find("artifact")->items()) {
    std::vector<float> y;
    for (const auto& v : c.find("output_vector")->items()) y.push_back(static_cast<float>(v.as_double()));
    const int k = static_cast<int>(c.find("k")->as_int());
    std::vector<uint16_t> a(static_cast<size_t>(k), 0xffff);
    const bool ok = compute_artifact(y.data(), static_cast<int64_t>(y.size()), c.find("block_hash")->as_string(),
                                     c.find("public_key")->as_string(), static_cast<int32_t>(c.find("nonce")->as_int()), k,
                                     a.data());
    CHECK(ok);
    const auto& want = c.find("artifact_f16_values")->items();
    for (int i = 0; i < k; ++i) CHECK_MSG(f16_to_f32(a[i]) == static_cast<float>(want[i].as_double()), "artifact[%d]", i);
    // A non-finite value anywhere, picked or not, yields no artifact and writes nothing.
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      std::vector<float> z = y;
      z[200] = bad;
      std::vector<uint16_t> b(static_cast<size_t>(k), 0xabcd);
      CHECK(!compute_artifact(z.data(), static_cast<int64_t>(z.size()), "b", "p", 0, k, b.data()));
      CHECK(b[0] == 0xabcd);
    }
  }

  // fp16 rounding: nearest even at the subnormal, normal and overflow edges.
  CHECK(f32_to_f16_bits(1.0f) == 0x3c00);
  CHECK(f32_to_f16_bits(-2.0f) == 0xc000);
  CHECK(f32_to_f16_bits(-0.0f) == 0x8000);
  CHECK(f32_to_f16_bits(65504.0f) == 0x7bff);
  CHECK(f32_to_f16_bits(65519.0f) == 0x7bff);
  CHECK(f32_to_f16_bits(65520.0f) == 0x7c00);
  CHECK(f32_to_f16_bits(-1e9f) == 0xfc00);
  CHECK(f32_to_f16_bits(NAN) == 0x7e00);
  CHECK(f32_to_f16_bits(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(f32_to_f16_bits(std::ldexp(1.0f, -25)) == 0x0000);   // a tie: to even (0)
  CHECK(f32_to_f16_bits(std::ldexp(3.0f, -25)) == 0x0002);   // 1.5 ulp: to even (2)
  CHECK(f32_to_f16_bits(std::ldexp(1023.5f, -24)) == 0x0400);  // rounds up to the smallest normal
  CHECK(f32_to_f16_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie below: to even
  CHECK(f32_to_f16_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);  // tie above: to even
  CHECK(f32_to_f16_bits(2047.5f / 1024.0f) == 0x4000);  // the carry into the exponent
  for (uint32_t h = 0; h < 0x7c00; ++h) CHECK(f32_to_f16_bits(f16_to_f32(static_cast<uint16_t>(h))) == h);

  // Refusals: k past the output, k < 1, empty round strings, pick's bounds.
  float y4[4] = {1, 2, 3, 4};
  uint16_t out[8];
  CHECK_THROWS_WITH(compute_artifact(y4, 4, "b", "p", 0, 5, out), "smaller than k = 5");
  CHECK_THROWS_WITH(compute_artifact(y4, 4, "b", "p", 0, 0, out), "k must be a positive integer");
  CHECK_THROWS_WITH(compute_artifact(y4, 4, "", "p", 0, 2, out), "block hash");
  CHECK_THROWS_WITH(pick(1, 3, 4), "pick: k");
  CHECK(pick(1, 3, 0).empty());

  // Nonce derivation: the strings and the integer draws of SPEC §5 steps 1–4.
  const RoundSeeds round{"3F1A9C0B", "02a1b2c3", 5, false};
  CHECK(nonce_string(round, -5) == "3F1A9C0B_02a1b2c3_nonce-5");
  CHECK(artifact_string("b", "p", 7) == "b_p_nonce_7");
  const NonceInput in = derive_nonce_input(round, 42);
  const std::string p = "3F1A9C0B_02a1b2c3_nonce42";
  CHECK(in.latent_seed == seed32(p));
  CHECK(in.context_seed == seed32(p + "_context"));
  CHECK(!in.latent_strong);
  float u = 0;
  uniform(seed32(p + "_timestep"), 1, &u);
  CHECK(in.timestep == std::min(999, static_cast<int>(std::floor(1000.0 * u))));
  CHECK(in.experts.size() == 5);
  for (int i = 0; i < 5; ++i) CHECK(in.experts[i] == (mm(static_cast<uint32_t>(i), seed32(p + "_experts")) >> 31));
  const NonceInput strong = derive_nonce_input({"3F1A9C0B", "02a1b2c3", 5, true}, 42);
  CHECK(strong.latent_strong && strong.latent_words == sha256_words(p));
  CHECK_THROWS_WITH(derive_nonce_input({"", "p", 1, false}, 0), "block hash");
  CHECK_THROWS_WITH(derive_nonce_input({"b", "p", 0, false}, 0), "num_layers");
  const auto hh = householder_seeds("3F1A9C0B", 3);
  CHECK(hh.size() == 3 && hh[2] == seed32("3F1A9C0B_layer_2_householder"));
  check_nonce_path();
  return check::finish("test_artifact");
}
