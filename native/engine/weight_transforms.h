// Deliberate weight deviations: what a cheaper (or broken) prover might run instead of the
// round's weights. Used to calibrate validation (issue: calibration) and to test that cheating
// is caught. Only the Linear/Conv matrices change, as in quantised serving; norms, biases and
// modulation tables keep their values.
#pragma once
#include <cstdint>
#include <string>

#include "weights.h"

namespace ditpoc {

struct WeightTransform {
  enum class Kind { None, Noise, Fp8E4M3, Int4 } kind = Kind::None;
  double relative = 0.0;   // Noise: w·(1 + relative·n), n ~ N(0, 1) seeded per tensor
  std::string seed;        // Noise: seed string
  int group_size = 128;    // Int4: elements per scale along the input dimension
};

// Parses "none", "noise:0.01[:seed]", "fp8", "int4[:group]"; throws std::invalid_argument.
WeightTransform parse_weight_transform(const std::string& text);
std::string describe(const WeightTransform& t);

void apply_weight_transform(ModelWeights& w, const WeightTransform& t, ThreadPool& pool);
// The same on one tensor (expert = routing bit), for weights that stream in tensor by tensor;
// tensors other than Linear/Conv matrices are left as they are.
void apply_weight_transform(const ModelConfig& cfg, int expert, const TensorSpec& spec, Tensor& tensor,
                            const WeightTransform& t, ThreadPool& pool);

// Round to the nearest float8 e4m3fn value (max 448, no infinities; saturates).
float round_fp8_e4m3(float x);

}  // namespace ditpoc
