// SPEC §2 seeded fills on the device: U (bit-identical to the CPU), N and N8 (Box–Muller in
// float32, within an ulp or two of the CPU's libm), and the SPEC §6 weight values
// bf16(μ + σ·N). Element i depends only on (seed, n, i): a grid-stride loop over Box–Muller
// pairs, pair i writing elements i (cos) and m + i (sin), m = ⌈n/2⌉.
#include "common.cuh"
#include "kernels.h"

namespace ditpoc::cuda {

namespace {

constexpr int kThreads = 256;
// f32(2π), as the CPU computes static_cast<float>(2.0 * M_PI).
constexpr float kTwoPi = static_cast<float>(6.283185307179586476925286766559);

__global__ void uniform_kernel(uint32_t seed, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = dev::uniform_at(seed, static_cast<uint32_t>(i));
}

__device__ __forceinline__ void box_muller(uint32_t seed, int64_t m, int64_t i, float* c, float* s) {
  const float u1 = fmaxf(dev::uniform_at(seed, static_cast<uint32_t>(i)), 1e-10f);
  const float u2 = dev::uniform_at(seed, static_cast<uint32_t>(m + i));
  const float r = sqrtf(-2.0f * logf(u1));
  const float theta = kTwoPi * u2;
  *c = r * cosf(theta);
  *s = r * sinf(theta);
}

// Out: the store policy. Identity keeps float32; the affine variants apply fmaf(σ, v, μ) (the
// host compiles μ + σ·v to one fused multiply-add on FMA machines too) and round to bf16.
struct StoreF32 {
  float* out;
  __device__ void operator()(int64_t i, float v) const { out[i] = v; }
};
struct StoreBf16 {
  uint16_t* out;
  float mu, sigma;
  __device__ void operator()(int64_t i, float v) const { out[i] = dev::f32_to_bf16(fmaf(sigma, v, mu)); }
};
struct StoreBf16AsF32 {
  float* out;
  float mu, sigma;
  __device__ void operator()(int64_t i, float v) const {
    out[i] = dev::bf16_to_f32(dev::f32_to_bf16(fmaf(sigma, v, mu)));
  }
};

template <class Store>
__global__ void normal_kernel(uint32_t seed, int64_t n, Store store) {
  const int64_t m = (n + 1) / 2;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < m; i += int64_t(gridDim.x) * blockDim.x) {
    float c, s;
    box_muller(seed, m, i, &c, &s);
    store(i, c);
    if (m + i < n) store(m + i, s);
  }
}

template <class Store>
void launch_normal(uint32_t seed, int64_t n, Store store, cudaStream_t s) {
  if (n <= 0) return;
  const int64_t m = (n + 1) / 2;
  normal_kernel<<<dev::grid_for(m, kThreads), kThreads, 0, s>>>(seed, n, store);
  DITPOC_CUDA_CHECK_LAUNCH();
}

}  // namespace

void fill_uniform(uint32_t seed, int64_t n, float* out, cudaStream_t s) {
  if (n <= 0) return;
  uniform_kernel<<<dev::grid_for(n, kThreads), kThreads, 0, s>>>(seed, n, out);
  DITPOC_CUDA_CHECK_LAUNCH();
}

void fill_normal(uint32_t seed, int64_t n, float* out, cudaStream_t s) {
  launch_normal(seed, n, StoreF32{out}, s);
}

void fill_normal8(const uint32_t words[8], int64_t n, float* out, cudaStream_t s) {
  const int64_t seg = (n + 7) / 8;
  for (int t = 0; t < 8 && t * seg < n; ++t) {
    const int64_t len = seg < n - t * seg ? seg : n - t * seg;
    launch_normal(words[t], len, StoreF32{out + t * seg}, s);
  }
}

void fill_normal_bf16(uint32_t seed, int64_t n, float mu, float sigma, uint16_t* out, cudaStream_t s) {
  launch_normal(seed, n, StoreBf16{out, mu, sigma}, s);
}

void fill_normal_bf16_as_f32(uint32_t seed, int64_t n, float mu, float sigma, float* out, cudaStream_t s) {
  launch_normal(seed, n, StoreBf16AsF32{out, mu, sigma}, s);
}

}  // namespace ditpoc::cuda
