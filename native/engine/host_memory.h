// Host memory planning: refuse up front, with a clear message, work that would not fit in RAM
// (Linux overcommit would otherwise let it start and end in an OOM kill).
#pragma once
#include <cstdint>
#include <string>

namespace ditpoc {

// Bytes the kernel reports as available (MemAvailable), or -1 when unknown.
int64_t available_host_memory();

// Throws std::runtime_error naming `what` when `bytes` exceeds the available memory.
// DITPOC_SKIP_MEMORY_CHECK=1 disables the check (e.g. with swap or huge overcommit on purpose).
void require_host_memory(int64_t bytes, const std::string& what);

}  // namespace ditpoc
