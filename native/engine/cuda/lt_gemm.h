// GEMMs of the CUDA backend through cuBLASLt: C[M, N] = A[M, K]·Wᵀ + bias with A and W in
// bf16 (row-major, W as PyTorch's [out, in]), fp32 accumulation, fp32 bias, and an fp32 or
// bf16 output (optionally through the GELU-tanh epilogue).
//
// Determinism: per (shape, strides, output type, epilogue) the algorithm is chosen once by
// cuBLASLt's heuristic, with a fixed workspace size, and pinned for the life of the object;
// the same call then gives the same bits on every run (cuBLASLt is deterministic for a fixed
// algorithm, workspace and device).
//
// This header needs no cuBLAS header (the handle is hidden), so the backend's other sources
// compile on machines that have nvcc but no cuBLASLt.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

namespace ditpoc::cuda {

class LtGemm {
 public:
  enum class Out { F32, Bf16 };
  enum class Epilogue { Bias, GeluBias };

  // Creates the cuBLASLt handle and a workspace of `workspace_bytes` on the current device.
  LtGemm(cudaStream_t stream, size_t workspace_bytes = kDefaultWorkspace);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  static constexpr size_t kDefaultWorkspace = size_t(32) << 20;

  // C = A·Wᵀ + bias [→ GELU], A [M, K] (row stride lda), W [N, K], C [M, N] (row stride ldc),
  // bias [N] fp32 (required). When cuBLASLt has no algorithm for the fused form (a bf16
  // output or the GELU epilogue), the product goes to `scratch` (fp32, at least M·N floats)
  // and a kernel applies GELU/rounding; without scratch that case throws.
  void run(const uint16_t* A, int64_t lda, int64_t M, const uint16_t* W, int64_t N, int64_t K, const float* bias,
           void* C, int64_t ldc, Out out, Epilogue ep, float* scratch = nullptr);

  // Whether the fused form has an algorithm (else run() needs scratch).
  bool fused_supported(int64_t M, int64_t N, int64_t K, Out out, Epilogue ep);

  // Dense bf16 GEMM rate of this device (n×n×n, bf16 in, fp32 accumulate, zero fp32 bias,
  // bf16 out, or fp32 out where cuBLASLt cannot fuse that bias with a bf16 one), in TFLOP/s:
  // best of `reps` timed runs after a warm-up; allocates its operands temporarily.
  double measure_dense_tflops(int64_t n = 8192, int reps = 10);

  size_t workspace_bytes() const;
  size_t plans() const;  // shapes planned so far

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Library version as "cuBLASLt <n>" (for logs and benchmark reports).
std::string cublaslt_version();

}  // namespace ditpoc::cuda
