#include "host_memory.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace ditpoc {

int64_t available_host_memory() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return -1;
  char line[256];
  int64_t kb = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %lld kB", reinterpret_cast<long long*>(&kb)) == 1) break;
  std::fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

void require_host_memory(int64_t bytes, const std::string& what) {
  const char* skip = std::getenv("DITPOC_SKIP_MEMORY_CHECK");
  if (skip && std::strcmp(skip, "1") == 0) return;
  const int64_t avail = available_host_memory();
  if (avail < 0 || bytes <= avail) return;
  char msg[512];
  std::snprintf(msg, sizeof msg, "%s needs %.1f GB of host memory, %.1f GB is available", what.c_str(),
                bytes / 1e9, avail / 1e9);
  throw std::runtime_error(msg);
}

}  // namespace ditpoc
