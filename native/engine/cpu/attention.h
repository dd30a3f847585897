// The CPU attention (SPEC §5, precision per §7): softmax(q·kᵀ/√d)·v for independent sequences,
// the CPU twin of kernels/attention.cu. Driver in attention.cpp; one kernel set per
// instruction-set path (attention_unit.inc, compiled once per path like the GEMM's units).
//
// Contract (SPEC §8): every output row is computed by one thread with one fixed instruction
// sequence over the key tiles in order, so its bits depend only on its own query row, the
// sequence's keys and values, the numerics below and the path: never on the batch, on the row's
// position, on how the rows are split into work items, or on the thread count.
#pragma once
#include <cstdint>

#include "../thread_pool.h"
#include "cpu_isa.h"

namespace ditpoc::cpu {

struct AttentionNumerics {
  // q, k and v hold bf16 values (the caller rounded them, SPEC §7): the avx512-bf16 path then
  // computes q·kᵀ with bf16 pair dot products (vdpbf16ps, fp32 accumulation), like the GPU's
  // bf16 MMA; values that are not bf16 would be rounded to nearest even there. Other paths
  // multiply in fp32, which is exact on bf16 values up to accumulation order.
  bool bf16_inputs = false;
  // Probabilities rounded to bf16 before P·V (the row sum stays fp32), as FlashAttention does
  // (Precision::Bf16Flash). With bf16_inputs, the avx512-bf16 path does P·V with vdpbf16ps too.
  bool round_p_bf16 = false;
};

// Multi-head attention for `groups` independent sequences: q [groups·lq, heads·d],
// k, v [groups·lk, heads·d] → out [groups·lq, heads·d]; fp32 scores and softmax, no mask.
// isa: the kernels' path (cpu_isa.h), by default the active one; it must be one this CPU runs
// (supported_isas(); CpuBackend checks its path when it is created). The SIMD paths take
// head_dim % 32 == 0 and head_dim <= 128; other head sizes use the portable kernel.
void attention(const float* q, const float* k, const float* v, int64_t groups, int64_t lq,
               int64_t lk, int heads, int head_dim, float* out, ThreadPool& pool,
               AttentionNumerics numerics = {}, Isa isa = active_isa());

}  // namespace ditpoc::cpu
