#include "model_config.h"

#include <stdexcept>

namespace ditpoc {

namespace {

ModelConfig make(const char* id, int dim, int ffn, int heads, int layers, int cin, int cout,
                 std::vector<std::string> experts, int vae_s0, int vae_s1, int vae_s2) {
  ModelConfig c;
  c.id = id;
  c.dim = dim;
  c.ffn_dim = ffn;
  c.num_heads = heads;
  c.num_layers = layers;
  c.in_channels = cin;
  c.out_channels = cout;
  c.experts = std::move(experts);
  c.vae_stride[0] = vae_s0;
  c.vae_stride[1] = vae_s1;
  c.vae_stride[2] = vae_s2;
  return c;
}

const std::vector<std::string> kTwoExperts = {"high_noise_model", "low_noise_model"};
const std::vector<std::string> kOneExpert = {"model"};

}  // namespace

const std::vector<ModelConfig>& all_models() {
  static const std::vector<ModelConfig> models = {
      make("wan2.2-t2v-a14b", 5120, 13824, 40, 40, 16, 16, kTwoExperts, 4, 8, 8),
      make("wan2.2-i2v-a14b", 5120, 13824, 40, 40, 36, 16, kTwoExperts, 4, 8, 8),
      make("wan2.2-ti2v-5b", 3072, 14336, 24, 30, 48, 48, kOneExpert, 4, 16, 16),
      make("wan2.1-t2v-1.3b", 1536, 8960, 12, 30, 16, 16, kOneExpert, 4, 8, 8),
      // wan-tiny keeps head_dim 128 (2 heads) so RoPE and attention follow the real layout.
      make("wan-tiny", 256, 512, 2, 4, 16, 16, kTwoExperts, 4, 8, 8),
  };
  return models;
}

const ModelConfig& find_model(const std::string& id) {
  std::string known;
  for (const auto& m : all_models()) {
    if (m.id == id) return m;
    known += (known.empty() ? "" : ", ") + m.id;
  }
  throw std::invalid_argument("unknown model '" + id + "' (known: " + known + ")");
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

int64_t TensorSpec::fan_in() const {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

std::vector<TensorSpec> tensor_specs(const ModelConfig& cfg) {
  const int64_t D = cfg.dim, F = cfg.ffn_dim;
  std::vector<TensorSpec> out;
  auto add = [&](std::string name, std::vector<int64_t> shape, TensorKind kind) {
    out.push_back(TensorSpec{std::move(name), std::move(shape), kind});
  };
  auto linear = [&](const std::string& prefix, int64_t n_out, int64_t n_in) {
    add(prefix + ".weight", {n_out, n_in}, TensorKind::Weight);
    add(prefix + ".bias", {n_out}, TensorKind::Bias);
  };
  for (int i = 0; i < cfg.num_layers; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    add(b + "modulation", {1, 6, D}, TensorKind::Modulation);
    for (const char* p : {"q", "k", "v", "o"}) linear(b + "self_attn." + p, D, D);
    add(b + "self_attn.norm_q.weight", {D}, TensorKind::NormWeight);
    add(b + "self_attn.norm_k.weight", {D}, TensorKind::NormWeight);
    add(b + "norm3.weight", {D}, TensorKind::NormWeight);
    add(b + "norm3.bias", {D}, TensorKind::Bias);
    for (const char* p : {"q", "k", "v", "o"}) linear(b + "cross_attn." + p, D, D);
    add(b + "cross_attn.norm_q.weight", {D}, TensorKind::NormWeight);
    add(b + "cross_attn.norm_k.weight", {D}, TensorKind::NormWeight);
    linear(b + "ffn.0", F, D);
    linear(b + "ffn.2", D, F);
  }
  add("patch_embedding.weight", {D, cfg.in_channels, cfg.patch[0], cfg.patch[1], cfg.patch[2]},
      TensorKind::Weight);
  add("patch_embedding.bias", {D}, TensorKind::Bias);
  linear("text_embedding.0", D, cfg.text_dim);
  linear("text_embedding.2", D, D);
  linear("time_embedding.0", D, cfg.freq_dim);
  linear("time_embedding.2", D, D);
  linear("time_projection.1", 6 * D, D);
  linear("head.head", cfg.head_out(), D);
  add("head.modulation", {1, 2, D}, TensorKind::Modulation);
  return out;
}

int64_t params_per_expert(const ModelConfig& cfg) {
  int64_t n = 0;
  for (const auto& t : tensor_specs(cfg)) n += t.numel();
  return n;
}

namespace {

bool replace_prefix(std::string& s, const std::string& from, const std::string& to) {
  if (s.compare(0, from.size(), from) != 0) return false;
  s = to + s.substr(from.size());
  return true;
}

}  // namespace

std::string diffusers_key(const std::string& official) {
  std::string key = official;
  if (key.compare(0, 7, "blocks.") == 0) {
    const size_t dot = key.find('.', 7);
    if (dot == std::string::npos) return key;
    const std::string head = key.substr(0, dot + 1);  // "blocks.N."
    std::string rest = key.substr(dot + 1);
    static const std::pair<const char*, const char*> kBlockRenames[] = {
        {"modulation", "scale_shift_table"},
        {"self_attn.q.", "attn1.to_q."},
        {"self_attn.k.", "attn1.to_k."},
        {"self_attn.v.", "attn1.to_v."},
        {"self_attn.o.", "attn1.to_out.0."},
        {"self_attn.norm_", "attn1.norm_"},
        {"cross_attn.q.", "attn2.to_q."},
        {"cross_attn.k.", "attn2.to_k."},
        {"cross_attn.v.", "attn2.to_v."},
        {"cross_attn.o.", "attn2.to_out.0."},
        {"cross_attn.norm_", "attn2.norm_"},
        {"norm3.", "norm2."},  // the affine cross-attn LayerNorm is norm3 officially, norm2 in diffusers
        {"ffn.0.", "ffn.net.0.proj."},
        {"ffn.2.", "ffn.net.2."},
    };
    for (const auto& [from, to] : kBlockRenames)
      if (replace_prefix(rest, from, to)) break;
    return head + rest;
  }
  static const std::pair<const char*, const char*> kTopRenames[] = {
      {"text_embedding.0.", "condition_embedder.text_embedder.linear_1."},
      {"text_embedding.2.", "condition_embedder.text_embedder.linear_2."},
      {"time_embedding.0.", "condition_embedder.time_embedder.linear_1."},
      {"time_embedding.2.", "condition_embedder.time_embedder.linear_2."},
      {"time_projection.1.", "condition_embedder.time_proj."},
      {"head.head.", "proj_out."},
      {"head.modulation", "scale_shift_table"},
  };
  for (const auto& [from, to] : kTopRenames)
    if (replace_prefix(key, from, to)) break;
  return key;
}

}  // namespace ditpoc
