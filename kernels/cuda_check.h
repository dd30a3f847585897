// Error checking for every CUDA runtime call: a failure throws std::runtime_error naming the
// file, the line, the call and CUDA's error string. Plain C++ (no device code), so the engine's
// host sources (native/engine/cuda/) and the tests use it too.
#pragma once
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace ditpoc::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* what, const char* file, int line) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " +
                           cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

}  // namespace ditpoc::cuda

#define DITPOC_CUDA_CHECK(call)                                                   \
  do {                                                                            \
    const cudaError_t ditpoc_err_ = (call);                                       \
    if (ditpoc_err_ != cudaSuccess)                                               \
      ::ditpoc::cuda::throw_cuda_error(ditpoc_err_, #call, __FILE__, __LINE__);   \
  } while (0)

// After a kernel launch: launch-configuration errors (and sticky errors from earlier work).
#define DITPOC_CUDA_CHECK_LAUNCH() DITPOC_CUDA_CHECK(cudaGetLastError())
