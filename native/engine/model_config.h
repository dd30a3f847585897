// The model registry (SPEC §3): architecture numbers and the tensor table derived from them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ditpoc {

struct ModelConfig {
  std::string id;
  int dim = 0;          // D
  int ffn_dim = 0;      // F
  int num_heads = 0;
  int num_layers = 0;
  int in_channels = 0;  // C_in
  int out_channels = 0; // C_out
  std::vector<std::string> experts;  // expert folder names; index = routing bit
  int vae_stride[3] = {4, 8, 8};
  int patch[3] = {1, 2, 2};
  int head_dim = 128;
  int text_dim = 4096;
  int freq_dim = 256;
  double eps = 1e-6;

  int patch_volume() const { return patch[0] * patch[1] * patch[2]; }
  int patch_in() const { return in_channels * patch_volume(); }    // patch-embedding fan-in
  int head_out() const { return out_channels * patch_volume(); }   // head output per token
  int num_experts() const { return static_cast<int>(experts.size()); }
};

// How SPEC §6 draws a tensor's random values.
enum class TensorKind { Weight, Modulation, NormWeight, Bias };

struct TensorSpec {
  std::string name;              // official key, e.g. "blocks.3.self_attn.q.weight"
  std::vector<int64_t> shape;    // as stored in the official checkpoint
  TensorKind kind;
  int64_t numel() const;
  int64_t fan_in() const;        // product of all dims but the first
};

const std::vector<ModelConfig>& all_models();
// Throws std::invalid_argument naming the known ids when `id` is unknown.
const ModelConfig& find_model(const std::string& id);
// Every tensor of one expert in official key order (blocks first, then top-level).
std::vector<TensorSpec> tensor_specs(const ModelConfig& cfg);
// The diffusers key of an official key (research/wan22-architecture.md §5.3).
std::string diffusers_key(const std::string& official_key);
// Parameters per expert.
int64_t params_per_expert(const ModelConfig& cfg);

}  // namespace ditpoc
