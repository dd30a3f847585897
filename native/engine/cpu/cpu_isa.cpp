#include "cpu_isa.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace ditpoc::cpu {

namespace {

bool cpu_supports(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  switch (isa) {
    case Isa::Portable: return true;
    case Isa::Avx2: return avx2;
    case Isa::Avx512: return avx512;
    case Isa::Avx512Bf16: return avx512 && __builtin_cpu_supports("avx512bf16");
  }
  return false;
#else
  return isa == Isa::Portable;
#endif
}

std::atomic<int> g_active{-1};
std::once_flag g_once;

void check_supported(Isa isa, const std::string& origin) {
  if (!cpu_supports(isa)) {
    std::string have;
    for (Isa s : supported_isas()) have += std::string(have.empty() ? "" : ", ") + isa_name(s);
    throw std::runtime_error(origin + std::string(isa_name(isa)) +
                             ": this build or CPU cannot run that path (available: " + have + ")");
  }
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Portable: return "portable";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Bf16: return "avx512-bf16";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16})
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument("unknown CPU path '" + name +
                              "' (expected portable, avx2, avx512 or avx512-bf16)");
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16})
    if (cpu_supports(isa)) out.push_back(isa);
  return out;
}

Isa active_isa() {
  std::call_once(g_once, [] {
    const std::vector<Isa> all = supported_isas();
    Isa pick = all.back();
    if (const char* env = std::getenv("DITPOC_CPU_ISA"); env && *env) {
      try {
        pick = parse_isa(env);
      } catch (const std::invalid_argument&) {
        return;  // g_active stays unset: the error is raised below, on every call
      }
      if (!cpu_supports(pick)) return;
    }
    g_active.store(static_cast<int>(pick));
  });
  const int v = g_active.load();
  if (v >= 0) return static_cast<Isa>(v);
  if (const char* env = std::getenv("DITPOC_CPU_ISA"); env && *env) {
    Isa wanted;
    try {
      wanted = parse_isa(env);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(std::string("DITPOC_CPU_ISA: ") + e.what());
    }
    check_supported(wanted, "DITPOC_CPU_ISA=");  // throws with the reason
  }
  throw std::runtime_error("no CPU path selected");
}

void set_active_isa(Isa isa) {
  check_supported(isa, "CPU path ");
  std::call_once(g_once, [] {});
  g_active.store(static_cast<int>(isa));
}

}  // namespace ditpoc::cpu
