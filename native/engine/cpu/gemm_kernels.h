// Internal interface between the GEMM driver (gemm.cpp: packing, blocking, threads) and its
// per-ISA kernels (gemm_avx2.cpp, gemm_avx512.cpp, gemm_avx512bf16.cpp, gemm_portable.cpp, all
// built from gemm_unit.inc, each compiled for its own instruction set). Only plain data and
// function declarations cross this boundary, so no inline code compiled for a wider ISA can be
// picked by the linker for a caller on a narrower CPU.
#pragma once
#include <cstdint>

namespace ditpoc::cpu::gemm_detail {

constexpr int NR = 32;        // panel width (columns), 2 zmm of fp32
constexpr int MR = 8;         // rows per micro-tile
constexpr int64_t KC = 256;   // K slice (even: bf16 pairs never straddle two slices)
constexpr int64_t MC = 256;   // M block
// Scratch each thread passes to a unit: the A slice (MC rows of kAStride floats; the bf16 dot
// path stores bf16 rows of 2·kAStride elements in it) and the W slice widened to fp32 (KC·NR).
constexpr int64_t kAStride = KC + 16;
constexpr int64_t kWScratch = KC * NR;

// One GEMM call as the kernels see it. W is packed in panels of NR columns over Kp = K rounded
// up to even: panel p, k pair i holds 64 bf16, [2j + (k & 1)] for columns j < 16 and
// [32 + 2(j - 16) + (k & 1)] for columns 16 <= j < 32 (zero-padded in N and in K).
struct Call {
  const float* A;
  int64_t lda, M, N, K, Kp;
  const uint16_t* panels;
  const float* bias;  // may be null
  float* C;
  int64_t ldc;
  bool round_a;       // round A to bf16 first (SPEC §7)
};
// A unit of work: rows [mb, me) x panels [pb, pe).
struct Unit {
  int64_t mb, me, pb, pe;
};
// abuf, wbuf: 64-byte aligned per-thread scratch of the sizes above.
using UnitFn = void (*)(const Call&, const Unit&, float* abuf, float* wbuf);

void unit_portable(const Call&, const Unit&, float*, float*);
#if defined(__x86_64__)
void unit_avx2(const Call&, const Unit&, float*, float*);
void unit_avx512(const Call&, const Unit&, float*, float*);
void unit_avx512bf16(const Call&, const Unit&, float*, float*);  // round_a only
#endif

}  // namespace ditpoc::cpu::gemm_detail
