// Node-API binding: a thin layer over the engine. Compute runs on one engine thread per model
// (engine_queue.h) and loading on libuv workers, behind Promises: the event loop never waits on
// a forward. Typed arrays cross without copies, and every C++ exception becomes a JS Error with
// the engine's message.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>

#include "artifact.h"
#include "backend.h"
#include "backend_factory.h"
#include "cpu/cpu_isa.h"
#include "bf16.h"
#include "engine_queue.h"
#include "host_memory.h"
#include "model_config.h"
#include "nonce_artifacts.h"
#include "nonce_inputs.h"
#include "seeding.h"
#include "weight_transforms.h"
#include "weights.h"

using namespace ditpoc;
using ditpoc::binding::EngineQueue;
using ditpoc::binding::PromiseJob;

namespace {

// ---- helpers -------------------------------------------------------------------------------

uint32_t to_u32(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d)))
    throw Napi::RangeError::New(v.Env(), std::string(what) + " must be an integer in [0, 2^32)");
  return static_cast<uint32_t>(d);
}

int64_t to_count(const Napi::Value& v, const char* what, int64_t max) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= static_cast<double>(max)) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw Napi::RangeError::New(v.Env(), std::string(what) + " must be an integer in [0, " +
                                             std::to_string(max) + "]");
  return static_cast<int64_t>(d);
}

int32_t to_i32(const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int32_t>(d)))
    throw Napi::RangeError::New(v.Env(), what + " must be an int32");
  return static_cast<int32_t>(d);
}

std::string to_string_arg(const Napi::Value& v, const std::string& what) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), what + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// k fp16 values → 2k bytes, little-endian (the artifact's wire form, SPEC §5 step 9).
void f16_to_le_bytes(const uint16_t* v, size_t n, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = static_cast<uint8_t>(v[i] & 0xff);
    out[2 * i + 1] = static_cast<uint8_t>(v[i] >> 8);
  }
}

Napi::Float32Array f32_array(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

Napi::Value get(const Napi::Object& o, const char* key) { return o.Get(key); }

// ---- model registry ------------------------------------------------------------------------

Napi::Object config_to_js(Napi::Env env, const ModelConfig& c) {
  auto o = Napi::Object::New(env);
  o.Set("id", c.id);
  o.Set("dim", c.dim);
  o.Set("ffnDim", c.ffn_dim);
  o.Set("numHeads", c.num_heads);
  o.Set("numLayers", c.num_layers);
  o.Set("inChannels", c.in_channels);
  o.Set("outChannels", c.out_channels);
  auto ex = Napi::Array::New(env, c.experts.size());
  for (size_t i = 0; i < c.experts.size(); ++i) ex.Set(i, c.experts[i]);
  o.Set("experts", ex);
  auto vae = Napi::Array::New(env, 3), patch = Napi::Array::New(env, 3);
  for (int i = 0; i < 3; ++i) {
    vae.Set(i, c.vae_stride[i]);
    patch.Set(i, c.patch[i]);
  }
  o.Set("vaeStride", vae);
  o.Set("patch", patch);
  o.Set("headDim", c.head_dim);
  o.Set("textDim", c.text_dim);
  o.Set("freqDim", c.freq_dim);
  o.Set("eps", c.eps);
  o.Set("paramsPerExpert", static_cast<double>(params_per_expert(c)));
  return o;
}

Napi::Value Models(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto& all = all_models();
  auto arr = Napi::Array::New(env, all.size());
  for (size_t i = 0; i < all.size(); ++i) arr.Set(i, config_to_js(env, all[i]));
  return arr;
}

Napi::Value TensorSpecs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto& cfg = find_model(info[0].As<Napi::String>().Utf8Value());
  const auto specs = tensor_specs(cfg);
  auto arr = Napi::Array::New(env, specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", specs[i].name);
    o.Set("diffusersName", diffusers_key(specs[i].name));
    auto shape = Napi::Array::New(env, specs[i].shape.size());
    for (size_t j = 0; j < specs[i].shape.size(); ++j) shape.Set(j, static_cast<double>(specs[i].shape[j]));
    o.Set("shape", shape);
    arr.Set(i, o);
  }
  return arr;
}

// ---- seeding (exposed so tests can hold the native fills against the TS reference) ---------

constexpr int64_t kMaxSeedFill = int64_t(1) << 28;

Napi::Value Seed32(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "seed32: string expected");
  return Napi::Number::New(info.Env(), seed32(info[0].As<Napi::String>().Utf8Value()));
}

Napi::Value Murmur(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), mm(to_u32(info[0], "key"), to_u32(info[1], "seed")));
}

Napi::Value Uniform(const Napi::CallbackInfo& info) {
  const uint32_t seed = to_u32(info[0], "seed");
  const int64_t n = to_count(info[1], "n", kMaxSeedFill);
  auto a = Napi::Float32Array::New(info.Env(), n);
  uniform(seed, n, a.Data());
  return a;
}

Napi::Value Normal(const Napi::CallbackInfo& info) {
  const uint32_t seed = to_u32(info[0], "seed");
  const int64_t n = to_count(info[1], "n", kMaxSeedFill);
  auto a = Napi::Float32Array::New(info.Env(), n);
  normal(seed, n, a.Data());
  return a;
}

Napi::Value NormalStrong(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "normalStrong: string expected");
  const int64_t n = to_count(info[1], "n", kMaxSeedFill);
  auto a = Napi::Float32Array::New(info.Env(), n);
  normal8(sha256_words(info[0].As<Napi::String>().Utf8Value()), n, a.Data());
  return a;
}

Napi::Value HouseholderVector(const Napi::CallbackInfo& info) {
  const uint32_t seed = to_u32(info[0], "seed");
  const int64_t n = to_count(info[1], "n", kMaxSeedFill);
  if (n == 0) throw Napi::RangeError::New(info.Env(), "householderVector: n must be positive");
  return f32_array(info.Env(), householder_vector(seed, n));
}

// nonceInputs({blockHash, publicKey, numLayers, strongerRng?}, nonce) → {latentSeed, latentWords,
// contextSeed, timestep, experts}: the derivation forwardArtifacts runs (SPEC §5 steps 1–4).
Napi::Value NonceInputs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "nonceInputs: round object expected");
  auto o = info[0].As<Napi::Object>();
  RoundSeeds round;
  round.block_hash = to_string_arg(get(o, "blockHash"), "nonceInputs: blockHash");
  round.public_key = to_string_arg(get(o, "publicKey"), "nonceInputs: publicKey");
  round.num_layers = static_cast<int>(to_count(get(o, "numLayers"), "nonceInputs: numLayers", 1 << 16));
  round.stronger_rng = get(o, "strongerRng").ToBoolean();
  NonceInput in;
  try {
    in = derive_nonce_input(round, to_i32(info[1], "nonceInputs: nonce"));
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(env, std::string("nonceInputs: ") + e.what());
  }
  auto r = Napi::Object::New(env);
  r.Set("latentSeed", in.latent_seed);
  if (in.latent_strong) {
    auto words = Napi::Uint32Array::New(env, 8);
    std::copy(in.latent_words.begin(), in.latent_words.end(), words.Data());
    r.Set("latentWords", words);
  } else {
    r.Set("latentWords", env.Null());
  }
  r.Set("contextSeed", in.context_seed);
  r.Set("timestep", in.timestep);
  auto experts = Napi::Uint8Array::New(env, in.experts.size());
  std::copy(in.experts.begin(), in.experts.end(), experts.Data());
  r.Set("experts", experts);
  return r;
}

// artifact(y: Float32Array, blockHash, publicKey, nonce, k) → Uint8Array (2k bytes, fp16 LE) or
// null for a non-finite y: the reduction forwardArtifacts applies to each output.
Napi::Value Artifact(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "artifact: y must be a Float32Array");
  auto y = info[0].As<Napi::Float32Array>();
  const std::string block_hash = to_string_arg(info[1], "artifact: blockHash");
  const std::string public_key = to_string_arg(info[2], "artifact: publicKey");
  const int32_t nonce = to_i32(info[3], "artifact: nonce");
  const int k = static_cast<int>(to_count(info[4], "artifact: k", 1 << 20));
  std::vector<uint16_t> a(static_cast<size_t>(k));
  bool finite = false;
  try {
    finite = compute_artifact(y.Data(), static_cast<int64_t>(y.ElementLength()), block_hash, public_key, nonce, k, a.data());
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(env, std::string("artifact: ") + e.what());
  }
  if (!finite) return env.Null();
  auto out = Napi::Uint8Array::New(env, 2 * a.size());
  f16_to_le_bytes(a.data(), a.size(), out.Data());
  return out;
}

// ---- Model ---------------------------------------------------------------------------------

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod("forward", &Model::Forward),
                        InstanceMethod("forwardArtifacts", &Model::ForwardArtifacts),
                        InstanceMethod("denoise", &Model::Denoise),
                        InstanceMethod("tensor", &Model::GetTensor),
                        InstanceMethod("cancel", &Model::Cancel),
                        InstanceMethod("dispose", &Model::Dispose),
                        InstanceAccessor("config", &Model::Config, nullptr),
                        InstanceAccessor("identity", &Model::Identity, nullptr),
                        InstanceAccessor("backend", &Model::BackendName, nullptr),
                        InstanceAccessor("threads", &Model::Threads, nullptr),
                        InstanceAccessor("disposed", &Model::Disposed, nullptr)});
  }

  explicit Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "Model is created by loadModel()");
    auto* holder = info[0].As<Napi::External<std::shared_ptr<Backend>>>().Data();
    backend_ = *holder;
    queue_ = std::make_unique<EngineQueue>(info.Env());
  }

  std::shared_ptr<Backend> backend(Napi::Env env) const {
    if (!backend_) throw Napi::Error::New(env, "model is disposed");
    return backend_;
  }
  // A fresh cancel flag per forward, so cancel() stops the forwards in flight and never a
  // later one.
  std::shared_ptr<std::atomic<bool>> new_cancel_flag() {
    auto flag = std::make_shared<std::atomic<bool>>(false);
    inflight_.erase(std::remove_if(inflight_.begin(), inflight_.end(),
                                   [](const auto& w) { return w.expired(); }),
                    inflight_.end());
    inflight_.push_back(flag);
    return flag;
  }
  void cancel_all() {
    for (auto& w : inflight_)
      if (auto f = w.lock()) f->store(true);
  }

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value ForwardArtifacts(const Napi::CallbackInfo& info);
  Napi::Value Denoise(const Napi::CallbackInfo& info);
  Napi::Value GetTensor(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    auto be = backend(env);
    const int64_t x = to_count(info[0], "expert", be->config().num_experts() - 1);
    if (!info[1].IsString()) throw Napi::TypeError::New(env, "tensor name must be a string");
    const Tensor t = be->tensor(static_cast<int>(x), info[1].As<Napi::String>().Utf8Value());
    auto a = Napi::Float32Array::New(env, t.data.size());
    for (size_t i = 0; i < t.data.size(); ++i) a[i] = bf16_to_f32(t.data[i]);
    return a;
  }
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    cancel_all();
    return info.Env().Undefined();
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    // Queued and running jobs hold their own reference; memory goes when the last one finishes.
    cancel_all();
    backend_.reset();
    queue_->close();
    return info.Env().Undefined();
  }
  Napi::Value Config(const Napi::CallbackInfo& info) { return config_to_js(info.Env(), backend(info.Env())->config()); }
  Napi::Value Identity(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), backend(info.Env())->identity()); }
  Napi::Value BackendName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), backend(info.Env())->name()); }
  Napi::Value Threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), backend(info.Env())->threads()); }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !backend_); }

  std::shared_ptr<Backend> backend_;
  std::unique_ptr<EngineQueue> queue_;  // the engine thread running this model's jobs in order
  std::vector<std::weak_ptr<std::atomic<bool>>> inflight_;
};

Napi::FunctionReference* g_model_ctor = nullptr;

// Loads or generates weights off the main thread; progress goes to an optional JS callback.
class LoadWorker : public Napi::AsyncProgressQueueWorker<std::pair<int64_t, int64_t>> {
 public:
  LoadWorker(Napi::Env env, std::string model, std::string weights, std::string seed, int threads,
             WeightTransform transform, std::string backend, int device, Napi::Function progress)
      : Napi::AsyncProgressQueueWorker<std::pair<int64_t, int64_t>>(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        model_(std::move(model)), weights_(std::move(weights)), seed_(std::move(seed)),
        threads_(threads), transform_(std::move(transform)), backend_kind_(std::move(backend)), device_(device) {
    if (!progress.IsEmpty()) progress_ = Napi::Persistent(progress);
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute(const ExecutionProgress& p) override {
    try {
      const ModelConfig& cfg = find_model(model_);
      auto report = [&](int64_t done, int64_t total) {
        const std::pair<int64_t, int64_t> v{done, total};
        p.Send(&v, 1);
      };
      // For CUDA the weights never sit whole in host memory (57 GB for the A14B models):
      // random ones are generated on the GPU, checkpoints streamed to it shard by shard.
      backend_ = std::shared_ptr<Backend>(
          weights_ == "random"
              ? make_backend_random(backend_kind_, device_, cfg, seed_, threads_, transform_, report)
              : make_backend_checkpoint(backend_kind_, device_, cfg, weights_, threads_, transform_, report));
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnProgress(const std::pair<int64_t, int64_t>* data, size_t count) override {
    if (progress_.IsEmpty() || count == 0) return;
    const auto& last = data[count - 1];
    progress_.Call({Napi::Number::New(Env(), static_cast<double>(last.first)),
                    Napi::Number::New(Env(), static_cast<double>(last.second))});
  }
  void OnOK() override {
    auto env = Env();
    auto ext = Napi::External<std::shared_ptr<Backend>>::New(env, &backend_);
    deferred_.Resolve(g_model_ctor->New({ext}));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference progress_;
  std::string model_, weights_, seed_;
  int threads_;
  WeightTransform transform_;
  std::string backend_kind_;
  int device_;
  std::shared_ptr<Backend> backend_;
};

// loadModel({model, weights: "random" | dir, weightsSeed?, threads?, weightTransform?,
//            backend?: "auto" | "cpu" | "cuda", device?}, onProgress?) → Promise<Model>
Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "loadModel: options object expected");
  auto o = info[0].As<Napi::Object>();
  auto str = [&](const char* k, bool required) -> std::string {
    auto v = get(o, k);
    if (v.IsUndefined() && !required) return "";
    if (!v.IsString()) throw Napi::TypeError::New(env, std::string("loadModel: ") + k + " must be a string");
    return v.As<Napi::String>().Utf8Value();
  };
  std::string model = str("model", true), weights = str("weights", true), seed = str("weightsSeed", false);
  find_model(model);  // unknown ids fail here, synchronously, with the list of known ids
  if (weights == "random" && seed.empty())
    throw Napi::TypeError::New(env, "loadModel: random weights need weightsSeed");
  int threads = 0;
  if (!get(o, "threads").IsUndefined()) threads = static_cast<int>(to_count(get(o, "threads"), "threads", 1024));
  const std::string transform_text = str("weightTransform", false);
  const WeightTransform transform = parse_weight_transform(transform_text.empty() ? "none" : transform_text);
  Napi::Function progress;
  if (info.Length() > 1 && info[1].IsFunction()) progress = info[1].As<Napi::Function>();
  std::string backend = str("backend", false);
  if (backend.empty()) backend = "auto";
  resolve_backend(backend);  // bad names and "cuda" in a build without it fail here, synchronously
  int device = 0;
  if (!get(o, "device").IsUndefined()) device = static_cast<int>(to_count(get(o, "device"), "device", 1023));
  auto* w = new LoadWorker(env, model, weights, seed, threads, transform, backend, device, progress);
  auto p = w->promise();
  w->Queue();
  return p;
}

// A job on the model's backend, stopped by its own cancel flag (Model::cancel_all).
class BackendJob : public PromiseJob {
 public:
  BackendJob(Napi::Env env, std::shared_ptr<Backend> be, std::shared_ptr<std::atomic<bool>> cancel)
      : PromiseJob(env), backend_(std::move(be)), cancel_(std::move(cancel)) {}

 protected:
  std::shared_ptr<Backend> backend_;  // a disposed model's backend lives on until its jobs end
  std::shared_ptr<std::atomic<bool>> cancel_;
};

// One batch forward (or one denoise), run on the model's engine thread. Keeps the input typed
// arrays and the output buffer alive (references) while native code reads and writes them.
class ForwardJob : public BackendJob {
 public:
  using BackendJob::BackendJob;
  BatchRequest req;
  bool is_denoise = false;  // run denoise_req instead of req
  DenoiseRequest denoise_req;
  float* out = nullptr;
  std::vector<Napi::ObjectReference> keep;
  Napi::ObjectReference output;

 protected:
  void Run() override {
    if (is_denoise) backend_->denoise(denoise_req, out, cancel_.get());
    else backend_->forward(req, out, cancel_.get());
  }
  Napi::Value Result(Napi::Env) override { return output.Value(); }
};

const float* borrow_f32(ForwardJob* w, const Napi::Value& v, size_t expected, const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), what + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != expected)
    throw Napi::RangeError::New(v.Env(), what + " has " + std::to_string(a.ElementLength()) +
                                             " elements, expected " + std::to_string(expected));
  w->keep.push_back(Napi::Persistent(v.As<Napi::Object>()));
  return a.Data();
}

// Fills a new job's request with fill() and queues it on the model's engine thread, or drops it
// and throws a JS error (engine errors such as std::invalid_argument become an Error with their
// message).
template <typename Job, typename Fill>
Napi::Value queue_filled(Napi::Env env, EngineQueue& queue, std::unique_ptr<Job> job, Fill fill) {
  try {
    fill(job.get());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  auto p = job->promise();
  queue.submit(env, std::move(job));
  return p;
}

// The worker writes into info[1] when the caller gives a Float32Array of out_size elements, else
// into a new one (checked against host memory first); the worker keeps it alive until it settles.
void attach_output(ForwardJob* w, const Napi::CallbackInfo& info, size_t out_size, const std::string& what) {
  auto env = info.Env();
  Napi::Float32Array out;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Napi::TypeError::New(env, what + ": out must be a Float32Array");
    out = info[1].As<Napi::Float32Array>();
    if (out.ElementLength() != out_size)
      throw Napi::RangeError::New(env, what + ": out has " + std::to_string(out.ElementLength()) +
                                           " elements, expected " + std::to_string(out_size));
  } else {
    require_host_memory(static_cast<int64_t>(out_size * sizeof(float)), what + ": the output");
    out = Napi::Float32Array::New(env, out_size);
  }
  w->out = out.Data();
  w->output = Napi::Persistent(out.As<Napi::Object>());
}

// The fields every nonce-forward request shares: grid [F, H, W], ctxLen and precision?.
void read_forward_shape(Napi::Env env, const Napi::Object& o, const std::string& what, Grid& grid, int& ctx_len,
                        Precision& precision) {
  auto g = get(o, "grid");
  if (!g.IsArray() || g.As<Napi::Array>().Length() != 3) throw Napi::TypeError::New(env, what + ": grid must be [F, H, W]");
  auto ga = g.As<Napi::Array>();
  grid.frames = static_cast<int>(to_count(ga.Get(0u), "grid[0]", 1024));
  grid.height = static_cast<int>(to_count(ga.Get(1u), "grid[1]", 1024));
  grid.width = static_cast<int>(to_count(ga.Get(2u), "grid[2]", 1024));
  ctx_len = static_cast<int>(to_count(get(o, "ctxLen"), "ctxLen", 4096));
  auto prec = get(o, "precision");
  if (!prec.IsUndefined()) precision = parse_precision(to_string_arg(prec, what + ": precision"));
}

// forward({grid:[F,H,W], ctxLen, precision?: "bf16"|"fp32", householderSeeds: Uint32Array,
//          nonces: [{latentSeed, latentWords?: Uint32Array(8), contextSeed, latent?, context?,
//                    timestep, experts: Uint8Array}]}, out?: Float32Array) → Promise<Float32Array>
Napi::Value Model::Forward(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto be = backend(env);
  const ModelConfig& cfg = be->config();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "forward: request object expected");
  auto o = info[0].As<Napi::Object>();
  return queue_filled(env, *queue_, std::make_unique<ForwardJob>(env, be, new_cancel_flag()), [&](ForwardJob* w) {
    BatchRequest& req = w->req;
    read_forward_shape(env, o, "forward", req.grid, req.ctx_len, req.precision);
    auto hs = get(o, "householderSeeds");
    if (!hs.IsTypedArray() || hs.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
      throw Napi::TypeError::New(env, "forward: householderSeeds must be a Uint32Array");
    auto hsa = hs.As<Napi::Uint32Array>();
    req.householder_seeds.assign(hsa.Data(), hsa.Data() + hsa.ElementLength());
    auto nonces = get(o, "nonces");
    if (!nonces.IsArray()) throw Napi::TypeError::New(env, "forward: nonces must be an array");
    auto na = nonces.As<Napi::Array>();
    const size_t latent_size = static_cast<size_t>(cfg.in_channels) * req.grid.frames *
                               cfg.patch[1] * req.grid.height * cfg.patch[2] * req.grid.width;
    const size_t context_size = static_cast<size_t>(req.ctx_len) * cfg.text_dim;
    for (uint32_t i = 0; i < na.Length(); ++i) {
      if (!na.Get(i).IsObject()) throw Napi::TypeError::New(env, "forward: nonces[] must be objects");
      auto n = na.Get(i).As<Napi::Object>();
      const std::string where = "nonces[" + std::to_string(i) + "].";
      NonceInput in;
      if (!get(n, "latent").IsUndefined()) in.latent = borrow_f32(w, get(n, "latent"), latent_size, where + "latent");
      else in.latent_seed = to_u32(get(n, "latentSeed"), (where + "latentSeed").c_str());
      auto words = get(n, "latentWords");
      if (!words.IsUndefined() && !words.IsNull()) {
        if (!words.IsTypedArray() || words.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
            words.As<Napi::Uint32Array>().ElementLength() != 8)
          throw Napi::TypeError::New(env, where + "latentWords must be a Uint32Array of 8 words");
        auto wa = words.As<Napi::Uint32Array>();
        in.latent_strong = true;
        std::copy(wa.Data(), wa.Data() + 8, in.latent_words.begin());
      }
      if (!get(n, "context").IsUndefined()) in.context = borrow_f32(w, get(n, "context"), context_size, where + "context");
      else in.context_seed = to_u32(get(n, "contextSeed"), (where + "contextSeed").c_str());
      in.timestep = static_cast<int>(to_count(get(n, "timestep"), (where + "timestep").c_str(), 999));
      auto ex = get(n, "experts");
      if (!ex.IsTypedArray() || ex.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        throw Napi::TypeError::New(env, where + "experts must be a Uint8Array");
      auto ea = ex.As<Napi::Uint8Array>();
      in.experts.assign(ea.Data(), ea.Data() + ea.ElementLength());
      req.nonces.push_back(std::move(in));
    }
    auto skip = get(o, "skipLayers");
    if (!skip.IsUndefined()) {
      if (!skip.IsTypedArray() || skip.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        throw Napi::TypeError::New(env, "forward: skipLayers must be a Uint8Array");
      auto sa = skip.As<Napi::Uint8Array>();
      req.skip_layers.assign(sa.Data(), sa.Data() + sa.ElementLength());
    }
    validate_request(cfg, req);
    attach_output(w, info, req.nonces.size() * static_cast<size_t>(be->output_size(req.grid)), "forward");
  });
}

// nonce_artifacts on the model's engine thread, writing into JS buffers made before it is queued.
class ArtifactsJob : public BackendJob {
 public:
  using BackendJob::BackendJob;
  NonceArtifactsRequest req;
  uint8_t* vectors = nullptr;  // [nonces, 2k] bytes
  uint8_t* finite = nullptr;   // [nonces]
  Napi::ObjectReference result;

 protected:
  void Run() override {
    std::vector<uint16_t> a(req.nonces.size() * static_cast<size_t>(req.k));
    nonce_artifacts(*backend_, req, a.data(), finite, cancel_.get());
    f16_to_le_bytes(a.data(), a.size(), vectors);
  }
  Napi::Value Result(Napi::Env) override { return result.Value(); }
};

// forwardArtifacts({grid, ctxLen, precision?, blockHash, publicKey, strongerRng?, kDim, nonces:
// number[]}) → Promise<{vectors: Uint8Array (nonces·2k, fp16 LE), finite: Uint8Array (1 = has an
// artifact)}>: SPEC §5 steps 1–9 for bare nonces, derived and reduced in the engine.
Napi::Value Model::ForwardArtifacts(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto be = backend(env);
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "forwardArtifacts: request object expected");
  auto o = info[0].As<Napi::Object>();
  return queue_filled(env, *queue_, std::make_unique<ArtifactsJob>(env, be, new_cancel_flag()), [&](ArtifactsJob* w) {
    NonceArtifactsRequest& req = w->req;
    read_forward_shape(env, o, "forwardArtifacts", req.grid, req.ctx_len, req.precision);
    req.block_hash = to_string_arg(get(o, "blockHash"), "forwardArtifacts: blockHash");
    req.public_key = to_string_arg(get(o, "publicKey"), "forwardArtifacts: publicKey");
    req.stronger_rng = get(o, "strongerRng").ToBoolean();
    req.k = static_cast<int>(to_count(get(o, "kDim"), "forwardArtifacts: kDim", 1 << 20));
    auto nonces = get(o, "nonces");
    if (!nonces.IsArray()) throw Napi::TypeError::New(env, "forwardArtifacts: nonces must be an array of int32");
    auto na = nonces.As<Napi::Array>();
    for (uint32_t i = 0; i < na.Length(); ++i)
      req.nonces.push_back(to_i32(na.Get(i), "forwardArtifacts: nonces[" + std::to_string(i) + "]"));
    nonce_artifacts_forward(be->config(), req);  // every refusal here, before anything runs
    require_nonce_artifacts_memory(be->config(), req);
    auto vectors = Napi::Uint8Array::New(env, req.nonces.size() * 2 * static_cast<size_t>(req.k));
    auto finite = Napi::Uint8Array::New(env, req.nonces.size());
    w->vectors = vectors.Data();
    w->finite = finite.Data();
    auto result = Napi::Object::New(env);
    result.Set("vectors", vectors);
    result.Set("finite", finite);
    w->result = Napi::Persistent(result);
  });
}

// denoise({latentShape: [C_in, F, H, W], latent: Float32Array, timestep, expert, ctxLen,
//          contexts: Float32Array[], precision?}, out?: Float32Array) → Promise<Float32Array>
// of contexts.length outputs [C_out, F, H, W], concatenated (SPEC §13 step 4).
Napi::Value Model::Denoise(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto be = backend(env);
  const ModelConfig& cfg = be->config();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "denoise: request object expected");
  auto o = info[0].As<Napi::Object>();
  return queue_filled(env, *queue_, std::make_unique<ForwardJob>(env, be, new_cancel_flag()), [&](ForwardJob* w) {
    w->is_denoise = true;
    DenoiseRequest& req = w->denoise_req;
    auto shape = get(o, "latentShape");
    if (!shape.IsArray() || shape.As<Napi::Array>().Length() != 4)
      throw Napi::TypeError::New(env, "denoise: latentShape must be [C_in, F, H, W]");
    auto sa = shape.As<Napi::Array>();
    const char* names[4] = {"denoise: latentShape[0]", "denoise: latentShape[1]", "denoise: latentShape[2]",
                            "denoise: latentShape[3]"};
    for (uint32_t i = 0; i < 4; ++i) req.latent_shape[i] = to_count(sa.Get(i), names[i], 1 << 20);
    req.timestep = static_cast<int>(to_count(get(o, "timestep"), "denoise: timestep", 999));
    req.expert = static_cast<int>(to_count(get(o, "expert"), "denoise: expert", 1 << 20));
    req.ctx_len = static_cast<int>(to_count(get(o, "ctxLen"), "denoise: ctxLen", 4096));
    auto prec = get(o, "precision");
    if (!prec.IsUndefined()) {
      if (!prec.IsString()) throw Napi::TypeError::New(env, "denoise: precision must be a string");
      req.precision = parse_precision(prec.As<Napi::String>().Utf8Value());
    }
    auto contexts = get(o, "contexts");
    if (!contexts.IsArray()) throw Napi::TypeError::New(env, "denoise: contexts must be an array of Float32Array");
    auto ca = contexts.As<Napi::Array>();
    validate_denoise_shape(cfg, req);  // bounds the sizes below
    const size_t latent_size = static_cast<size_t>(req.latent_shape[0] * req.latent_shape[1] *
                                                   req.latent_shape[2] * req.latent_shape[3]);
    req.latent = borrow_f32(w, get(o, "latent"), latent_size, "denoise: latent");
    if (ca.Length() == 0) throw Napi::RangeError::New(env, "denoise: at least one context is needed");
    const size_t context_size = static_cast<size_t>(req.ctx_len) * cfg.text_dim;
    for (uint32_t i = 0; i < ca.Length(); ++i)
      req.contexts.push_back(borrow_f32(w, ca.Get(i), context_size, "denoise: contexts[" + std::to_string(i) + "]"));
    validate_denoise_request(cfg, req);
    attach_output(w, info, req.contexts.size() * static_cast<size_t>(be->denoise_output_size(req)), "denoise");
  });
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto o = Napi::Object::New(env);
  const auto names = available_backends();
  auto backends = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) backends.Set(static_cast<uint32_t>(i), names[i]);
  o.Set("backends", backends);
  o.Set("cudaCompiled", cuda_backend_compiled());
  o.Set("hardwareThreads", std::thread::hardware_concurrency());
  // The CPU kernels' instruction-set path (DITPOC_CPU_ISA or the best the CPU runs).
  o.Set("simd", cpu::isa_name(cpu::active_isa()));
  const auto paths = cpu::supported_isas();
  auto arr = Napi::Array::New(env, paths.size());
  for (size_t i = 0; i < paths.size(); ++i) arr.Set(static_cast<uint32_t>(i), cpu::isa_name(paths[i]));
  o.Set("cpuPaths", arr);
  return o;
}

}  // namespace

void register_file_lock(Napi::Object exports);  // file_lock.cpp
void register_hard_exit(Napi::Object exports);  // hard_exit.cpp

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = Model::Init(env);
  g_model_ctor = new Napi::FunctionReference(Napi::Persistent(ctor));
  env.SetInstanceData(g_model_ctor);
  exports.Set("Model", ctor);
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  exports.Set("models", Napi::Function::New(env, Models));
  exports.Set("tensorSpecs", Napi::Function::New(env, TensorSpecs));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("seed32", Napi::Function::New(env, Seed32));
  exports.Set("murmur", Napi::Function::New(env, Murmur));
  exports.Set("uniform", Napi::Function::New(env, Uniform));
  exports.Set("normal", Napi::Function::New(env, Normal));
  exports.Set("normalStrong", Napi::Function::New(env, NormalStrong));
  exports.Set("householderVector", Napi::Function::New(env, HouseholderVector));
  exports.Set("nonceInputs", Napi::Function::New(env, NonceInputs));
  exports.Set("artifact", Napi::Function::New(env, Artifact));
  register_file_lock(exports);
  register_hard_exit(exports);
  return exports;
}

NODE_API_MODULE(ditpoc, Init)
