// The GEMM's unit kernel for the avx512 path (see gemm_unit.inc; CMake sets this file's -m flags).
#if defined(__x86_64__)
#define DITPOC_GEMM_AVX512 1
#define DITPOC_GEMM_UNIT unit_avx512
#include "gemm_unit.inc"
#endif
