// The CPU backend: SPEC §5 steps 1–8 for a batch of nonces, nonces routed to the same expert
// at a layer sharing one GEMM per projection. The SPEC §13 denoiser forward runs through the
// same code (Backend::denoise): reflections off, and passes sharing a latent and a timestep
// share its embedding and time MLPs.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "../backend.h"
#include "../bf16.h"
#include "../host_memory.h"
#include "../seeding.h"
#include "gemm.h"
#include "ops.h"

namespace ditpoc {

namespace {

using cpu::PackedWeight;

struct Linear {
  PackedWeight w;
  std::vector<float> b;
};

struct Block {
  std::vector<float> modulation;  // [6, D]
  Linear sq, sk, sv, so, cq, ck, cv, co, ffn0, ffn2;
  std::vector<float> s_norm_q, s_norm_k, c_norm_q, c_norm_k, norm3_w, norm3_b;
};

struct Expert {
  std::vector<Block> blocks;
  Linear patch, text0, text2, time0, time2, time_proj, head;
  std::vector<float> head_modulation;  // [2, D]
};

// Where one official tensor of an expert lives in the backend: a GEMM-packed matrix (Linear and
// Conv weights, conv flattened to [out, in·kernel]) or fp32 values (biases, norms, modulation
// tables). bf16 → fp32 is exact, so either form gives the streamed bf16 bits back (tensor()).
struct Slot {
  const TensorSpec* spec = nullptr;
  PackedWeight* packed = nullptr;
  std::vector<float>* values = nullptr;
  bool filled = false;
};

// Every tensor of tensor_specs(cfg) mapped to its place in `x` (x.blocks already sized).
std::map<std::string, Slot> expert_slots(const std::vector<TensorSpec>& specs, Expert& x) {
  std::map<std::string, Slot> slots;
  auto linear = [&](const std::string& prefix, Linear& l) {
    slots[prefix + ".weight"].packed = &l.w;
    slots[prefix + ".bias"].values = &l.b;
  };
  for (size_t i = 0; i < x.blocks.size(); ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    Block& bl = x.blocks[i];
    slots[p + "modulation"].values = &bl.modulation;
    linear(p + "self_attn.q", bl.sq);
    linear(p + "self_attn.k", bl.sk);
    linear(p + "self_attn.v", bl.sv);
    linear(p + "self_attn.o", bl.so);
    linear(p + "cross_attn.q", bl.cq);
    linear(p + "cross_attn.k", bl.ck);
    linear(p + "cross_attn.v", bl.cv);
    linear(p + "cross_attn.o", bl.co);
    linear(p + "ffn.0", bl.ffn0);
    linear(p + "ffn.2", bl.ffn2);
    slots[p + "self_attn.norm_q.weight"].values = &bl.s_norm_q;
    slots[p + "self_attn.norm_k.weight"].values = &bl.s_norm_k;
    slots[p + "cross_attn.norm_q.weight"].values = &bl.c_norm_q;
    slots[p + "cross_attn.norm_k.weight"].values = &bl.c_norm_k;
    slots[p + "norm3.weight"].values = &bl.norm3_w;
    slots[p + "norm3.bias"].values = &bl.norm3_b;
  }
  linear("patch_embedding", x.patch);
  linear("text_embedding.0", x.text0);
  linear("text_embedding.2", x.text2);
  linear("time_embedding.0", x.time0);
  linear("time_embedding.2", x.time2);
  linear("time_projection.1", x.time_proj);
  linear("head.head", x.head);
  slots["head.modulation"].values = &x.head_modulation;
  // The backend's fields and the model's tensor list must name the same tensors.
  for (const auto& spec : specs) {
    auto it = slots.find(spec.name);
    if (it == slots.end() || (spec.kind == TensorKind::Weight) != (it->second.packed != nullptr))
      throw std::logic_error("cpu backend: no place for tensor " + spec.name);
    it->second.spec = &spec;
  }
  if (slots.size() != specs.size()) throw std::logic_error("cpu backend: tensor list and backend fields differ");
  return slots;
}

// Host bytes of the weights as the CPU backend holds them: matrices packed in bf16 (their
// padding is a few columns), every other tensor in fp32.
int64_t held_weight_bytes(const ModelConfig& cfg) {
  int64_t n = 0;
  for (const auto& spec : tensor_specs(cfg)) n += spec.numel() * (spec.kind == TensorKind::Weight ? 2 : 4);
  return n * cfg.num_experts();
}

// Matrices wait in a batch of about this many bf16 bytes and are packed in parallel, each
// freed once packed: loading holds the packed model plus one batch, never the model twice.
constexpr int64_t kPackBatchBytes = int64_t(128) << 20;

// Host bytes that loading holds beyond the packed weights: the pack batch (it may overshoot by
// one tensor) and what a stream holds while it makes the next tensor (random weights: the
// tensor and its fp32 draw; a checkpoint: a read batch of 64M elements, checkpoint.cpp).
int64_t loading_bytes(const ModelConfig& cfg) {
  int64_t largest = 0;
  for (const auto& spec : tensor_specs(cfg)) largest = std::max(largest, spec.numel());
  return kPackBatchBytes + 2 * largest + std::max<int64_t>(6 * largest, int64_t(2) << 27);
}

// Per nonce and expert used: the time embedding e [D] and its projection e0 [6, D]. The
// embedded text context lives in the workspace (Workspace::ctx).
struct Conditioning {
  std::vector<float> e, e0;
};

// A grow-only float buffer, 64-byte aligned. Its contents are left uninitialised: every user
// overwrites what it later reads, so nothing is zeroed per layer or per forward.
class Buffer {
 public:
  float* get(size_t n) {
    if (n > cap_) {
      const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) throw std::bad_alloc();
      mem_.reset(p);
      cap_ = bytes / sizeof(float);
    }
    return mem_.get();
  }
  size_t bytes() const { return cap_ * sizeof(float); }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> mem_;
  size_t cap_ = 0;
};

// The backend's activations, sized by the largest batch seen so far and reused by every layer
// and every forward (allocating and zeroing them per layer cost more than the small GEMMs).
struct Workspace {
  Buffer h, q, k, v, a, o, f;        // a block's activations, [G·L, D] (f: [G·L, F])
  Buffer ck, cv, ctx_members;        // cross-attention keys/values and a gathered context
  Buffer mod;                        // per-nonce modulation rows [G, 6, D]
  Buffer xs, patches, latent, gathered;
  Buffer text_in, text_hidden;       // one nonce's text features and hidden layer
  std::vector<Buffer> ctx;           // per expert: every nonce's embedded context [B, ctx_len, D]

  size_t bytes() const {
    size_t n = 0;
    for (const Buffer* b : {&h, &q, &k, &v, &a, &o, &f, &ck, &cv, &ctx_members, &mod, &xs, &patches, &latent,
                            &gathered, &text_in, &text_hidden})
      n += b->bytes();
    for (const Buffer& b : ctx) n += b.bytes();
    return n;
  }
};

// Host bytes the workspace needs for a forward of `batch` nonces (its buffers at their largest
// use), so a request too large is refused up front instead of ending in an OOM kill.
double workspace_bytes(const ModelConfig& cfg, const Grid& grid, int ctx_len, int64_t batch) {
  const double B = static_cast<double>(batch), L = static_cast<double>(grid.tokens()), Lc = ctx_len;
  const double D = cfg.dim, F = cfg.ffn_dim, P = cfg.patch_in(), O = cfg.head_out(), E = cfg.num_experts();
  // xs, patches, gathered, h/q/k/v/a/o, f (or the head output); cross-attention, contexts;
  // text MLP; one seeded latent (as many values as the patches of one nonce); modulation.
  return 4 * (B * L * (D + P + std::max(D, P) + 6 * D + std::max(F, O)) + B * Lc * D * (3 + E) +
              Lc * (cfg.text_dim + D) + L * P + B * 6 * D);
}

// The backend's view of its weights: the model and their identity, no host tensors (the
// backend holds its own packed and fp32 copies; tensor() reads them back).
std::shared_ptr<const ModelWeights> weights_shell(const ModelConfig& cfg, const std::string& identity) {
  auto w = std::make_shared<ModelWeights>();
  w->config = &cfg;
  w->identity = identity;
  return w;
}

class CpuBackend final : public Backend {
 public:
  // Weights that stream in (`stream`), each tensor packed or widened as it arrives and its bf16
  // copy freed: host memory holds the packed model and one batch of tensors, never the model
  // twice.
  CpuBackend(const ModelConfig& cfg, const std::string& identity, const WeightStream& stream, int threads,
             cpu::Isa isa)
      : Backend(weights_shell(cfg, identity)), pool_(threads), isa_(isa) {
    const auto paths = cpu::supported_isas();
    if (std::find(paths.begin(), paths.end(), isa) == paths.end())
      throw std::runtime_error(std::string("CPU path ") + cpu::isa_name(isa) + " cannot run on this CPU");
    require_host_memory(held_weight_bytes(cfg) + loading_bytes(cfg), "the CPU backend's packed weights of " + cfg.id);
    load(stream);
  }

  std::string name() const override { return "cpu"; }
  int threads() const override { return pool_.size(); }

  void forward(const BatchRequest& req, float* out, const std::atomic<bool>* cancel) override;
  void forward_then(const BatchRequest& req, float* out, const std::atomic<bool>* cancel,
                    const std::function<void(int64_t, int64_t)>& per_outputs) override;
  Tensor tensor(int expert, const std::string& key) const override;

 private:
  // Takes every tensor `stream` hands out into experts_ (each exactly once, with its spec's
  // shape, else std::invalid_argument).
  void load(const WeightStream& stream);
  // The forward of a validated request; the caller holds forward_mu_.
  void run_forward(const BatchRequest& req, float* out, const std::atomic<bool>* cancel);
  int expert_of(uint8_t bit) const { return config().num_experts() == 1 ? 0 : bit; }
  void gemm(const float* a, int64_t m, const Linear& l, float* c, bool round) {
    cpu::gemm(a, l.w.k(), m, l.w, l.b.data(), c, l.w.n(), round, pool_, isa_);
  }
  // One block for G nonces: x [G·L, D] in place; ctx [G·ctx_len, D] their embedded contexts.
  void run_block(const Block& bl, float* x, const std::vector<const Conditioning*>& cond,
                 const float* ctx, int64_t L, int ctx_len, const cpu::RopeTable& rope,
                 Precision precision);
  // Attention-input rounding of a precision mode, per nonce (`groups` of `group_size`).
  void round_attention_inputs(float* x, int64_t groups, int64_t group_size, Precision precision) {
    if (precision == Precision::Fp32) return;
    if (precision == Precision::Fp8Attention) cpu::round_fp8_groups_inplace(x, groups, group_size, pool_);
    else cpu::round_bf16_inplace(x, groups * group_size, pool_);
  }

  ThreadPool pool_;
  const cpu::Isa isa_;  // the GEMM and attention kernels' path
  std::vector<Expert> experts_;
  std::vector<TensorSpec> specs_;                  // one expert's tensors (tensor_specs)
  std::vector<std::map<std::string, Slot>> slots_;  // per expert: where each tensor lives
  Workspace ws_;
  std::mutex forward_mu_;  // forwards share the workspace: one at a time
};

void CpuBackend::load(const WeightStream& stream) {
  const ModelConfig& cfg = config();
  specs_ = tensor_specs(cfg);
  experts_.resize(cfg.num_experts());  // never resized again: slots_ points into it
  for (Expert& x : experts_) {
    x.blocks.resize(cfg.num_layers);
    slots_.push_back(expert_slots(specs_, x));
  }
  struct Pending {
    Slot* slot;
    Tensor t;
  };
  std::vector<Pending> pending;
  int64_t pending_bytes = 0;
  auto pack_pending = [&] {
    std::atomic<size_t> next{0};  // dynamic hand-out: the matrices differ in size
    pool_.run_on_all([&](int, int) {
      for (size_t i; (i = next.fetch_add(1)) < pending.size();) {
        Tensor& t = pending[i].t;
        const int64_t n = t.shape[0];
        *pending[i].slot->packed = PackedWeight::pack(t.data.data(), n, t.numel() / n);
        std::vector<uint16_t>().swap(t.data);
      }
    });
    pending.clear();
    pending_bytes = 0;
  };
  stream([&](int x, const std::string& key, Tensor& t) {
    if (x < 0 || x >= cfg.num_experts())
      throw std::invalid_argument("cpu backend: weights stream sent tensor '" + key + "' of expert " +
                                  std::to_string(x) + "; " + cfg.id + " has " + std::to_string(cfg.num_experts()));
    const auto it = slots_[x].find(key);
    if (it == slots_[x].end())
      throw std::invalid_argument("cpu backend: weights stream sent an unknown tensor '" + key + "' (" +
                                  cfg.experts[x] + ")");
    Slot& slot = it->second;
    if (t.shape != slot.spec->shape || static_cast<int64_t>(t.data.size()) != slot.spec->numel())
      throw std::invalid_argument("cpu backend: tensor " + key + " of " + cfg.experts[x] + " has the wrong shape");
    if (slot.filled) throw std::invalid_argument("cpu backend: tensor " + key + " of " + cfg.experts[x] + " sent twice");
    slot.filled = true;
    if (slot.values) {
      slot.values->resize(t.data.size());
      for (size_t i = 0; i < t.data.size(); ++i) (*slot.values)[i] = bf16_to_f32(t.data[i]);
      std::vector<uint16_t>().swap(t.data);
      return;
    }
    pending_bytes += static_cast<int64_t>(t.data.size() * sizeof(uint16_t));
    pending.push_back({&slot, std::move(t)});
    if (pending_bytes >= kPackBatchBytes) pack_pending();
  });
  pack_pending();
  for (int x = 0; x < cfg.num_experts(); ++x)
    for (const auto& spec : specs_)
      if (!slots_[x].at(spec.name).filled)
        throw std::invalid_argument("cpu backend: the weights stream ended without tensor " + spec.name + " of " +
                                    cfg.experts[x]);
}

Tensor CpuBackend::tensor(int expert, const std::string& key) const {
  if (expert < 0 || expert >= static_cast<int>(slots_.size()))
    throw std::out_of_range("tensor(): expert " + std::to_string(expert) + " of " + config().id + ", which has " +
                            std::to_string(slots_.size()));
  const auto it = slots_[expert].find(key);
  if (it == slots_[expert].end()) throw std::runtime_error("weights: missing tensor '" + key + "'");
  const Slot& slot = it->second;
  Tensor t;
  t.shape = slot.spec->shape;
  if (slot.packed) {
    t.data = slot.packed->unpack();
  } else {
    // The fp32 values are widened bf16: their upper 16 bits are the bf16 bits, NaN payloads too.
    t.data.resize(slot.values->size());
    for (size_t i = 0; i < t.data.size(); ++i) {
      uint32_t u;
      std::memcpy(&u, &(*slot.values)[i], sizeof u);
      t.data[i] = static_cast<uint16_t>(u >> 16);
    }
  }
  return t;
}

void CpuBackend::run_block(const Block& bl, float* x, const std::vector<const Conditioning*>& cond,
                           const float* ctx, int64_t L, int ctx_len, const cpu::RopeTable& rope,
                           Precision precision) {
  const bool round = precision != Precision::Fp32;
  // Attention numerics: bf16 modes give it bf16 q, k, v (round_attention_inputs); Bf16Flash
  // also rounds P. Fp8Attention's scaled e4m3 values are not bf16: fp32 products.
  cpu::AttentionNumerics attn;
  attn.bf16_inputs = precision == Precision::Bf16 || precision == Precision::Bf16Flash;
  attn.round_p_bf16 = precision == Precision::Bf16Flash;
  const ModelConfig& cfg = config();
  const int D = cfg.dim, F = cfg.ffn_dim, H = cfg.num_heads, hd = cfg.head_dim;
  const int64_t G = static_cast<int64_t>(cond.size()), M = G * L, Mc = G * ctx_len;
  const double eps = cfg.eps;

  // Modulation rows per nonce: m = modulation + e0 (fp32), six vectors of D.
  float* mod = ws_.mod.get(static_cast<size_t>(G) * 6 * D);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t i = 0; i < 6 * D; ++i) mod[g * 6 * D + i] = bl.modulation[i] + cond[g]->e0[i];
  auto mrow = [&](int k) { return mod + static_cast<int64_t>(k) * D; };
  const int64_t mstride = 6 * D;

  const size_t md = static_cast<size_t>(M) * D;
  float *h = ws_.h.get(md), *q = ws_.q.get(md), *k = ws_.k.get(md), *v = ws_.v.get(md),
        *a = ws_.a.get(md), *o = ws_.o.get(md);
  // Self-attention.
  cpu::layernorm_modulate(x, M, D, eps, mrow(0), mrow(1), mstride, L, h, pool_);
  gemm(h, M, bl.sq, q, round);
  gemm(h, M, bl.sk, k, round);
  gemm(h, M, bl.sv, v, round);
  cpu::rmsnorm_inplace(q, M, D, eps, bl.s_norm_q.data(), pool_);
  cpu::rmsnorm_inplace(k, M, D, eps, bl.s_norm_k.data(), pool_);
  cpu::rope_inplace(q, M, H, hd, rope, pool_);
  cpu::rope_inplace(k, M, H, hd, rope, pool_);
  for (float* t : {q, k, v}) round_attention_inputs(t, G, L * D, precision);
  cpu::attention(q, k, v, G, L, L, H, hd, a, pool_, attn, isa_);
  gemm(a, M, bl.so, o, round);
  cpu::residual_add(x, o, mrow(2), mstride, M, D, L, pool_);

  // Cross-attention to the nonce's own text context (no RoPE, no gate).
  cpu::layernorm_affine(x, M, D, eps, bl.norm3_w.data(), bl.norm3_b.data(), h, pool_);
  gemm(h, M, bl.cq, q, round);
  cpu::rmsnorm_inplace(q, M, D, eps, bl.c_norm_q.data(), pool_);
  const size_t mcd = static_cast<size_t>(Mc) * D;
  float *ck = ws_.ck.get(mcd), *cv = ws_.cv.get(mcd);
  gemm(ctx, Mc, bl.ck, ck, round);
  gemm(ctx, Mc, bl.cv, cv, round);
  cpu::rmsnorm_inplace(ck, Mc, D, eps, bl.c_norm_k.data(), pool_);
  round_attention_inputs(q, G, L * D, precision);
  for (float* t : {ck, cv}) round_attention_inputs(t, G, static_cast<int64_t>(ctx_len) * D, precision);
  cpu::attention(q, ck, cv, G, L, ctx_len, H, hd, a, pool_, attn, isa_);
  gemm(a, M, bl.co, o, round);
  cpu::residual_add(x, o, nullptr, 0, M, D, L, pool_);

  // Feed-forward.
  cpu::layernorm_modulate(x, M, D, eps, mrow(3), mrow(4), mstride, L, h, pool_);
  float* f = ws_.f.get(static_cast<size_t>(M) * F);
  gemm(h, M, bl.ffn0, f, round);
  cpu::gelu_tanh_inplace(f, M * F, pool_);
  gemm(f, M, bl.ffn2, o, round);
  cpu::residual_add(x, o, mrow(5), mstride, M, D, L, pool_);
}

void CpuBackend::forward(const BatchRequest& req, float* out, const std::atomic<bool>* cancel) {
  validate_request(config(), req);
  std::lock_guard<std::mutex> lock(forward_mu_);
  run_forward(req, out, cancel);
}

void CpuBackend::forward_then(const BatchRequest& req, float* out, const std::atomic<bool>* cancel,
                              const std::function<void(int64_t, int64_t)>& per_outputs) {
  validate_request(config(), req);
  std::lock_guard<std::mutex> lock(forward_mu_);
  run_forward(req, out, cancel);
  if (!req.nonces.empty()) pool_.parallel_for(static_cast<int64_t>(req.nonces.size()), per_outputs);
}

void CpuBackend::run_forward(const BatchRequest& req, float* out, const std::atomic<bool>* cancel) {
  const ModelConfig& cfg = config();
  const int64_t B = static_cast<int64_t>(req.nonces.size());
  if (B == 0) return;
  {
    // What the workspace holds already is reused, not allocated again.
    const double need = workspace_bytes(cfg, req.grid, req.ctx_len, B) - static_cast<double>(ws_.bytes());
    if (need > 0)
      require_host_memory(need > 9e18 ? INT64_MAX : static_cast<int64_t>(need),
                          "a CPU forward of " + std::to_string(B) + " pass(es) of " + cfg.id + " at grid [" +
                              std::to_string(req.grid.frames) + ", " + std::to_string(req.grid.height) + ", " +
                              std::to_string(req.grid.width) + "], ctx_len " + std::to_string(req.ctx_len));
  }
  const int D = cfg.dim;
  const int64_t L = req.grid.tokens();
  const int Lc = req.ctx_len;
  const int64_t ctx_rows = static_cast<int64_t>(Lc) * D;  // one nonce's embedded context
  const bool round = req.precision != Precision::Fp32;
  const int64_t latent_size = static_cast<int64_t>(cfg.in_channels) * req.grid.frames *
                              (cfg.patch[1] * req.grid.height) * (cfg.patch[2] * req.grid.width);
  auto check_cancel = [&] {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw Cancelled();
  };
  // The pool's loops (GEMMs, attention, norms) check the flag too, between pieces of ~20 ms.
  ThreadPool::CancelScope cancel_scope(cancel);
  if (ws_.ctx.size() < static_cast<size_t>(cfg.num_experts())) ws_.ctx.resize(cfg.num_experts());

  // Steps 1–5: inputs and per-expert conditioning for each nonce. Each nonce's embedded
  // context for expert x goes to row block b of ws_.ctx[x], once per forward.
  std::vector<std::vector<Conditioning>> cond(B, std::vector<Conditioning>(cfg.num_experts()));
  for (int x = 0; x < cfg.num_experts(); ++x) {
    std::vector<int64_t> users;
    for (int64_t b = 0; b < B; ++b)
      for (auto r : req.nonces[b].experts)
        if (expert_of(r) == x) { users.push_back(b); break; }
    if (users.empty()) continue;
    const Expert& ex = experts_[x];
    const int64_t G = static_cast<int64_t>(users.size());
    // Time embedding and projection once per distinct timestep (the passes of a denoise share
    // one), fp32 inputs (the official time MLPs run in fp32). A GEMM row's bits do not depend
    // on the other rows, so sharing changes no value.
    std::vector<int> steps;
    std::vector<int64_t> step_row(G);
    for (int64_t g = 0; g < G; ++g) {
      const int t = req.nonces[users[g]].timestep;
      const auto it = std::find(steps.begin(), steps.end(), t);
      step_row[g] = it - steps.begin();
      if (it == steps.end()) steps.push_back(t);
    }
    const int64_t T = static_cast<int64_t>(steps.size());
    std::vector<float> sin_emb(T * cfg.freq_dim), t1(T * D), e(T * D), e_silu(T * D), e0(T * 6 * D);
    for (int64_t r = 0; r < T; ++r) cpu::timestep_sinusoid(steps[r], cfg.freq_dim, sin_emb.data() + r * cfg.freq_dim);
    gemm(sin_emb.data(), T, ex.time0, t1.data(), false);
    cpu::silu_inplace(t1.data(), T * D, pool_);
    gemm(t1.data(), T, ex.time2, e.data(), false);
    e_silu = e;
    cpu::silu_inplace(e_silu.data(), T * D, pool_);
    gemm(e_silu.data(), T, ex.time_proj, e0.data(), false);
    // Text embedding (bf16 GEMM inputs), one nonce at a time to bound memory.
    float* ctx_x = ws_.ctx[x].get(static_cast<size_t>(B * ctx_rows));
    float* c = ws_.text_in.get(static_cast<size_t>(Lc) * cfg.text_dim);
    float* c1 = ws_.text_hidden.get(static_cast<size_t>(ctx_rows));
    for (int64_t g = 0; g < G; ++g) {
      const NonceInput& n = req.nonces[users[g]];
      Conditioning& cd = cond[users[g]][x];
      const int64_t r = step_row[g];
      cd.e.assign(e.begin() + r * D, e.begin() + (r + 1) * D);
      cd.e0.assign(e0.begin() + r * 6 * D, e0.begin() + (r + 1) * 6 * D);
      const float* cptr = n.context;
      if (!cptr) {
        normal(n.context_seed, static_cast<int64_t>(Lc) * cfg.text_dim, c, &pool_);
        cptr = c;
      }
      gemm(cptr, Lc, ex.text0, c1, round);
      cpu::gelu_tanh_inplace(c1, ctx_rows, pool_);
      gemm(c1, Lc, ex.text2, ctx_x + users[g] * ctx_rows, round);
    }
    check_cancel();
  }

  // Step 6: patch embedding with each nonce's first-layer expert.
  const int pt = cfg.patch[0], ph = cfg.patch[1], pw = cfg.patch[2];
  const int P = cfg.patch_in();
  const int Fz = req.grid.frames * pt, Hz = req.grid.height * ph, Wz = req.grid.width * pw;
  // A nonce with the same explicit latent and first expert as an earlier one (the passes of a
  // denoise) takes that one's embedded rows: patchified and embedded once, the same bits.
  std::vector<int64_t> embed_from(B);
  for (int64_t b = 0; b < B; ++b) {
    embed_from[b] = b;
    const NonceInput& n = req.nonces[b];
    for (int64_t o = 0; o < b && n.latent; ++o)
      if (req.nonces[o].latent == n.latent && expert_of(req.nonces[o].experts[0]) == expert_of(n.experts[0])) {
        embed_from[b] = o;
        break;
      }
  }
  float* xs = ws_.xs.get(static_cast<size_t>(B * L * D));
  float* patches = ws_.patches.get(static_cast<size_t>(B * L * P));
  for (int64_t b = 0; b < B; ++b) {
    if (embed_from[b] != b) continue;
    const NonceInput& n = req.nonces[b];
    const float* z = n.latent;
    if (!z) {
      float* latent = ws_.latent.get(static_cast<size_t>(latent_size));
      if (n.latent_strong) normal8(n.latent_words, latent_size, latent, &pool_);
      else normal(n.latent_seed, latent_size, latent, &pool_);
      z = latent;
    }
    // Patch vector order (c, pt, ph, pw), c slowest: the Conv3d weight [D, C_in, pt, ph, pw].
    int64_t tok = 0;
    for (int f = 0; f < req.grid.frames; ++f)
      for (int hh = 0; hh < req.grid.height; ++hh)
        for (int ww = 0; ww < req.grid.width; ++ww, ++tok) {
          float* dst = patches + (b * L + tok) * P;
          int idx = 0;
          for (int c = 0; c < cfg.in_channels; ++c)
            for (int a = 0; a < pt; ++a)
              for (int i = 0; i < ph; ++i)
                for (int j = 0; j < pw; ++j)
                  dst[idx++] = z[((static_cast<int64_t>(c) * Fz + f * pt + a) * Hz + hh * ph + i) * Wz +
                                 ww * pw + j];
        }
  }

  // Gathers the members' blocks of `chunk` floats from rows into ws_.gathered (or returns rows
  // itself when every nonce is a member), and scatters them back.
  auto gather = [&](const std::vector<int64_t>& members, const float* rows, int64_t chunk,
                    Buffer& buf) -> const float* {
    if (static_cast<int64_t>(members.size()) == B) return rows;
    float* dst = buf.get(members.size() * chunk);
    for (size_t g = 0; g < members.size(); ++g)
      std::memcpy(dst + g * chunk, rows + members[g] * chunk, sizeof(float) * chunk);
    return dst;
  };
  auto scatter = [&](const std::vector<int64_t>& members, const float* src, float* rows, int64_t chunk) {
    if (src == rows) return;
    for (size_t g = 0; g < members.size(); ++g)
      std::memcpy(rows + members[g] * chunk, src + g * chunk, sizeof(float) * chunk);
  };
  // The nonces whose route(b) is expert x.
  auto members_of = [&](int x, auto route) {
    std::vector<int64_t> members;
    for (int64_t b = 0; b < B; ++b)
      if (route(b) == x) members.push_back(b);
    return members;
  };

  for (int x = 0; x < cfg.num_experts(); ++x) {
    const auto members = members_of(
        x, [&](int64_t b) { return embed_from[b] == b ? expert_of(req.nonces[b].experts[0]) : -1; });
    if (members.empty()) continue;
    const int64_t G = static_cast<int64_t>(members.size());
    const float* pin = gather(members, patches, L * P, ws_.gathered);
    float* pout = G == B ? xs : ws_.o.get(static_cast<size_t>(G * L * D));
    gemm(pin, G * L, experts_[x].patch, pout, round);
    scatter(members, pout, xs, L * D);
  }
  for (int64_t b = 0; b < B; ++b)
    if (embed_from[b] != b) std::memcpy(xs + b * L * D, xs + embed_from[b] * L * D, sizeof(float) * L * D);

  // Step 7: blocks with per-layer routing, then the seeded Householder reflection (unless the
  // request turns reflections off).
  const cpu::RopeTable rope =
      cpu::make_rope_table(req.grid.frames, req.grid.height, req.grid.width, cfg.head_dim);
  for (int i = 0; i < cfg.num_layers; ++i) {
    check_cancel();
    if (!req.skip_layers.empty() && req.skip_layers[i]) {
      if (req.reflections)
        cpu::reflect_rows(xs, B * L, D, householder_vector(req.householder_seeds[i], D).data(), pool_);
      continue;
    }
    for (int x = 0; x < cfg.num_experts(); ++x) {
      const auto members = members_of(x, [&](int64_t b) { return expert_of(req.nonces[b].experts[i]); });
      if (members.empty()) continue;
      std::vector<const Conditioning*> c;
      for (auto b : members) c.push_back(&cond[b][x]);
      const float* ctx = gather(members, ws_.ctx[x].get(0), ctx_rows, ws_.ctx_members);
      float* rows = const_cast<float*>(gather(members, xs, L * D, ws_.gathered));
      run_block(experts_[x].blocks[i], rows, c, ctx, L, Lc, rope, req.precision);
      scatter(members, rows, xs, L * D);
    }
    if (!req.reflections) continue;
    const std::vector<float> w = householder_vector(req.householder_seeds[i], D);
    cpu::reflect_rows(xs, B * L, D, w.data(), pool_);
  }

  // Step 8: the head of the last layer's expert, all in fp32.
  const int last = cfg.num_layers - 1;
  const int64_t out_w = cfg.head_out();
  for (int x = 0; x < cfg.num_experts(); ++x) {
    const auto members = members_of(x, [&](int64_t b) { return expert_of(req.nonces[b].experts[last]); });
    if (members.empty()) continue;
    const int64_t G = static_cast<int64_t>(members.size());
    std::vector<float> shift(G * D), scale(G * D);
    for (int64_t g = 0; g < G; ++g) {
      const auto& e = cond[members[g]][x].e;
      for (int j = 0; j < D; ++j) {
        shift[g * D + j] = experts_[x].head_modulation[j] + e[j];
        scale[g * D + j] = experts_[x].head_modulation[D + j] + e[j];
      }
    }
    const float* hrows = gather(members, xs, L * D, ws_.gathered);
    float* hin = ws_.h.get(static_cast<size_t>(G * L * D));
    cpu::layernorm_modulate(hrows, G * L, D, cfg.eps, shift.data(), scale.data(), D, L, hin, pool_);
    float* hout = G == B ? out : ws_.f.get(static_cast<size_t>(G * L * out_w));
    gemm(hin, G * L, experts_[x].head, hout, false);
    scatter(members, hout, out, L * out_w);
  }
}

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const ModelWeights> weights, int threads) {
  return make_cpu_backend(std::move(weights), threads, cpu::active_isa());
}

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const ModelWeights> weights, int threads,
                                          cpu::Isa isa) {
  if (!weights) throw std::invalid_argument("make_cpu_backend: no weights");
  check_weights_complete(*weights);
  const ModelWeights& w = *weights;
  // The caller keeps its weights; each tensor is copied in turn, the backend keeps none of them.
  return make_cpu_backend_streamed(
      *w.config, w.identity,
      [&](const TensorSink& sink) {
        for (size_t x = 0; x < w.experts.size(); ++x)
          for (const auto& [key, t] : w.experts[x].tensors) {
            Tensor copy = t;
            sink(static_cast<int>(x), key, copy);
          }
      },
      threads, isa);
}

std::unique_ptr<Backend> make_cpu_backend_streamed(const ModelConfig& cfg, const std::string& identity,
                                                   const WeightStream& stream, int threads, cpu::Isa isa) {
  if (!stream) throw std::invalid_argument("make_cpu_backend_streamed: no weights stream");
  return std::make_unique<CpuBackend>(cfg, identity, stream, threads, isa);
}

int64_t cpu_weight_bytes(const ModelConfig& cfg) { return held_weight_bytes(cfg) + loading_bytes(cfg); }

double cpu_workspace_bytes(const ModelConfig& cfg, const Grid& grid, int ctx_len, int64_t batch) {
  return workspace_bytes(cfg, grid, ctx_len, batch);
}

}  // namespace ditpoc
