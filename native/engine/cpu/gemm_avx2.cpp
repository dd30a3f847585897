// The GEMM's unit kernel for the avx2 path (see gemm_unit.inc; CMake sets this file's -m flags).
#if defined(__x86_64__)
#define DITPOC_GEMM_AVX2 1
#define DITPOC_GEMM_UNIT unit_avx2
#include "gemm_unit.inc"
#endif
