// Compiled with -ffp-contract=off (CMakeLists.txt): every rounding below is the TS twin's.
#include "artifact.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "murmur.h"
#include "nonce_inputs.h"
#include "seeding.h"

namespace ditpoc {

namespace {

constexpr float kEps = 1e-8f;
constexpr float kMinU1 = 1e-10f;

float f32(double x) { return static_cast<float>(x); }

// ‖v‖₂ as torch computes it in float32, summed in float64 (products of floats are exact).
float norm2(const float* v, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
  return f32(std::sqrt(static_cast<double>(f32(s))));
}

double uniform_at_f64(uint32_t i, uint32_t seed) { return static_cast<double>(static_cast<float>(mm(i, seed))) * 0x1p-32; }

// N(seed, n) with float64 log/cos/sin rounded to float32, as in src/seeds/rng.ts.
std::vector<float> normal_reference(uint32_t seed, int n) {
  const int m = (n + 1) / 2;
  const double two_pi = f32(2 * M_PI);
  std::vector<float> out(static_cast<size_t>(n));
  for (int i = 0; i < m; ++i) {
    const double u1 = std::max(uniform_at_f64(static_cast<uint32_t>(i), seed), static_cast<double>(kMinU1));
    const double u2 = uniform_at_f64(static_cast<uint32_t>(m + i), seed);
    const double r = f32(std::sqrt(f32(-2 * static_cast<double>(f32(std::log(u1))))));
    const double theta = f32(two_pi * u2);
    out[static_cast<size_t>(i)] = f32(r * f32(std::cos(theta)));
    if (m + i < n) out[static_cast<size_t>(m + i)] = f32(r * f32(std::sin(theta)));
  }
  return out;
}

// x − 2(w·x)w in float32, w a unit vector.
void reflect(std::vector<float>& x, const std::vector<float>& w) {
  double dot = 0;
  for (size_t i = 0; i < x.size(); ++i) dot += static_cast<double>(w[i]) * x[i];
  const double c = f32(2 * static_cast<double>(f32(dot)));
  for (size_t i = 0; i < x.size(); ++i) x[i] = f32(x[i] - static_cast<double>(f32(c * w[i])));
}

double round_half_even(double v) {
  const double fl = std::floor(v);
  const double d = v - fl;
  if (d > 0.5) return fl + 1;
  if (d < 0.5) return fl;
  return std::fmod(fl, 2.0) == 0 ? fl : fl + 1;
}

}  // namespace

std::vector<uint32_t> pick(uint32_t seed, int64_t dim, int k) {
  if (dim < 0 || dim > (int64_t(1) << 32)) throw std::invalid_argument("pick: dim must be in [0, 2^32]");
  if (k < 0 || k > dim) throw std::invalid_argument("pick: k must be in [0, dim]");
  if (k == 0) return {};
  // A max-heap of the k best keys (score << 32 | j): ordering keys orders (score, j), and a
  // later j never beats an equal score.
  std::vector<uint64_t> heap;
  heap.reserve(static_cast<size_t>(k));
  auto key = [seed](int64_t j) { return (uint64_t(mm(static_cast<uint32_t>(j), seed)) << 32) | static_cast<uint64_t>(j); };
  for (int64_t j = 0; j < k; ++j) heap.push_back(key(j));
  std::make_heap(heap.begin(), heap.end());
  for (int64_t j = k; j < dim; ++j) {
    const uint32_t s = mm(static_cast<uint32_t>(j), seed);
    if (s < (heap.front() >> 32)) {
      std::pop_heap(heap.begin(), heap.end());
      heap.back() = (uint64_t(s) << 32) | static_cast<uint64_t>(j);
      std::push_heap(heap.begin(), heap.end());
    }
  }
  std::sort_heap(heap.begin(), heap.end());
  std::vector<uint32_t> idx(heap.size());
  for (size_t i = 0; i < heap.size(); ++i) idx[i] = static_cast<uint32_t>(heap[i] & 0xffffffffu);
  return idx;
}

std::vector<float> haar(const std::string& prefix, std::vector<float> x) {
  const int k = static_cast<int>(x.size());
  for (int j = 0; j + 1 < k; ++j) {
    std::vector<float> w = normal_reference(seed32(prefix + "_haar_hh_" + std::to_string(k) + "_" + std::to_string(j)), k);
    const double nw = norm2(w.data(), k);
    for (float& v : w) v = f32(v / nw);
    reflect(x, w);
  }
  return x;
}

uint16_t f32_to_f16_bits(float x) {
  if (std::isnan(x)) return 0x7e00;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= 65520.0) return sign | 0x7c00;  // the largest half plus half an ulp: ties go to inf
  if (a < 0x1p-14) return sign | static_cast<uint16_t>(round_half_even(a * 0x1p24));  // subnormal
  int e = std::ilogb(a);
  double q = round_half_even(std::ldexp(a, 10 - e));  // in [1024, 2048]; the scaling is exact
  if (q == 2048) {
    q = 1024;
    e += 1;
  }
  return sign | static_cast<uint16_t>((e + 15) << 10) | static_cast<uint16_t>(q - 1024);
}

bool compute_artifact(const float* y, int64_t m, const std::string& block_hash, const std::string& public_key,
                      int32_t nonce, int k, uint16_t* out) {
  const std::string q = artifact_string(block_hash, public_key, nonce);
  if (k < 1) throw std::invalid_argument("k must be a positive integer, got " + std::to_string(k));
  if (m < k) throw std::invalid_argument("output length " + std::to_string(m) + " is smaller than k = " + std::to_string(k));
  for (int64_t i = 0; i < m; ++i)
    if (!std::isfinite(y[i])) return false;
  const double y_den = f32(static_cast<double>(norm2(y, m)) + kEps);
  const std::vector<uint32_t> idx = pick(seed32(q + "_pick_" + std::to_string(k)), m, k);
  std::vector<float> v(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) v[static_cast<size_t>(i)] = f32(y[idx[static_cast<size_t>(i)]] / y_den);
  const std::vector<float> a = haar(q, std::move(v));
  const double a_den = f32(static_cast<double>(norm2(a.data(), k)) + kEps);
  for (int i = 0; i < k; ++i) out[i] = f32_to_f16_bits(f32(a[static_cast<size_t>(i)] / a_den));
  return true;
}

}  // namespace ditpoc
