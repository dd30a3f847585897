// The instruction-set path of the CPU kernels, chosen once at run time from the CPU's features
// (the distributed build targets any x86-64 with AVX2; wider kernels live in their own
// translation units compiled for their ISA, see gemm_kernels.h).
//
// Paths, best last: portable (scalar code: the only one on non-x86 builds, a cross-check on
// x86), avx2 (AVX2 + FMA), avx512 (AVX-512F/BW/VL/DQ),
// avx512-bf16 (avx512 plus vdpbf16ps for the GEMMs and attention products whose inputs are
// rounded to bf16). The attention kernels follow the same paths (attention.h).
// Environment: DITPOC_CPU_ISA=<path> forces a path (tests, calibration, comparisons); a path
// this build or CPU cannot run is an error, never a silent fallback.
//
// Bits (SPEC §8): on one path, every result is independent of thread count, batch composition
// and position. portable, avx2 and avx512 give the same bits (the canonical fp32 FMA sequence);
// avx512-bf16 accumulates pairs of products in the dot-product unit, so its bf16 GEMMs differ
// from the others by float rounding: an honest variant (calibrate's benign set covers it).
#pragma once
#include <string>
#include <vector>

namespace ditpoc::cpu {

enum class Isa { Portable, Avx2, Avx512, Avx512Bf16 };

const char* isa_name(Isa isa);
// Parses a path name ("avx2", "avx512", "avx512-bf16", "portable"); throws std::invalid_argument.
Isa parse_isa(const std::string& name);
// The paths this build can run on this CPU, in increasing order of preference.
std::vector<Isa> supported_isas();
// The path the kernels use: DITPOC_CPU_ISA when set, else the best supported one. Throws
// std::runtime_error when DITPOC_CPU_ISA names a path that is unknown or cannot run here.
Isa active_isa();
// Switches the path for later calls (tests and tools; not while kernels run). Throws
// std::runtime_error when the path cannot run here.
void set_active_isa(Isa isa);

}  // namespace ditpoc::cpu
