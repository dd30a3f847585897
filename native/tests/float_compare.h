// Comparisons the CPU op tests share: outputs poisoned before a run, a norm-relative error
// against a float64 reference, and bit equality.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace check {

// NaN everywhere, so an output element a kernel forgot to write fails every comparison.
inline std::vector<float> poisoned(size_t n) { return std::vector<float>(n, NAN); }

// max |a−b| / (max|b| + tiny): a norm-relative error that is meaningful near zeros; any
// non-finite value of a gives infinity.
inline double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num = std::max(num, std::fabs(a[i] - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return num / den;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace check
