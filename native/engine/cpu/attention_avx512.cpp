// The attention kernels of the avx512 path (see attention_unit.inc; CMake sets this file's -m flags).
#if defined(__x86_64__)
#define DITPOC_ATTN_AVX512 1
#define DITPOC_ATTN_KERNELS kernels_avx512
#include "attention_unit.inc"
#endif
