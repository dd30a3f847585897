// The denoiser forward (SPEC §13 step 4) on the CPU backend: the official unpatchify layout,
// denoise = the reflection-free single-expert nonce forward unpatchified, batch and thread
// independence, shared embeddings, cancellation, and request validation.
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "backend.h"
#include "check.h"
#include "seeding.h"
#include "weights.h"

using namespace ditpoc;

namespace {

bool same_bits(const float* a, const float* b, int64_t n) { return std::memcmp(a, b, sizeof(float) * n) == 0; }

double rel_l2(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// Every output element is the head value of the official (pt, ph, pw, c) layout, c fastest.
void test_unpatchify() {
  const ModelConfig& cfg = find_model("wan-tiny");  // patch (1,2,2), C_out 16
  const Grid g{2, 3, 5};
  const int C = cfg.out_channels, V = cfg.head_out();
  std::vector<float> y(g.tokens() * V), out(y.size(), NAN);
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(i);
  unpatchify(cfg, g, y.data(), out.data());
  const int Fz = 2, Hz = 6, Wz = 10;
  int64_t checked = 0;
  for (int c = 0; c < C; ++c)
    for (int f = 0; f < Fz; ++f)
      for (int h = 0; h < Hz; ++h)
        for (int w = 0; w < Wz; ++w) {
          const int64_t tok = (int64_t(f) * g.height + h / 2) * g.width + w / 2;
          const float want = static_cast<float>(tok * V + ((h % 2) * 2 + (w % 2)) * C + c);
          const float got = out[((int64_t(c) * Fz + f) * Hz + h) * Wz + w];
          if (got != want) {
            CHECK_MSG(got == want, "unpatchify[c=%d,f=%d,h=%d,w=%d] = %g, want %g", c, f, h, w, got, want);
            return;
          }
          ++checked;
        }
  CHECK(checked == static_cast<int64_t>(y.size()));
}

struct Inputs {
  std::vector<float> latent, ctx_a, ctx_b;
  DenoiseRequest req;
};

Inputs make_inputs(const ModelConfig& cfg) {
  Inputs in;
  in.req.latent_shape = {cfg.in_channels, 3, 4, 6};
  in.latent.resize(static_cast<size_t>(cfg.in_channels) * 3 * 4 * 6);
  normal(11, static_cast<int64_t>(in.latent.size()), in.latent.data());
  in.req.ctx_len = 12;
  in.ctx_a.resize(static_cast<size_t>(12) * cfg.text_dim);
  in.ctx_b.resize(in.ctx_a.size());
  normal(12, static_cast<int64_t>(in.ctx_a.size()), in.ctx_a.data());
  normal(13, static_cast<int64_t>(in.ctx_b.size()), in.ctx_b.data());
  in.req.latent = in.latent.data();
  in.req.contexts = {in.ctx_a.data(), in.ctx_b.data()};
  in.req.timestep = 873;
  in.req.expert = 1;
  return in;
}

void test_denoise(const ModelConfig& cfg, std::shared_ptr<const ModelWeights> w) {
  auto be = make_cpu_backend(w, 2);
  Inputs in = make_inputs(cfg);
  DenoiseRequest& req = in.req;
  const int64_t n = be->denoise_output_size(req);
  CHECK(n == int64_t(cfg.out_channels) * 3 * 4 * 6);

  for (Precision p : {Precision::Bf16, Precision::Fp32, Precision::Bf16Flash, Precision::Fp8Attention}) {
    req.precision = p;
    std::vector<float> both(2 * n, NAN), a(n, NAN), b(n, NAN);
    be->denoise(req, both.data());
    for (float v : both) CHECK(std::isfinite(v));
    // Batch independence: each context alone gives the same bits as inside the batch.
    DenoiseRequest one = req;
    one.contexts = {in.ctx_a.data()};
    be->denoise(one, a.data());
    one.contexts = {in.ctx_b.data()};
    be->denoise(one, b.data());
    CHECK(same_bits(both.data(), a.data(), n));
    CHECK(same_bits(both.data() + n, b.data(), n));

    // The denoise is the nonce forward with one expert, no reflections, unpatchified; nonces with
    // their own copies of the latent (no shared embedding) give the same bits.
    BatchRequest batch = denoise_batch(cfg, req);
    CHECK(!batch.reflections && batch.householder_seeds.empty());
    CHECK(batch.grid.frames == 3 && batch.grid.height == 2 && batch.grid.width == 3);
    std::vector<float> latent_copy = in.latent;
    batch.nonces[1].latent = latent_copy.data();
    const int64_t per = be->output_size(batch.grid);
    std::vector<float> y(2 * per), u(2 * n);
    be->forward(batch, y.data());
    for (int k = 0; k < 2; ++k) unpatchify(cfg, batch.grid, y.data() + k * per, u.data() + k * n);
    CHECK(same_bits(u.data(), both.data(), 2 * n));
  }
  req.precision = Precision::Bf16;

  // Thread count does not change a bit.
  {
    auto be1 = make_cpu_backend(w, 1);
    std::vector<float> y1(2 * n), y2(2 * n);
    be1->denoise(req, y1.data());
    be->denoise(req, y2.data());
    CHECK(same_bits(y1.data(), y2.data(), 2 * n));
  }

  // Reflections matter: the same forward with them is a different function.
  {
    BatchRequest batch = denoise_batch(cfg, req);
    std::vector<float> plain(2 * be->output_size(batch.grid)), reflected(plain.size());
    be->forward(batch, plain.data());
    batch.reflections = true;
    for (int i = 0; i < cfg.num_layers; ++i) batch.householder_seeds.push_back(1000 + i);
    be->forward(batch, reflected.data());
    CHECK(rel_l2(reflected.data(), plain.data(), int64_t(plain.size())) > 1e-2);
  }

  // A set cancel flag stops the denoise.
  {
    std::atomic<bool> cancel{true};
    std::vector<float> y(2 * n);
    bool cancelled = false;
    try {
      be->denoise(req, y.data(), &cancel);
    } catch (const Cancelled&) {
      cancelled = true;
    }
    CHECK(cancelled);
  }

  // Validation, with the reason in the message.
  {
    std::vector<float> y(2 * n);
    auto with = [&](auto edit) {
      DenoiseRequest r = req;
      edit(r);
      return r;
    };
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.latent_shape[0] = 4; }), y.data()),
                      "has 4 channels, model wan-tiny takes 16");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.latent_shape[3] = 5; }), y.data()),
                      "W must be a positive multiple of the patch size 2");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.latent_shape[1] = 0; }), y.data()),
                      "F must be a positive multiple");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.latent_shape[2] = 2050; }), y.data()),
                      "more than 1024 patches");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.timestep = 1000; }), y.data()), "timestep");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.timestep = -1; }), y.data()), "timestep");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.expert = 2; }), y.data()),
                      "expert 2 out of range");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.ctx_len = 0; }), y.data()), "ctx_len");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.ctx_len = 4097; }), y.data()), "ctx_len");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.contexts.clear(); }), y.data()),
                      "at least one context");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.contexts[1] = nullptr; }), y.data()),
                      "context #1 is missing");
    CHECK_THROWS_WITH(be->denoise(with([](DenoiseRequest& r) { r.latent = nullptr; }), y.data()), "no latent");
    // Single-expert models have expert 0 only.
    DenoiseRequest r = req;
    r.expert = 1;
    CHECK_THROWS_WITH(validate_denoise_request(find_model("wan2.1-t2v-1.3b"), r), "has 1 expert(s)");
    // A request far beyond host memory is refused before anything is allocated.
    r = with([](DenoiseRequest& q) { q.latent_shape = {16, 1024, 2048, 2048}; });
    CHECK_THROWS_WITH(be->denoise(r, y.data()), "host memory");
    // A nonce forward with reflections off must not carry seeds.
    BatchRequest batch = denoise_batch(cfg, req);
    batch.householder_seeds.assign(cfg.num_layers, 1);
    CHECK_THROWS_WITH(be->forward(batch, y.data()), "without reflections");
  }
}

}  // namespace

int main() {
  test_unpatchify();
  const ModelConfig& cfg = find_model("wan-tiny");
  ThreadPool pool(2);
  auto w = std::make_shared<ModelWeights>(random_weights(cfg, "denoise-test", pool));
  try {
    test_denoise(cfg, w);
  } catch (const std::exception& e) {
    std::printf("test_denoise: exception: %s\n", e.what());
    return 1;
  }
  return check::finish("test_denoise");
}
