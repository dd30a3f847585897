#include "backend.h"

#include "host_memory.h"
#include "thread_pool.h"

namespace ditpoc {

Precision parse_precision(const std::string& text) {
  if (text == "bf16") return Precision::Bf16;
  if (text == "fp32") return Precision::Fp32;
  if (text == "bf16-flash") return Precision::Bf16Flash;
  if (text == "fp8-attention") return Precision::Fp8Attention;
  throw std::invalid_argument("precision must be bf16, fp32, bf16-flash or fp8-attention, got '" + text + "'");
}

Tensor Backend::tensor(int expert, const std::string& key) const {
  if (weights_->experts.empty())
    throw std::runtime_error("tensor(): this model's weights live only on the GPU (generated or streamed there)");
  if (expert < 0 || expert >= static_cast<int>(weights_->experts.size()))
    throw std::out_of_range("tensor(): expert " + std::to_string(expert) + " of " + config().id + ", which has " +
                            std::to_string(weights_->experts.size()));
  return weights_->experts[expert].at(key);
}

namespace {
// Host threads for the post-processing of backends whose forward runs elsewhere (a GPU), so a
// large batch's artifacts hold up the next forward for as short a time as the cores allow.
// Never destroyed: an engine thread may still use it while the process exits.
ThreadPool& host_pool() {
  static ThreadPool* pool = new ThreadPool(0);
  return *pool;
}
}  // namespace

void Backend::forward_then(const BatchRequest& req, float* out, const std::atomic<bool>* cancel,
                           const std::function<void(int64_t, int64_t)>& per_outputs) {
  forward(req, out, cancel);
  if (!req.nonces.empty()) host_pool().parallel_for(static_cast<int64_t>(req.nonces.size()), per_outputs);
}

int64_t Backend::output_size(const Grid& grid) const {
  return grid.tokens() * config().head_out();
}

void validate_request(const ModelConfig& cfg, const BatchRequest& req) {
  auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
  const Grid& g = req.grid;
  if (g.frames <= 0 || g.height <= 0 || g.width <= 0)
    fail("grid must be three positive integers [F, H, W]");
  // RoPE tables of the reference cover 1024 positions per axis.
  if (g.frames > 1024 || g.height > 1024 || g.width > 1024) fail("grid axes must be at most 1024");
  if (req.ctx_len <= 0 || req.ctx_len > 4096) fail("ctx_len must be in [1, 4096]");
  if (!req.reflections) {
    if (!req.householder_seeds.empty()) fail("householder seeds given for a forward without reflections");
  } else if (static_cast<int>(req.householder_seeds.size()) != cfg.num_layers) {
    fail("householder seeds: " + std::to_string(req.householder_seeds.size()) + " given, model " +
         cfg.id + " has " + std::to_string(cfg.num_layers) + " layers");
  }
  if (!req.skip_layers.empty() && static_cast<int>(req.skip_layers.size()) != cfg.num_layers)
    fail("skip_layers must be empty or have one entry per layer");
  for (size_t i = 0; i < req.nonces.size(); ++i) {
    const auto& n = req.nonces[i];
    const std::string where = "nonce #" + std::to_string(i) + ": ";
    if (n.timestep < 0 || n.timestep > 999) fail(where + "timestep must be in [0, 999]");
    if (static_cast<int>(n.experts.size()) != cfg.num_layers)
      fail(where + "expert routing has " + std::to_string(n.experts.size()) + " entries, model " +
           cfg.id + " has " + std::to_string(cfg.num_layers) + " layers");
    for (auto r : n.experts)
      if (r >= cfg.num_experts() && !(cfg.num_experts() == 1 && r == 1))
        fail(where + "routing bit out of range");
  }
}

namespace {
[[noreturn]] void denoise_fail(const std::string& m) { throw std::invalid_argument("denoise: " + m); }
}  // namespace

void validate_denoise_shape(const ModelConfig& cfg, const DenoiseRequest& req) {
  auto fail = denoise_fail;
  const auto& s = req.latent_shape;
  const std::string shape = "[" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " +
                            std::to_string(s[2]) + ", " + std::to_string(s[3]) + "]";
  if (s[0] != cfg.in_channels)
    fail("latent shape " + shape + " has " + std::to_string(s[0]) + " channels, model " + cfg.id + " takes " +
         std::to_string(cfg.in_channels));
  const char* axis[3] = {"F", "H", "W"};
  for (int i = 0; i < 3; ++i) {
    const int64_t n = s[i + 1], p = cfg.patch[i];
    if (n < p || n % p != 0)
      fail("latent shape " + shape + ": " + axis[i] + " must be a positive multiple of the patch size " +
           std::to_string(p));
    // RoPE positions cover 1024 patches per axis (as for the nonce grid).
    if (n / p > 1024) fail("latent shape " + shape + ": " + axis[i] + " is more than 1024 patches");
  }
  if (req.timestep < 0 || req.timestep > 999)
    fail("timestep must be an integer in [0, 999], got " + std::to_string(req.timestep));
  if (req.expert < 0 || req.expert >= cfg.num_experts())
    fail("expert " + std::to_string(req.expert) + " out of range: model " + cfg.id + " has " +
         std::to_string(cfg.num_experts()) + " expert(s)");
  if (req.ctx_len <= 0 || req.ctx_len > 4096)
    fail("ctx_len must be in [1, 4096], got " + std::to_string(req.ctx_len));
}

void validate_denoise_request(const ModelConfig& cfg, const DenoiseRequest& req) {
  auto fail = denoise_fail;
  validate_denoise_shape(cfg, req);
  if (!req.latent) fail("no latent");
  if (req.contexts.empty()) fail("at least one context is needed");
  for (size_t i = 0; i < req.contexts.size(); ++i)
    if (!req.contexts[i]) fail("context #" + std::to_string(i) + " is missing");
}

BatchRequest denoise_batch(const ModelConfig& cfg, const DenoiseRequest& req) {
  validate_denoise_request(cfg, req);
  BatchRequest b;
  b.grid = Grid{static_cast<int>(req.latent_shape[1] / cfg.patch[0]),
                static_cast<int>(req.latent_shape[2] / cfg.patch[1]),
                static_cast<int>(req.latent_shape[3] / cfg.patch[2])};
  b.ctx_len = req.ctx_len;
  b.precision = req.precision;
  b.reflections = false;
  for (const float* c : req.contexts) {
    NonceInput n;
    n.latent = req.latent;
    n.context = c;
    n.timestep = req.timestep;
    n.experts.assign(cfg.num_layers, static_cast<uint8_t>(req.expert));
    b.nonces.push_back(std::move(n));
  }
  return b;
}

void unpatchify(const ModelConfig& cfg, const Grid& g, const float* y, float* out) {
  const int pt = cfg.patch[0], ph = cfg.patch[1], pw = cfg.patch[2], C = cfg.out_channels;
  const int64_t Fz = int64_t(g.frames) * pt, Hz = int64_t(g.height) * ph, Wz = int64_t(g.width) * pw;
  int64_t tok = 0;
  for (int f = 0; f < g.frames; ++f)
    for (int h = 0; h < g.height; ++h)
      for (int w = 0; w < g.width; ++w, ++tok) {
        const float* t = y + tok * cfg.head_out();
        for (int a = 0; a < pt; ++a)
          for (int i = 0; i < ph; ++i)
            for (int j = 0; j < pw; ++j)
              for (int c = 0; c < C; ++c)
                out[((c * Fz + int64_t(f) * pt + a) * Hz + int64_t(h) * ph + i) * Wz + int64_t(w) * pw + j] =
                    t[((a * ph + i) * pw + j) * C + c];
      }
}

int64_t Backend::denoise_output_size(const DenoiseRequest& req) const {
  validate_denoise_request(config(), req);
  return static_cast<int64_t>(config().out_channels) * req.latent_shape[1] * req.latent_shape[2] *
         req.latent_shape[3];
}

void Backend::denoise(const DenoiseRequest& req, float* out, const std::atomic<bool>* cancel) {
  const BatchRequest batch = denoise_batch(config(), req);
  const int64_t per = output_size(batch.grid);
  // The head's output before unpatchify (the backend checks its own activations in forward).
  require_host_memory(static_cast<int64_t>(batch.nonces.size()) * per * int64_t(sizeof(float)),
                      "the head output of a denoise of " + std::to_string(batch.nonces.size()) + " pass(es)");
  std::vector<float> y(batch.nonces.size() * static_cast<size_t>(per));
  forward(batch, y.data(), cancel);
  const int64_t out_per = denoise_output_size(req);
  for (size_t b = 0; b < batch.nonces.size(); ++b)
    unpatchify(config(), batch.grid, y.data() + b * per, out + b * out_per);
}

}  // namespace ditpoc
