#include "backend.h"

namespace ditpoc {

Precision parse_precision(const std::string& text) {
  if (text == "bf16") return Precision::Bf16;
  if (text == "fp32") return Precision::Fp32;
  if (text == "bf16-flash") return Precision::Bf16Flash;
  if (text == "fp8-attention") return Precision::Fp8Attention;
  throw std::invalid_argument("precision must be bf16, fp32, bf16-flash or fp8-attention, got '" + text + "'");
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
  if (static_cast<int>(req.householder_seeds.size()) != cfg.num_layers)
    fail("householder seeds: " + std::to_string(req.householder_seeds.size()) + " given, model " +
         cfg.id + " has " + std::to_string(cfg.num_layers) + " layers");
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

}  // namespace ditpoc
