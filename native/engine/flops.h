// SPEC §12 FLOP count of one nonce's forward (the figure benchmarks divide by time).
#pragma once
#include <cstdint>

#include "model_config.h"

namespace ditpoc {

// Per block: 12·L·D² + 4·Lc·D² + 4·L·D·F + 4·L²·D + 4·L·Lc·D; per forward add the patch
// embedding 2·L·4·C_in·D, the head 2·L·D·4·C_out and, per expert used, 2·Lc·(4096·D + D²).
double forward_flops(const ModelConfig& cfg, int64_t tokens, int64_t ctx_len, int experts_used);

}  // namespace ditpoc
