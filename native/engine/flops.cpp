#include "flops.h"

namespace ditpoc {

double forward_flops(const ModelConfig& cfg, int64_t tokens, int64_t ctx_len, int experts_used) {
  const double L = static_cast<double>(tokens), Lc = static_cast<double>(ctx_len);
  const double D = cfg.dim, F = cfg.ffn_dim;
  const double block = 12 * L * D * D + 4 * Lc * D * D + 4 * L * D * F + 4 * L * L * D + 4 * L * Lc * D;
  return cfg.num_layers * block + 2 * L * cfg.patch_in() * D + 2 * L * D * cfg.head_out() +
         experts_used * 2 * Lc * (cfg.text_dim * D + D * D);
}

}  // namespace ditpoc
