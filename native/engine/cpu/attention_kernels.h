// Internal interface between the attention driver (attention.cpp: slices, packing buffer,
// threads) and its per-ISA kernels (attention_<isa>.cpp, all built from attention_unit.inc,
// each compiled for its own instruction set). Only plain data and function pointers cross this
// boundary, so no inline code compiled for a wider ISA is shared with narrower callers.
#pragma once
#include <cstdint>

namespace ditpoc::cpu::attention_detail {

constexpr int64_t QB = 64;  // query rows per work item (kBr of kernels/attention.cu), a multiple of 16
constexpr int64_t KB = 64;  // keys per tile (kBc of kernels/attention.cu)
constexpr int kMaxHd = 128;  // largest head_dim of the SIMD kernels (head_dim % 32 == 0)

// One attention call as the kernels see it. A slice is one (group, head): its rows of q, k, v
// and out start at the slice's offset and are `width` floats apart.
struct Call {
  int64_t width, lk;
  int hd;
  float scale;    // 1/√hd
  bool round_p;   // P rounded to bf16 before P·V
  bool qk_dot;    // q·kᵀ with vdpbf16ps (avx512-bf16 path, bf16 inputs)
  bool pv_dot;    // P·V with vdpbf16ps (avx512-bf16 path, bf16 inputs and round_p)
};

struct Kernels {
  // Bytes of packed keys/values one slice needs (a multiple of 64; 0: nothing packed).
  int64_t (*packed_bytes)(const Call&);
  // Packs one slice's keys k and values v into `packed` (64-byte aligned).
  void (*pack)(const Call&, const float* k, const float* v, void* packed);
  // Query rows [0, rows) of one slice (rows <= QB) → out.
  void (*rows)(const Call&, const float* q, const float* k, const float* v, const void* packed,
               int64_t rows, float* out);
};

extern const Kernels kernels_portable;
#if defined(__x86_64__)
extern const Kernels kernels_avx2;
extern const Kernels kernels_avx512;
extern const Kernels kernels_avx512bf16;
#endif

}  // namespace ditpoc::cpu::attention_detail
