// Internal interface between the GEMM driver (gemm.cpp: packing, blocking, threads) and its
// per-ISA kernels (gemm_avx2.cpp, gemm_avx512.cpp, gemm_avx512bf16.cpp, gemm_portable.cpp, all
// built from gemm_unit.inc, each compiled for its own instruction set). Only plain data and
// function declarations cross this boundary, so no inline code compiled for a wider ISA can be
// picked by the linker for a caller on a narrower CPU.
#pragma once
#include <cstdint>

namespace ditpoc::cpu::gemm_detail {

constexpr int NR = 32;        // panel width (columns), 2 zmm of fp32
constexpr int MR = 8;         // rows per micro-tile (FMA paths)
constexpr int kDotRows = 12;  // most rows per micro-tile (bf16 dot path; tiles are balanced)
constexpr int64_t KC = 256;   // K slice (even: bf16 pairs never straddle two slices)
constexpr int64_t MC = 256;   // M block
constexpr int64_t KCD = 512;  // K slice of the bf16 dot path (its W slice, KCD x 32 bf16, stays in L1)
// Scratch each thread passes to a unit (FMA paths; the bf16 dot path uses neither): the A slice
// (MC rows of kAStride floats) and the W slice widened to fp32 (KC·NR).
constexpr int64_t kAStride = KC + 16;
constexpr int64_t kWScratch = KC * NR;

// 32-bit words per row of A packed for the bf16 dot path: Kp in whole KCD slices of bf16 pairs.
constexpr int64_t dot_packed_words(int64_t kp) { return (kp + KCD - 1) / KCD * (KCD / 2); }

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
  // bf16 dot path only: rows [a_row0, a_row0 + a_rows) of A rounded and packed by
  // pack_a_avx512bf16 (layout in gemm_unit.inc), a_rows * dot_packed_words(Kp) words.
  const uint32_t* a_packed = nullptr;
  int64_t a_row0 = 0, a_rows = 0;
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
void unit_avx512bf16(const Call&, const Unit&, float*, float*);  // round_a only, a_packed set
// Rounds rows [mb, me) of A (inside [a_row0, a_row0 + a_rows)) to bf16 and packs them into dst,
// the buffer call.a_packed will point to.
void pack_a_avx512bf16(const Call&, int64_t mb, int64_t me, uint32_t* dst);
#endif

}  // namespace ditpoc::cpu::gemm_detail
