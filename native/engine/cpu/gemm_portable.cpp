// The GEMM's unit kernel for the portable path (see gemm_unit.inc; CMake sets this file's -m flags).
#define DITPOC_GEMM_PORTABLE 1
#define DITPOC_GEMM_UNIT unit_portable
#include "gemm_unit.inc"
