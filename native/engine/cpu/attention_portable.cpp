// The attention kernels of the portable path (see attention_unit.inc; CMake sets this file's -m flags).
#define DITPOC_ATTN_PORTABLE 1
#define DITPOC_ATTN_KERNELS kernels_portable
#include "attention_unit.inc"
