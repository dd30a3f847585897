// The GEMM's unit kernel for the avx512bf16 path (see gemm_unit.inc; CMake sets this file's -m flags).
#if defined(__x86_64__)
#define DITPOC_GEMM_BF16DOT 1
#define DITPOC_GEMM_UNIT unit_avx512bf16
#define DITPOC_GEMM_PACK_A pack_a_avx512bf16
#include "gemm_unit.inc"
#endif
