// The CUDA backend: the SPEC §5 nonce forward on one GPU, with the kernels of kernels/ and
// cuBLASLt GEMMs (native/engine/cuda/lt_gemm.h). Same orchestration as the CPU backend
// (cpu/cpu_backend.cpp): per-nonce conditioning per expert used, patch embedding with the
// first layer's expert, per-layer expert groups (one GEMM per projection and expert), the
// seeded Householder reflection after every block (none when the request turns reflections
// off: the SPEC §13 denoiser forward, which Backend::denoise runs through forward()), the head
// of the last layer's expert.
//
// Precision (SPEC §7): Bf16 and Bf16Flash both run the flash-attention kernel, whose P·V
// takes the probabilities in bf16 (the CPU's Bf16 keeps them fp32: more precise, which §7
// allows; the difference is what calibration measures). Fp8Attention rounds q, k, v to e4m3
// with one scale per nonce, like the CPU. Fp32 is CPU-only (std::invalid_argument here).
//
// Memory is planned up front: weights at construction, activations for a batch at the first
// forward of a larger batch (or reserve()); both throw std::runtime_error with the sizes when
// they do not fit, never an out-of-memory error halfway through a forward.
//
// This header is plain C++ (no CUDA headers): the engine includes it whether or not the build
// has the CUDA backend (DITPOC_HAVE_CUDA_BACKEND), and calls it only when it has.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../backend.h"

namespace ditpoc {

// Devices the CUDA runtime sees; 0 without a driver or device (never throws).
int cuda_device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"; throws for a bad index.
std::string cuda_device_description(int device);

// Device bytes of one model's weights as the CUDA backend stores them (bf16 matrices, fp32
// vectors, all experts).
int64_t cuda_weight_bytes(const ModelConfig& cfg);
// Device bytes of the activations of one forward of `batch` nonces.
int64_t cuda_activation_bytes(const ModelConfig& cfg, const Grid& grid, int ctx_len, int batch);
// Largest batch whose activations fit in `free_bytes` less `reserve_bytes` (cuBLASLt
// workspace, CUDA context slack) and that the kernels can launch; 0 when not even one nonce fits.
int max_batch_for_free_memory(const ModelConfig& cfg, const Grid& grid, int ctx_len, int64_t free_bytes,
                              int64_t reserve_bytes = int64_t(256) << 20);

class CudaBackend : public Backend {
 public:
  virtual int device() const = 0;
  virtual std::string device_description() const = 0;
  // Largest batch of (grid, ctx_len) that fits in the device's memory now (the weights are
  // resident; activations held for another shape count as free).
  virtual int max_batch(const Grid& grid, int ctx_len) = 0;
  // Plans and allocates the activations of a `batch`-nonce forward now.
  virtual void reserve(const Grid& grid, int ctx_len, int batch) = 0;
  // Per-op GPU time (CUDA events around every op, by category), summed over the forwards run
  // while profiling is on. Off by default (events cost a little).
  virtual void set_profiling(bool on) = 0;
  virtual std::vector<std::pair<std::string, double>> profile_ms() const = 0;
  virtual void reset_profile() = 0;
  // Dense bf16 GEMM rate of this device in TFLOP/s (cuBLASLt n×n×n, best of reps): the MFU
  // yardstick of SPEC §12.
  virtual double dense_gemm_tflops(int64_t n = 8192, int reps = 10) = 0;
  // Seconds spent on the weights at construction: GPU time of the on-device generation, or
  // host wall time of the upload.
  virtual double weights_seconds() const = 0;

 protected:
  explicit CudaBackend(std::shared_ptr<const ModelWeights> w) : Backend(std::move(w)) {}
};

// Uploads host weights (bf16) to `device`. `threads` sizes the host thread pool.
std::unique_ptr<CudaBackend> make_cuda_backend(std::shared_ptr<const ModelWeights> weights, int device,
                                               int threads);
// SPEC §6 random weights generated on the device (no host copy): the same values as
// random_weights() up to the device's N() being within an ulp of the CPU's, which can flip a
// bf16 rounding in a small fraction of elements. weights() then has no host tensors
// (experts is empty; identity is "random:<seed>").
std::unique_ptr<CudaBackend> make_cuda_backend_random(const ModelConfig& cfg, const std::string& weights_seed,
                                                      int device, int threads);

// A backend whose weights are uploaded as `stream` hands them out, so host memory holds what
// the stream holds (a batch of tensors), never the model: how checkpoints reach the GPU, shard by
// shard. Every (expert, tensor) must come exactly once with its spec's shape, else
// std::invalid_argument; the stream's own exceptions propagate. weights() has no host tensors;
// its identity is `identity`.
std::unique_ptr<CudaBackend> make_cuda_backend_streamed(const ModelConfig& cfg, const std::string& identity,
                                                        const WeightStream& stream, int device, int threads);

}  // namespace ditpoc
