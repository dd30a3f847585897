// The CPU backend's GEMM: C = A·Wᵀ + bias with bf16 weights and fp32 accumulation.
//
// Contract (the determinism the protocol relies on, SPEC §8):
//  * every element of C is computed by exactly one thread with one fixed instruction sequence,
//    so its bits depend only on its own row of A, the weights, the bias and the CPU path
//    (cpu_isa.h): never on M, on which other rows are present, on the row's position, or on the
//    thread count;
//  * accumulation is fp32 in a fixed order over K: fused multiply-adds one k at a time on the
//    portable, avx2 and avx512 paths (identical bits), bf16 pair dot products (vdpbf16ps) on the
//    avx512-bf16 path when A is rounded to bf16 (gemm_unit.inc).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "../thread_pool.h"
#include "cpu_isa.h"

namespace ditpoc::cpu {

namespace detail {
// 64-byte aligned storage for the weight panels (the micro-kernel loads one cache line per k).
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};
}  // namespace detail

// A Linear layer's weight [N, K] (PyTorch's [out, in], row-major bf16) repacked once into the
// panel layout the micro-kernels stream. Memory is the same as the original bf16 tensor
// plus padding of N to the panel width and of K to even.
class PackedWeight {
 public:
  PackedWeight() = default;
  static PackedWeight pack(const uint16_t* w_bf16, int64_t n, int64_t k);
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  bool empty() const { return n_ == 0; }
  // Row-major bf16 copy of the original [N, K] tensor (for checks and export).
  std::vector<uint16_t> unpack() const;

 private:
  friend void gemm(const float*, int64_t, int64_t, const PackedWeight&, const float*, float*,
                   int64_t, bool, ThreadPool&, Isa);
  int64_t n_ = 0, k_ = 0;
  // Implementation-defined layout (gemm.cpp): panels of 32 columns in k pairs, 64-byte aligned.
  std::vector<uint16_t, detail::CacheLineAllocator<uint16_t>> panels_;
};

// C[M, N] = A'[M, K] · Wᵀ + bias, where A' = A rounded to bf16 when round_a_to_bf16 (the bf16
// autocast input rounding of SPEC §7), else A as is. lda/ldc are row strides in elements.
// bias may be null. C must not alias A.
// isa: the kernels' path (cpu_isa.h), by default the active one.
void gemm(const float* A, int64_t lda, int64_t M, const PackedWeight& W, const float* bias,
          float* C, int64_t ldc, bool round_a_to_bf16, ThreadPool& pool, Isa isa = active_isa());

}  // namespace ditpoc::cpu
