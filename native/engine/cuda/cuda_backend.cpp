// The CUDA backend (cuda_backend.h): weights resident on one GPU, the SPEC §5 forward as a
// sequence of kernels (kernels/kernels.h) and cuBLASLt GEMMs (lt_gemm.h) on one stream.
//
// Device weight layout, per expert: one bf16 arena for the matrices and one fp32 arena for the
// vectors (biases, norm weights, modulation tables: bf16 values widened once, so kernels and
// GEMM epilogues read fp32). Self-attention q, k, v are stored contiguously as one [3D, D]
// matrix and cross-attention k, v as one [2D, D], so each is one GEMM.
//
// Activation plan (ActPlan): one allocation carved into the buffers of a B-nonce forward, sized
// by the same function that cuda_activation_bytes() reports; see make_plan().
#include "cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>

#include "../../../kernels/cuda_check.h"
#include "../../../kernels/kernels.h"
#include "../bf16.h"
#include "../cpu/ops.h"
#include "../seeding.h"
#include "lt_gemm.h"

namespace ditpoc {

namespace {

using cuda::LtGemm;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / kGiB);
  return buf;
}

// ---- device memory ----

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes) DITPOC_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      if (ptr_) cudaFree(ptr_);
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      o.ptr_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  char* get() const { return static_cast<char*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Makes the backend's device current on the calling thread (Node calls in from pool threads
// other than the constructing one). It does not switch back afterwards: since CUDA 12
// cudaSetDevice creates the device's primary context, so "restoring" a fresh thread's default
// device 0 would put a context (hundreds of MiB) on a GPU this backend never uses.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    int cur = -1;
    DITPOC_CUDA_CHECK(cudaGetDevice(&cur));
    if (cur != device) DITPOC_CUDA_CHECK(cudaSetDevice(device));
  }
};

// ---- weight layout ----

struct Slot {
  bool f32 = false;
  size_t offset = 0;  // elements into the arena of its type
  int64_t numel = 0;
};

struct WeightLayout {
  std::map<std::string, Slot> slots;
  size_t bf16_elems = 0, f32_elems = 0;

  static size_t align(size_t n) { return (n + 127) / 128 * 128; }  // 256 B (bf16) / 512 B (fp32)
  // Tensors stored back to back (one GEMM over their concatenation).
  void group(const std::vector<std::string>& names, int64_t numel_each, bool f32) {
    size_t& top = f32 ? f32_elems : bf16_elems;
    size_t off = top;
    for (const auto& n : names) {
      slots[n] = Slot{f32, off, numel_each};
      off += static_cast<size_t>(numel_each);
    }
    top = align(off);
  }
  void one(const std::string& name, int64_t numel, bool f32) { group({name}, numel, f32); }
};

WeightLayout make_layout(const ModelConfig& cfg) {
  const int64_t D = cfg.dim, F = cfg.ffn_dim;
  WeightLayout l;
  auto linear = [&](const std::string& p, int64_t n, int64_t k) {
    l.one(p + ".weight", n * k, false);
    l.one(p + ".bias", n, true);
  };
  for (int i = 0; i < cfg.num_layers; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    l.group({b + "self_attn.q.weight", b + "self_attn.k.weight", b + "self_attn.v.weight"}, D * D, false);
    l.group({b + "self_attn.q.bias", b + "self_attn.k.bias", b + "self_attn.v.bias"}, D, true);
    linear(b + "self_attn.o", D, D);
    linear(b + "cross_attn.q", D, D);
    l.group({b + "cross_attn.k.weight", b + "cross_attn.v.weight"}, D * D, false);
    l.group({b + "cross_attn.k.bias", b + "cross_attn.v.bias"}, D, true);
    linear(b + "cross_attn.o", D, D);
    linear(b + "ffn.0", F, D);
    linear(b + "ffn.2", D, F);
    l.one(b + "modulation", 6 * D, true);
    for (const char* n : {"self_attn.norm_q.weight", "self_attn.norm_k.weight", "cross_attn.norm_q.weight",
                          "cross_attn.norm_k.weight", "norm3.weight", "norm3.bias"})
      l.one(b + n, D, true);
  }
  l.one("patch_embedding.weight", D * cfg.patch_in(), false);
  l.one("patch_embedding.bias", D, true);
  linear("text_embedding.0", D, cfg.text_dim);
  linear("text_embedding.2", D, D);
  linear("time_embedding.0", D, cfg.freq_dim);
  linear("time_embedding.2", D, D);
  linear("time_projection.1", 6 * D, D);
  linear("head.head", cfg.head_out(), D);
  l.one("head.modulation", 2 * D, true);
  // Every tensor of the model maps to a slot of its size (and nothing else is in the layout).
  const auto specs = tensor_specs(cfg);
  if (specs.size() != l.slots.size()) throw std::logic_error("cuda weight layout: tensor count mismatch");
  for (const auto& s : specs) {
    auto it = l.slots.find(s.name);
    if (it == l.slots.end() || it->second.numel != s.numel())
      throw std::logic_error("cuda weight layout: no slot for " + s.name);
  }
  return l;
}

struct DevLinear {
  const uint16_t* w = nullptr;
  const float* b = nullptr;
  int64_t n = 0, k = 0;
};

struct DevBlock {
  DevLinear qkv, o, cq, ckv, co, ffn0, ffn2;
  const float *modulation, *s_norm_q, *s_norm_k, *c_norm_q, *c_norm_k, *norm3_w, *norm3_b;
};

struct DevExpert {
  DeviceBuffer bf16, f32;
  std::vector<DevBlock> blocks;
  DevLinear patch, text0, text2, time0, time2, time_proj, head;
  const float* head_modulation = nullptr;
};

void bind_expert(const ModelConfig& cfg, const WeightLayout& l, DevExpert& x) {
  const auto* wb = reinterpret_cast<const uint16_t*>(x.bf16.get());
  const auto* wf = reinterpret_cast<const float*>(x.f32.get());
  auto f = [&](const std::string& n) { return wf + l.slots.at(n).offset; };
  auto lin = [&](const std::string& w, const std::string& b, int64_t n, int64_t k) {
    return DevLinear{wb + l.slots.at(w).offset, wf + l.slots.at(b).offset, n, k};
  };
  auto simple = [&](const std::string& p, int64_t n, int64_t k) { return lin(p + ".weight", p + ".bias", n, k); };
  const int64_t D = cfg.dim, F = cfg.ffn_dim;
  x.blocks.resize(cfg.num_layers);
  for (int i = 0; i < cfg.num_layers; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    DevBlock& bl = x.blocks[i];
    bl.qkv = lin(b + "self_attn.q.weight", b + "self_attn.q.bias", 3 * D, D);
    bl.o = simple(b + "self_attn.o", D, D);
    bl.cq = simple(b + "cross_attn.q", D, D);
    bl.ckv = lin(b + "cross_attn.k.weight", b + "cross_attn.k.bias", 2 * D, D);
    bl.co = simple(b + "cross_attn.o", D, D);
    bl.ffn0 = simple(b + "ffn.0", F, D);
    bl.ffn2 = simple(b + "ffn.2", D, F);
    bl.modulation = f(b + "modulation");
    bl.s_norm_q = f(b + "self_attn.norm_q.weight");
    bl.s_norm_k = f(b + "self_attn.norm_k.weight");
    bl.c_norm_q = f(b + "cross_attn.norm_q.weight");
    bl.c_norm_k = f(b + "cross_attn.norm_k.weight");
    bl.norm3_w = f(b + "norm3.weight");
    bl.norm3_b = f(b + "norm3.bias");
  }
  x.patch = simple("patch_embedding", D, cfg.patch_in());
  x.text0 = simple("text_embedding.0", D, cfg.text_dim);
  x.text2 = simple("text_embedding.2", D, D);
  x.time0 = simple("time_embedding.0", D, cfg.freq_dim);
  x.time2 = simple("time_embedding.2", D, D);
  x.time_proj = simple("time_projection.1", 6 * D, D);
  x.head = simple("head.head", cfg.head_out(), D);
  x.head_modulation = f("head.modulation");
}

// ---- activation plan ----

struct ActPlan {
  Grid grid;
  int ctx_len = 0, batch = 0;
  size_t total = 0;
  // byte offsets into the activation allocation
  size_t xs, xg, h, wide, q, k, v, a, ck, cv, o, ckv, f, mod, hshift, hscale, scales, partial, e, e0, ctx, ctxg,
      sin, t1, ec, e0c, cin, cin_f32, c1, latent, patches, patchesg, y, rope, hh;
};

int64_t latent_size(const ModelConfig& cfg, const Grid& g) {
  return static_cast<int64_t>(cfg.in_channels) * g.frames * cfg.patch[0] * (int64_t(cfg.patch[1]) * g.height) *
         (int64_t(cfg.patch[2]) * g.width);
}

ActPlan make_plan(const ModelConfig& cfg, const Grid& grid, int ctx_len, int batch) {
  ActPlan p;
  p.grid = grid;
  p.ctx_len = ctx_len;
  p.batch = batch;
  const int64_t B = batch, L = grid.tokens(), Lc = ctx_len, D = cfg.dim, F = cfg.ffn_dim;
  const int64_t M = B * L, Mc = B * Lc, E = cfg.num_experts();
  const bool gather = E > 1 && B > 1;  // expert groups smaller than the batch need copies
  size_t top = 0;
  auto take = [&](int64_t bytes) {
    const size_t off = top;
    top += (static_cast<size_t>(std::max<int64_t>(bytes, 0)) + 255) / 256 * 256;
    return off;
  };
  p.xs = take(M * D * 4);
  p.xg = take(gather ? M * D * 4 : 0);
  p.h = take(M * D * 2);
  p.wide = take(M * std::max(3 * D, F) * 4);  // qkv product, cross q, head LN, unfused GELU
  p.q = take(M * D * 2);
  p.k = take(M * D * 2);
  p.v = take(M * D * 2);
  p.a = take(M * D * 2);
  p.ck = take(Mc * D * 2);
  p.cv = take(Mc * D * 2);
  p.o = take(std::max(M, Mc) * D * 4);  // GEMM outputs, fp8 staging, unfused text GEMMs (≥ Lc·D)
  p.ckv = take(Mc * 2 * D * 4);
  p.f = take(M * F * 2);
  p.mod = take(B * 6 * D * 4);
  p.hshift = take(B * D * 4);
  p.hscale = take(B * D * 4);
  p.scales = take(6 * B * 4);
  p.partial = take(cuda::fp8_partial_floats(B) * 4);
  p.e = take(E * B * D * 4);
  p.e0 = take(E * B * 6 * D * 4);
  p.ctx = take(E * Mc * D * 2);
  p.ctxg = take(gather ? Mc * D * 2 : 0);
  p.sin = take(B * cfg.freq_dim * 4);
  p.t1 = take(B * D * 4);
  p.ec = take(B * D * 4);
  p.e0c = take(B * 6 * D * 4);
  p.cin = take(Lc * cfg.text_dim * 2);
  p.cin_f32 = take(Lc * cfg.text_dim * 4);
  p.c1 = take(Lc * D * 2);
  p.latent = take(B * latent_size(cfg, grid) * 4);
  p.patches = take(M * cfg.patch_in() * 2);
  p.patchesg = take(gather ? M * cfg.patch_in() * 2 : 0);
  p.y = take(M * cfg.head_out() * 4);
  p.rope = take(L * (cfg.head_dim / 2) * 8);
  p.hh = take(int64_t(cfg.num_layers) * D * 4);
  p.total = top;
  return p;
}

// ---- per-op timing ----

enum Op { kOpInputs, kOpConditioning, kOpPatch, kOpGemm, kOpNormRope, kOpAttnSelf, kOpAttnCross, kOpResidual,
          kOpGather, kOpHead, kOpCount };
const char* const kOpNames[kOpCount] = {"inputs",    "conditioning",    "patch_embedding", "gemm",
                                        "norm_rope", "attention_self",  "attention_cross", "residual_ln_reflect",
                                        "gather",    "head"};

class Profiler {
 public:
  explicit Profiler(cudaStream_t s) : stream_(s) {}
  ~Profiler() {
    for (auto& r : recs_) free_.push_back(r.a), free_.push_back(r.b);
    for (auto e : free_) cudaEventDestroy(e);
  }
  bool on = false;
  class Scope {
   public:
    Scope(Profiler& p, int op) : p_(p), op_(op) {
      if (p_.on) a_ = p_.record();
    }
    ~Scope() {
      if (p_.on && a_) {
        try {
          p_.recs_.push_back({op_, a_, p_.record()});
        } catch (...) {
        }
      }
    }

   private:
    Profiler& p_;
    int op_;
    cudaEvent_t a_ = nullptr;
  };
  // Adds the recorded intervals to the totals (after the stream has finished).
  void collect() {
    for (auto& r : recs_) {
      float ms = 0;
      // Wait for the interval (a forward that threw left it queued), and clear a failure from
      // the runtime's last-error slot: the kernel launchers' cudaGetLastError() would
      // otherwise report it at the next launch.
      if (cudaEventSynchronize(r.b) == cudaSuccess && cudaEventElapsedTime(&ms, r.a, r.b) == cudaSuccess)
        ms_[r.op] += ms;
      else
        cudaGetLastError();
      free_.push_back(r.a);
      free_.push_back(r.b);
    }
    recs_.clear();
  }
  void reset() {
    collect();
    ms_.fill(0.0);
  }
  std::vector<std::pair<std::string, double>> totals() const {
    std::vector<std::pair<std::string, double>> out;
    for (int i = 0; i < kOpCount; ++i) out.emplace_back(kOpNames[i], ms_[i]);
    return out;
  }

 private:
  struct Rec {
    int op;
    cudaEvent_t a, b;
  };
  cudaEvent_t record() {
    cudaEvent_t e;
    if (!free_.empty()) {
      e = free_.back();
      free_.pop_back();
    } else {
      DITPOC_CUDA_CHECK(cudaEventCreate(&e));
    }
    DITPOC_CUDA_CHECK(cudaEventRecord(e, stream_));
    return e;
  }
  cudaStream_t stream_;
  std::vector<Rec> recs_;
  std::vector<cudaEvent_t> free_;
  std::array<double, kOpCount> ms_{};
};

// ---- the backend ----

// Where the backend takes its weights from: generated on the device (SPEC §6), streamed in
// tensor by tensor, or (neither set) the host ModelWeights it is given.
struct WeightSource {
  const std::string* random_seed = nullptr;
  const WeightStream* stream = nullptr;
};

class CudaBackendImpl final : public CudaBackend {
 public:
  CudaBackendImpl(std::shared_ptr<const ModelWeights> w, int device, int threads, const WeightSource& source)
      : CudaBackend(std::move(w)), device_(device), threads_(threads > 0 ? threads : 1) {
    const int count = cuda_device_count();
    if (count == 0) throw std::runtime_error("cuda backend: no CUDA device is visible (driver missing or no GPU)");
    if (device < 0 || device >= count)
      throw std::invalid_argument("cuda backend: device " + std::to_string(device) + " out of range (" +
                                  std::to_string(count) + " visible)");
    DeviceGuard guard(device_);
    DITPOC_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    try {
      description_ = cuda_device_description(device_);
      prof_ = std::make_unique<Profiler>(stream_);
      for (auto& e : pace_) DITPOC_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      load_weights(source);
      lt_ = std::make_unique<LtGemm>(stream_);
    } catch (...) {
      release();
      throw;
    }
  }
  ~CudaBackendImpl() override {
    try {
      DeviceGuard guard(device_);
      release();
    } catch (...) {
    }
  }

  std::string name() const override { return "cuda"; }
  int threads() const override { return threads_; }
  int device() const override { return device_; }
  std::string device_description() const override { return description_; }
  double weights_seconds() const override { return weights_seconds_; }

  int max_batch(const Grid& grid, int ctx_len) override {
    std::lock_guard<std::mutex> lock(mu_);
    DeviceGuard guard(device_);
    size_t free_b = 0, total_b = 0;
    DITPOC_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return max_batch_for_free_memory(config(), grid, ctx_len, static_cast<int64_t>(free_b + act_.bytes()));
  }

  void reserve(const Grid& grid, int ctx_len, int batch) override {
    std::lock_guard<std::mutex> lock(mu_);
    DeviceGuard guard(device_);
    ensure_capacity(grid, ctx_len, batch);
  }

  // Under the lock: the profiler's state is the running forward's, and reset() reads its events.
  void set_profiling(bool on) override {
    std::lock_guard<std::mutex> lock(mu_);
    prof_->on = on;
  }
  std::vector<std::pair<std::string, double>> profile_ms() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return prof_->totals();
  }
  void reset_profile() override {
    std::lock_guard<std::mutex> lock(mu_);
    DeviceGuard guard(device_);
    prof_->reset();
  }

  double dense_gemm_tflops(int64_t n, int reps) override {
    std::lock_guard<std::mutex> lock(mu_);
    DeviceGuard guard(device_);
    cudaGetLastError();  // a stale non-sticky error would fail its first kernel launch (see forward)
    return lt_->measure_dense_tflops(n, reps);
  }

  void forward(const BatchRequest& req, float* out, const std::atomic<bool>* cancel) override;

 private:
  void release() {
    if (stream_) cudaStreamSynchronize(stream_);
    prof_.reset();
    lt_.reset();
    for (auto& e : pace_)
      if (e) cudaEventDestroy(e), e = nullptr;
    experts_.clear();
    act_ = DeviceBuffer();
    if (stream_) cudaStreamDestroy(stream_), stream_ = nullptr;
  }

  void load_weights(const WeightSource& source);
  void ensure_capacity(const Grid& grid, int ctx_len, int batch);
  void prepare_tables(const BatchRequest& req);
  void run_block(const DevBlock& bl, float* x, int64_t G, const float* mod, const uint16_t* ctx, const float* hh,
                 bool fp8);
  void gemm(const uint16_t* A, int64_t lda, int64_t M, const DevLinear& l, void* C, int64_t ldc,
            LtGemm::Out out = LtGemm::Out::F32, LtGemm::Epilogue ep = LtGemm::Epilogue::Bias,
            float* scratch = nullptr, int op = kOpGemm) {
    Profiler::Scope s(*prof_, op);
    lt_->run(A, lda, M, l.w, l.n, l.k, l.b, C, ldc, out, ep, scratch);
  }
  void copy(void* dst, const void* src, size_t bytes) {
    DITPOC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  template <class T>
  T* buf(size_t offset) const {
    return reinterpret_cast<T*>(act_.get() + offset);
  }
  int expert_of(uint8_t bit) const { return config().num_experts() == 1 ? 0 : bit; }

  int device_;
  int threads_;
  std::string description_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<LtGemm> lt_;
  std::unique_ptr<Profiler> prof_;
  std::array<cudaEvent_t, 2> pace_{};
  std::vector<DevExpert> experts_;
  double weights_seconds_ = 0;
  mutable std::mutex mu_;

  DeviceBuffer act_;
  ActPlan plan_{};
  // Tables cached across forwards: RoPE per grid, Householder vectors per seed list.
  Grid rope_grid_{};
  std::vector<uint32_t> hh_seeds_;
};

void CudaBackendImpl::load_weights(const WeightSource& source) {
  const ModelConfig& cfg = config();
  const WeightLayout layout = make_layout(cfg);
  const int64_t need = cuda_weight_bytes(cfg);
  size_t free_b = 0, total_b = 0;
  DITPOC_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  if (static_cast<int64_t>(free_b) < need + (int64_t(256) << 20))
    throw std::runtime_error("cuda backend: the weights of " + cfg.id + " need " + gib(need) + " on device " +
                             std::to_string(device_) + ", which has " + gib(free_b) + " free of " + gib(total_b));
  const bool host = !source.random_seed && !source.stream;
  if (host) check_weights_complete(*weights_);
  // Generation is timed on the GPU (events); uploads, synchronous copies, by the host clock.
  const auto wall0 = std::chrono::steady_clock::now();
  struct Events {  // destroyed on every exit: an allocation or upload below may throw
    cudaEvent_t t0 = nullptr, t1 = nullptr;
    ~Events() {
      if (t0) cudaEventDestroy(t0);
      if (t1) cudaEventDestroy(t1);
    }
  } ev;
  cudaEvent_t& t0 = ev.t0;
  cudaEvent_t& t1 = ev.t1;
  DITPOC_CUDA_CHECK(cudaEventCreate(&t0));
  DITPOC_CUDA_CHECK(cudaEventCreate(&t1));
  DITPOC_CUDA_CHECK(cudaEventRecord(t0, stream_));
  const auto specs = tensor_specs(cfg);
  // Every expert's arenas first: a stream hands tensors out in file order, not expert by expert.
  for (int x = 0; x < cfg.num_experts(); ++x) {
    DevExpert ex;
    ex.bf16 = DeviceBuffer(layout.bf16_elems * sizeof(uint16_t));
    ex.f32 = DeviceBuffer(layout.f32_elems * sizeof(float));
    bind_expert(cfg, layout, ex);
    experts_.push_back(std::move(ex));
  }
  auto bf16_arena = [&](int x) { return reinterpret_cast<uint16_t*>(experts_[x].bf16.get()); };
  auto f32_arena = [&](int x) { return reinterpret_cast<float*>(experts_[x].f32.get()); };

  if (source.random_seed) {
    for (int x = 0; x < cfg.num_experts(); ++x)
      for (const auto& spec : specs) {
        const Slot& slot = layout.slots.at(spec.name);
        float mu = 0.0f, sigma = 1.0f;
        init_params(cfg, spec, &mu, &sigma);
        const uint32_t seed = seed32(*source.random_seed + "_" + cfg.experts[x] + "_" + spec.name);
        if (slot.f32) cuda::fill_normal_bf16_as_f32(seed, slot.numel, mu, sigma, f32_arena(x) + slot.offset, stream_);
        else cuda::fill_normal_bf16(seed, slot.numel, mu, sigma, bf16_arena(x) + slot.offset, stream_);
      }
  } else {
    // Each (expert, tensor) exactly once, with its spec's size: a stream is checked like host weights.
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < specs.size(); ++i) index.emplace(specs[i].name, i);
    std::vector<char> uploaded(specs.size() * static_cast<size_t>(cfg.num_experts()), 0);
    std::vector<float> widened;
    auto upload = [&](int x, const std::string& key, const Tensor& t) {
      const auto it = index.find(key);
      if (x < 0 || x >= cfg.num_experts() || it == index.end())
        throw std::invalid_argument("cuda backend: weights stream sent an unknown tensor '" + key + "' (expert " +
                                    std::to_string(x) + ")");
      const Slot& slot = layout.slots.at(key);
      if (static_cast<int64_t>(t.data.size()) != slot.numel || t.numel() != slot.numel)
        throw std::invalid_argument("cuda backend: tensor " + key + " of " + cfg.experts[x] + " has " +
                                    std::to_string(t.data.size()) + " elements, expected " + std::to_string(slot.numel));
      char& done = uploaded[static_cast<size_t>(x) * specs.size() + it->second];
      if (done) throw std::invalid_argument("cuda backend: tensor " + key + " of " + cfg.experts[x] + " sent twice");
      done = 1;
      if (slot.f32) {
        widened.resize(t.data.size());
        for (size_t i = 0; i < widened.size(); ++i) widened[i] = bf16_to_f32(t.data[i]);
        DITPOC_CUDA_CHECK(cudaMemcpy(f32_arena(x) + slot.offset, widened.data(), widened.size() * sizeof(float),
                                     cudaMemcpyHostToDevice));
      } else {
        DITPOC_CUDA_CHECK(cudaMemcpy(bf16_arena(x) + slot.offset, t.data.data(), t.data.size() * sizeof(uint16_t),
                                     cudaMemcpyHostToDevice));
      }
    };
    if (source.stream) {
      (*source.stream)([&](int x, const std::string& key, Tensor& t) { upload(x, key, t); });
    } else {
      for (int x = 0; x < cfg.num_experts(); ++x)
        for (const auto& spec : specs) upload(x, spec.name, weights_->experts[x].at(spec.name));
    }
    for (size_t i = 0; i < uploaded.size(); ++i)
      if (!uploaded[i])
        throw std::invalid_argument("cuda backend: the weights stream ended without tensor " +
                                    specs[i % specs.size()].name + " of " + cfg.experts[i / specs.size()]);
  }
  DITPOC_CUDA_CHECK(cudaEventRecord(t1, stream_));
  DITPOC_CUDA_CHECK(cudaEventSynchronize(t1));
  float ms = 0;
  DITPOC_CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1));
  weights_seconds_ = source.random_seed
                         ? ms * 1e-3
                         : std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
}

void CudaBackendImpl::ensure_capacity(const Grid& grid, int ctx_len, int batch) {
  const bool same_shape = plan_.grid.frames == grid.frames && plan_.grid.height == grid.height &&
                          plan_.grid.width == grid.width && plan_.ctx_len == ctx_len;
  if (act_.get() && same_shape && plan_.batch >= batch) return;
  const ModelConfig& cfg = config();
  const ActPlan p = make_plan(cfg, grid, ctx_len, batch);
  DITPOC_CUDA_CHECK(cudaStreamSynchronize(stream_));
  const size_t held = act_.bytes();
  size_t free_b = 0, total_b = 0;
  DITPOC_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  // Keep max_batch()'s slack: activations taking the last free byte would make the first launch
  // of a lazily loaded kernel (or context growth) fail with out-of-memory halfway through a forward.
  const int64_t slack = int64_t(256) << 20;
  if (static_cast<int64_t>(p.total) + slack > static_cast<int64_t>(free_b + held)) {
    const int fits = max_batch_for_free_memory(cfg, grid, ctx_len, static_cast<int64_t>(free_b + held), slack);
    throw std::runtime_error("cuda backend: a batch of " + std::to_string(batch) + " nonces of " + cfg.id +
                             " at grid [" + std::to_string(grid.frames) + "," + std::to_string(grid.height) + "," +
                             std::to_string(grid.width) + "], ctx_len " + std::to_string(ctx_len) + " needs " +
                             gib(static_cast<int64_t>(p.total)) + " of activations; device " +
                             std::to_string(device_) + " has " + gib(static_cast<int64_t>(free_b + held)) +
                             " available (" + gib(slack) + " of it kept free; weights hold " +
                             gib(cuda_weight_bytes(cfg)) + "); the largest batch that fits is " + std::to_string(fits));
  }
  act_ = DeviceBuffer();  // free first: the new plan may need the old one's memory
  act_ = DeviceBuffer(p.total);
  plan_ = p;
  rope_grid_ = Grid{};
  hh_seeds_.clear();
}

void CudaBackendImpl::prepare_tables(const BatchRequest& req) {
  const ModelConfig& cfg = config();
  const Grid& g = req.grid;
  if (!(rope_grid_.frames == g.frames && rope_grid_.height == g.height && rope_grid_.width == g.width)) {
    const cpu::RopeTable t = cpu::make_rope_table(g.frames, g.height, g.width, cfg.head_dim);
    std::vector<float> cs(t.cos.size() * 2);
    for (size_t i = 0; i < t.cos.size(); ++i) {
      cs[2 * i] = t.cos[i];
      cs[2 * i + 1] = t.sin[i];
    }
    DITPOC_CUDA_CHECK(cudaMemcpyAsync(buf<float>(plan_.rope), cs.data(), cs.size() * sizeof(float),
                                      cudaMemcpyHostToDevice, stream_));
    DITPOC_CUDA_CHECK(cudaStreamSynchronize(stream_));
    rope_grid_ = g;
  }
  if (req.reflections && hh_seeds_ != req.householder_seeds) {
    std::vector<float> hh(static_cast<size_t>(cfg.num_layers) * cfg.dim);
    for (int i = 0; i < cfg.num_layers; ++i) {
      const std::vector<float> w = householder_vector(req.householder_seeds[i], cfg.dim);
      std::memcpy(hh.data() + static_cast<size_t>(i) * cfg.dim, w.data(), sizeof(float) * cfg.dim);
    }
    DITPOC_CUDA_CHECK(cudaMemcpyAsync(buf<float>(plan_.hh), hh.data(), hh.size() * sizeof(float),
                                      cudaMemcpyHostToDevice, stream_));
    DITPOC_CUDA_CHECK(cudaStreamSynchronize(stream_));
    hh_seeds_ = req.householder_seeds;
  }
}

void CudaBackendImpl::run_block(const DevBlock& bl, float* x, int64_t G, const float* mod, const uint16_t* ctx,
                                const float* hh, bool fp8) {
  const ModelConfig& cfg = config();
  const int64_t D = cfg.dim, F = cfg.ffn_dim, L = plan_.grid.tokens(), Lc = plan_.ctx_len;
  const int H = cfg.num_heads, hd = cfg.head_dim;
  const int64_t M = G * L, Mc = G * Lc, ms = 6 * D;
  const double eps = cfg.eps;
  cudaStream_t s = stream_;
  auto* h = buf<uint16_t>(plan_.h);
  auto* wide = buf<float>(plan_.wide);
  auto* q = buf<uint16_t>(plan_.q);
  auto* k = buf<uint16_t>(plan_.k);
  auto* v = buf<uint16_t>(plan_.v);
  auto* a = buf<uint16_t>(plan_.a);
  auto* ck = buf<uint16_t>(plan_.ck);
  auto* cv = buf<uint16_t>(plan_.cv);
  auto* o = buf<float>(plan_.o);
  auto* ckv = buf<float>(plan_.ckv);
  auto* f = buf<uint16_t>(plan_.f);
  auto* partial = buf<float>(plan_.partial);
  float* sc = buf<float>(plan_.scales);
  const int64_t B = plan_.batch;
  float *qs = sc, *ks = sc + B, *vs = sc + 2 * B, *qs2 = sc + 3 * B, *ks2 = sc + 4 * B, *vs2 = sc + 5 * B;
  const auto* rope = buf<const float2>(plan_.rope);

  // Self-attention.
  {
    Profiler::Scope p(*prof_, kOpResidual);
    cuda::layernorm_modulate_bf16(x, M, static_cast<int>(D), eps, mod, mod + D, ms, L, h, s);
  }
  gemm(h, D, M, bl.qkv, wide, 3 * D);
  {
    Profiler::Scope p(*prof_, kOpNormRope);
    if (!fp8) {
      cuda::rmsnorm_rope(wide, 3 * D, M, H, hd, eps, bl.s_norm_q, rope, L, q, nullptr, s);
      cuda::rmsnorm_rope(wide + D, 3 * D, M, H, hd, eps, bl.s_norm_k, rope, L, k, nullptr, s);
      cuda::f32_to_bf16(wide + 2 * D, 3 * D, M, D, v, s);
    } else {
      cuda::rmsnorm_rope(wide, 3 * D, M, H, hd, eps, bl.s_norm_q, rope, L, nullptr, o, s);
      cuda::quantize_fp8_groups(o, D, L, D, G, q, qs, partial, s);
      cuda::rmsnorm_rope(wide + D, 3 * D, M, H, hd, eps, bl.s_norm_k, rope, L, nullptr, o, s);
      cuda::quantize_fp8_groups(o, D, L, D, G, k, ks, partial, s);
      cuda::quantize_fp8_groups(wide + 2 * D, 3 * D, L, D, G, v, vs, partial, s);
    }
  }
  {
    Profiler::Scope p(*prof_, kOpAttnSelf);
    cuda::flash_attention(q, k, v, G, L, L, H, hd, fp8 ? qs : nullptr, fp8 ? ks : nullptr, fp8 ? vs : nullptr, a, s);
  }
  gemm(a, D, M, bl.o, o, D);
  {
    Profiler::Scope p(*prof_, kOpResidual);
    cuda::residual_layernorm_affine_bf16(x, o, mod + 2 * D, ms, L, M, static_cast<int>(D), eps, bl.norm3_w,
                                         bl.norm3_b, h, s);
  }

  // Cross-attention to each nonce's own text context (no RoPE, no gate).
  gemm(h, D, M, bl.cq, wide, D);
  gemm(ctx, D, Mc, bl.ckv, ckv, 2 * D);
  {
    Profiler::Scope p(*prof_, kOpNormRope);
    if (!fp8) {
      cuda::rmsnorm_rope(wide, D, M, H, hd, eps, bl.c_norm_q, nullptr, 0, q, nullptr, s);
      cuda::rmsnorm_rope(ckv, 2 * D, Mc, H, hd, eps, bl.c_norm_k, nullptr, 0, ck, nullptr, s);
      cuda::f32_to_bf16(ckv + D, 2 * D, Mc, D, cv, s);
    } else {
      cuda::rmsnorm_rope(wide, D, M, H, hd, eps, bl.c_norm_q, nullptr, 0, nullptr, o, s);
      cuda::quantize_fp8_groups(o, D, L, D, G, q, qs2, partial, s);
      cuda::rmsnorm_rope(ckv, 2 * D, Mc, H, hd, eps, bl.c_norm_k, nullptr, 0, nullptr, o, s);
      cuda::quantize_fp8_groups(o, D, Lc, D, G, ck, ks2, partial, s);
      cuda::quantize_fp8_groups(ckv + D, 2 * D, Lc, D, G, cv, vs2, partial, s);
    }
  }
  {
    Profiler::Scope p(*prof_, kOpAttnCross);
    cuda::flash_attention(q, ck, cv, G, L, Lc, H, hd, fp8 ? qs2 : nullptr, fp8 ? ks2 : nullptr, fp8 ? vs2 : nullptr,
                          a, s);
  }
  gemm(a, D, M, bl.co, o, D);
  {
    Profiler::Scope p(*prof_, kOpResidual);
    cuda::residual_layernorm_modulate_bf16(x, o, nullptr, 0, L, M, static_cast<int>(D), eps, mod + 3 * D,
                                           mod + 4 * D, ms, h, s);
  }

  // Feed-forward: GELU fused into the first GEMM's epilogue (bf16 out = the second GEMM's input).
  gemm(h, D, M, bl.ffn0, f, F, LtGemm::Out::Bf16, LtGemm::Epilogue::GeluBias, wide);
  gemm(f, F, M, bl.ffn2, o, D);
  {
    Profiler::Scope p(*prof_, kOpResidual);
    cuda::residual_reflect(x, o, mod + 5 * D, ms, L, M, static_cast<int>(D), hh, s);
  }
}

void CudaBackendImpl::forward(const BatchRequest& req, float* out, const std::atomic<bool>* cancel) {
  const ModelConfig& cfg = config();
  validate_request(cfg, req);
  if (req.precision == Precision::Fp32)
    throw std::invalid_argument("precision fp32 is not supported by the cuda backend (use the cpu backend)");
  const int64_t B = static_cast<int64_t>(req.nonces.size());
  if (B == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  DeviceGuard guard(device_);
  // Drop a non-sticky error an earlier call on this thread already threw for (a refused
  // cudaMalloc, say): the kernel launchers' cudaGetLastError() would report it again here.
  cudaGetLastError();
  ensure_capacity(req.grid, req.ctx_len, static_cast<int>(B));
  prepare_tables(req);

  const int64_t D = cfg.dim, L = req.grid.tokens(), Lc = req.ctx_len, E = cfg.num_experts();
  const int64_t P = cfg.patch_in(), out_w = cfg.head_out(), Bcap = plan_.batch;
  const bool fp8 = req.precision == Precision::Fp8Attention;
  const int64_t lat = latent_size(cfg, req.grid);
  cudaStream_t s = stream_;
  auto check_cancel = [&] {
    if (cancel && cancel->load(std::memory_order_relaxed)) {
      DITPOC_CUDA_CHECK(cudaStreamSynchronize(s));
      throw Cancelled();
    }
  };
  float* xs = buf<float>(plan_.xs);
  float* xg = buf<float>(plan_.xg);
  float* e_all = buf<float>(plan_.e);     // [E, Bcap, D]
  float* e0_all = buf<float>(plan_.e0);   // [E, Bcap, 6D]
  auto* ctx_all = buf<uint16_t>(plan_.ctx);  // [E, Bcap·Lc, D]
  auto e_of = [&](int64_t x, int64_t b) { return e_all + (x * Bcap + b) * D; };
  auto e0_of = [&](int64_t x, int64_t b) { return e0_all + (x * Bcap + b) * 6 * D; };
  auto ctx_of = [&](int64_t x, int64_t b) { return ctx_all + (x * Bcap + b) * Lc * D; };
  auto members_of = [&](int layer, int x) {
    std::vector<int64_t> m;
    for (int64_t b = 0; b < B; ++b)
      if (expert_of(req.nonces[b].experts[layer]) == x) m.push_back(b);
    return m;
  };

  // Steps 1–5: per expert used, time embedding, projection and text embedding of its users.
  for (int x = 0; x < E; ++x) {
    std::vector<int64_t> users;
    for (int64_t b = 0; b < B; ++b)
      for (auto r : req.nonces[b].experts)
        if (expert_of(r) == x) {
          users.push_back(b);
          break;
        }
    if (users.empty()) continue;
    const DevExpert& ex = experts_[x];
    const int64_t G = static_cast<int64_t>(users.size());
    {
      Profiler::Scope p(*prof_, kOpConditioning);
      std::vector<float> sin(static_cast<size_t>(G * cfg.freq_dim));
      for (int64_t g = 0; g < G; ++g)
        cpu::timestep_sinusoid(req.nonces[users[g]].timestep, cfg.freq_dim, sin.data() + g * cfg.freq_dim);
      float* dsin = buf<float>(plan_.sin);
      float* t1 = buf<float>(plan_.t1);
      float* ec = buf<float>(plan_.ec);
      float* e0c = buf<float>(plan_.e0c);
      DITPOC_CUDA_CHECK(cudaMemcpyAsync(dsin, sin.data(), sin.size() * sizeof(float), cudaMemcpyHostToDevice, s));
      cuda::linear_f32(dsin, cfg.freq_dim, G, ex.time0.w, ex.time0.b, D, cfg.freq_dim, t1, D, s);
      cuda::silu_inplace(t1, G * D, s);
      cuda::linear_f32(t1, D, G, ex.time2.w, ex.time2.b, D, D, ec, D, s);
      copy(t1, ec, sizeof(float) * G * D);
      cuda::silu_inplace(t1, G * D, s);
      cuda::linear_f32(t1, D, G, ex.time_proj.w, ex.time_proj.b, 6 * D, D, e0c, 6 * D, s);
      for (int64_t g = 0; g < G; ++g) {
        copy(e_of(x, users[g]), ec + g * D, sizeof(float) * D);
        copy(e0_of(x, users[g]), e0c + g * 6 * D, sizeof(float) * 6 * D);
      }
    }
    auto* cin = buf<uint16_t>(plan_.cin);
    auto* c1 = buf<uint16_t>(plan_.c1);
    for (int64_t g = 0; g < G; ++g) {
      const NonceInput& n = req.nonces[users[g]];
      {
        Profiler::Scope p(*prof_, kOpInputs);
        const int64_t nc = Lc * cfg.text_dim;
        if (n.context) {
          float* stage = buf<float>(plan_.cin_f32);
          DITPOC_CUDA_CHECK(cudaMemcpyAsync(stage, n.context, sizeof(float) * nc, cudaMemcpyHostToDevice, s));
          cuda::f32_to_bf16(stage, nc, 1, nc, cin, s);
        } else {
          cuda::fill_normal_bf16(n.context_seed, nc, 0.0f, 1.0f, cin, s);
        }
      }
      gemm(cin, cfg.text_dim, Lc, ex.text0, c1, D, LtGemm::Out::Bf16, LtGemm::Epilogue::GeluBias,
           buf<float>(plan_.o), kOpConditioning);
      gemm(c1, D, Lc, ex.text2, ctx_of(x, users[g]), D, LtGemm::Out::Bf16, LtGemm::Epilogue::Bias,
           buf<float>(plan_.o), kOpConditioning);
    }
    check_cancel();
  }

  // Step 6: seeded latents, patches, patch embedding with each nonce's first-layer expert.
  auto* patches = buf<uint16_t>(plan_.patches);
  auto* patchesg = buf<uint16_t>(plan_.patchesg);
  for (int64_t b = 0; b < B; ++b) {
    Profiler::Scope p(*prof_, kOpInputs);
    const NonceInput& n = req.nonces[b];
    float* z = buf<float>(plan_.latent) + b * lat;
    if (n.latent) DITPOC_CUDA_CHECK(cudaMemcpyAsync(z, n.latent, sizeof(float) * lat, cudaMemcpyHostToDevice, s));
    else if (n.latent_strong) cuda::fill_normal8(n.latent_words.data(), lat, z, s);
    else cuda::fill_normal(n.latent_seed, lat, z, s);
    cuda::patchify_bf16(z, cfg.in_channels, req.grid.frames, req.grid.height, req.grid.width, cfg.patch[0],
                        cfg.patch[1], cfg.patch[2], patches + b * L * P, s);
  }
  for (int x = 0; x < E; ++x) {
    const auto members = members_of(0, x);
    if (members.empty()) continue;
    const int64_t G = static_cast<int64_t>(members.size());
    if (G == B) {
      gemm(patches, P, B * L, experts_[x].patch, xs, D, LtGemm::Out::F32, LtGemm::Epilogue::Bias, nullptr, kOpPatch);
      continue;
    }
    {
      Profiler::Scope p(*prof_, kOpGather);
      for (int64_t g = 0; g < G; ++g)
        copy(patchesg + g * L * P, patches + members[g] * L * P, sizeof(uint16_t) * L * P);
    }
    gemm(patchesg, P, G * L, experts_[x].patch, xg, D, LtGemm::Out::F32, LtGemm::Epilogue::Bias, nullptr, kOpPatch);
    Profiler::Scope p(*prof_, kOpGather);
    for (int64_t g = 0; g < G; ++g) copy(xs + members[g] * L * D, xg + g * L * D, sizeof(float) * L * D);
  }

  // Step 7: blocks with per-layer expert groups; the reflection is fused into the last residual.
  const float* hh_all = buf<float>(plan_.hh);
  float* mod = buf<float>(plan_.mod);
  auto* ctxg = buf<uint16_t>(plan_.ctxg);
  for (int i = 0; i < cfg.num_layers; ++i) {
    // Keep at most one layer queued ahead of the GPU so a cancel takes effect within a layer.
    if (i >= 2) DITPOC_CUDA_CHECK(cudaEventSynchronize(pace_[i % 2]));
    check_cancel();
    // No reflections (the denoiser forward): the last residual kernel gets no vector.
    const float* hh = req.reflections ? hh_all + static_cast<int64_t>(i) * D : nullptr;
    if (!req.skip_layers.empty() && req.skip_layers[i]) {
      Profiler::Scope p(*prof_, kOpResidual);
      if (hh) cuda::residual_reflect(xs, nullptr, nullptr, 0, L, B * L, static_cast<int>(D), hh, s);
    } else {
      for (int x = 0; x < E; ++x) {
        const auto members = members_of(i, x);
        if (members.empty()) continue;
        const int64_t G = static_cast<int64_t>(members.size());
        const DevBlock& bl = experts_[x].blocks[i];
        const bool all = G == B;
        {
          Profiler::Scope p(*prof_, kOpGather);
          if (all) {
            cuda::add_broadcast(bl.modulation, e0_of(x, 0), 6 * D, B, 6 * D, mod, s);
          } else {
            for (int64_t g = 0; g < G; ++g) {
              cuda::add_broadcast(bl.modulation, e0_of(x, members[g]), 0, 1, 6 * D, mod + g * 6 * D, s);
              copy(ctxg + g * Lc * D, ctx_of(x, members[g]), sizeof(uint16_t) * Lc * D);
              copy(xg + g * L * D, xs + members[g] * L * D, sizeof(float) * L * D);
            }
          }
        }
        run_block(bl, all ? xs : xg, G, mod, all ? ctx_of(x, 0) : ctxg, hh, fp8);
        if (!all) {
          Profiler::Scope p(*prof_, kOpGather);
          for (int64_t g = 0; g < G; ++g) copy(xs + members[g] * L * D, xg + g * L * D, sizeof(float) * L * D);
        }
      }
    }
    DITPOC_CUDA_CHECK(cudaEventRecord(pace_[i % 2], s));
  }

  // Step 8: the head of the last layer's expert, all in fp32.
  const int last = cfg.num_layers - 1;
  float* hshift = buf<float>(plan_.hshift);
  float* hscale = buf<float>(plan_.hscale);
  float* hin = buf<float>(plan_.wide);
  float* y = buf<float>(plan_.y);
  for (int x = 0; x < E; ++x) {
    const auto members = members_of(last, x);
    if (members.empty()) continue;
    Profiler::Scope p(*prof_, kOpHead);
    const int64_t G = static_cast<int64_t>(members.size());
    const DevExpert& ex = experts_[x];
    for (int64_t g = 0; g < G; ++g) {
      cuda::add_broadcast(ex.head_modulation, e_of(x, members[g]), 0, 1, D, hshift + g * D, s);
      cuda::add_broadcast(ex.head_modulation + D, e_of(x, members[g]), 0, 1, D, hscale + g * D, s);
    }
    const float* rows = xs;
    if (G != B) {
      for (int64_t g = 0; g < G; ++g) copy(xg + g * L * D, xs + members[g] * L * D, sizeof(float) * L * D);
      rows = xg;
    }
    cuda::layernorm_modulate_f32(rows, G * L, static_cast<int>(D), cfg.eps, hshift, hscale, D, L, hin, s);
    cuda::linear_f32(hin, D, G * L, ex.head.w, ex.head.b, out_w, D, y, out_w, s);
    for (int64_t g = 0; g < G; ++g)
      DITPOC_CUDA_CHECK(cudaMemcpyAsync(out + members[g] * L * out_w, y + g * L * out_w, sizeof(float) * L * out_w,
                                        cudaMemcpyDeviceToHost, s));
  }
  DITPOC_CUDA_CHECK(cudaStreamSynchronize(s));
  prof_->collect();
}

}  // namespace

int cuda_device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) error: no driver, no device
    return 0;
  }
  return n;
}

std::string cuda_device_description(int device) {
  cudaDeviceProp prop{};
  DITPOC_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  char buf[320];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %.1f GiB, %d SMs)", prop.name, prop.major, prop.minor,
                prop.totalGlobalMem / kGiB, prop.multiProcessorCount);
  return buf;
}

int64_t cuda_weight_bytes(const ModelConfig& cfg) {
  const WeightLayout l = make_layout(cfg);
  return static_cast<int64_t>(cfg.num_experts()) *
         static_cast<int64_t>(l.bf16_elems * sizeof(uint16_t) + l.f32_elems * sizeof(float));
}

int64_t cuda_activation_bytes(const ModelConfig& cfg, const Grid& grid, int ctx_len, int batch) {
  return static_cast<int64_t>(make_plan(cfg, grid, ctx_len, batch).total);
}

int max_batch_for_free_memory(const ModelConfig& cfg, const Grid& grid, int ctx_len, int64_t free_bytes,
                              int64_t reserve_bytes) {
  const int64_t budget = free_bytes - reserve_bytes;
  auto fits = [&](int b) { return cuda_activation_bytes(cfg, grid, ctx_len, b) <= budget; };
  // Launch limits of the kernels a forward runs: attention and fp8 quantisation take at most
  // 65535 nonces (a grid dimension), linear_f32 (the head) at most 4194240 rows of B·L tokens.
  const int64_t tokens = grid.tokens();
  const int cap = static_cast<int>(std::min<int64_t>(65535, tokens > 0 ? 4194240 / tokens : 0));
  if (cap < 1 || !fits(1)) return 0;
  int lo = 1, hi = 2;
  while (hi <= cap && fits(hi)) lo = hi, hi *= 2;
  hi = std::min(hi, cap + 1);  // lo fits; hi does not, or is past the cap
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

std::unique_ptr<CudaBackend> make_cuda_backend(std::shared_ptr<const ModelWeights> weights, int device, int threads) {
  if (!weights || !weights->config) throw std::invalid_argument("make_cuda_backend: no weights");
  return std::make_unique<CudaBackendImpl>(std::move(weights), device, threads, WeightSource{});
}

std::unique_ptr<CudaBackend> make_cuda_backend_random(const ModelConfig& cfg, const std::string& weights_seed,
                                                      int device, int threads) {
  auto shell = std::make_shared<ModelWeights>();
  shell->config = &cfg;
  shell->identity = "random:" + weights_seed;
  WeightSource source;
  source.random_seed = &weights_seed;
  return std::make_unique<CudaBackendImpl>(std::move(shell), device, threads, source);
}

std::unique_ptr<CudaBackend> make_cuda_backend_streamed(const ModelConfig& cfg, const std::string& identity,
                                                        const WeightStream& stream, int device, int threads) {
  if (!stream) throw std::invalid_argument("make_cuda_backend_streamed: no weights stream");
  auto shell = std::make_shared<ModelWeights>();
  shell->config = &cfg;
  shell->identity = identity;
  WeightSource source;
  source.stream = &stream;
  return std::make_unique<CudaBackendImpl>(std::move(shell), device, threads, source);
}

}  // namespace ditpoc
