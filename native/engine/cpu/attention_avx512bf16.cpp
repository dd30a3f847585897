// The attention kernels of the avx512bf16 path (see attention_unit.inc; CMake sets this file's -m flags).
#if defined(__x86_64__)
#define DITPOC_ATTN_BF16DOT 1
#define DITPOC_ATTN_KERNELS kernels_avx512bf16
#include "attention_unit.inc"
#endif
