// What a backend computes: the SPEC §5 nonce forward (steps 1–8) for a batch of nonces.
// Each nonce comes as its seeds (derived by src/inputs, or by nonce_inputs.h for a sprint's bare
// nonces); backends fill tensors from them and run the model. CPU is always built; CUDA
// (kernels/) plugs in behind the same interface.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cancel.h"
#include "cpu/cpu_isa.h"
#include "weights.h"

namespace ditpoc {

struct Grid {
  int frames = 0, height = 0, width = 0;  // latent-patch grid [F, H, W]
  int64_t tokens() const { return static_cast<int64_t>(frames) * height * width; }
};

enum class Precision {
  Bf16,       // SPEC §7: GEMM and attention inputs rounded to bf16, fp32 everything else
  Fp32,       // no input rounding (more precise; used to check against float64 references)
  Bf16Flash,  // Bf16 plus softmax probabilities rounded to bf16 before P·V, as FlashAttention
              // kernels do on GPUs: an honest variant, used to calibrate validation
  Fp8Attention,  // Bf16 but q, k, v rounded to float8 e4m3 (per-nonce scale): a cheaper,
                 // dishonest variant, used to calibrate validation
};

// Parses "bf16", "fp32", "bf16-flash", "fp8-attention"; throws std::invalid_argument.
Precision parse_precision(const std::string& text);

struct NonceInput {
  // Seeds of SPEC §5 steps 1–2; ignored for the tensors given explicitly below.
  uint32_t latent_seed = 0;
  bool latent_strong = false;               // N8 over latent_words instead of N(latent_seed)
  std::array<uint32_t, 8> latent_words{};
  uint32_t context_seed = 0;
  // Explicit tensors (tests, tools): latent [C_in, F, 2H, 2W], context [ctx_len, text_dim].
  const float* latent = nullptr;
  const float* context = nullptr;
  int timestep = 0;                         // 0..999
  std::vector<uint8_t> experts;             // routing bit per layer
};

struct BatchRequest {
  Grid grid;
  int ctx_len = 0;
  std::vector<NonceInput> nonces;
  std::vector<uint32_t> householder_seeds;  // per layer: seed32(block_hash + "_layer_i_householder")
  // false: no Householder reflections at all (the SPEC §13 denoiser forward); householder_seeds
  // must then be empty.
  bool reflections = true;
  Precision precision = Precision::Bf16;
  // Deviation for calibration and cheat tests: 1 = the layer's block is skipped (its
  // reflection still applies). Empty = none skipped, as the protocol requires.
  std::vector<uint8_t> skip_layers;
};

// SPEC §13 step 4: one denoiser evaluation f(x, t, context) for one or more contexts that share
// the latent and the timestep (CFG: [context_null, context]), batched into one forward.
struct DenoiseRequest {
  // [C_in, F, H, W]: the latent (VAE) grid; F, H, W multiples of the patch (1, 2, 2).
  std::array<int64_t, 4> latent_shape{};
  const float* latent = nullptr;         // row-major, C_in·F·H·W values
  int timestep = 0;                      // 0..999
  int expert = 0;                        // index into config.experts; every layer runs on it
  int ctx_len = 0;                       // rows per context (512 for SPEC §13)
  std::vector<const float*> contexts;    // each [ctx_len, text_dim] row-major
  Precision precision = Precision::Bf16;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int threads() const = 0;
  // Output length per nonce: L · 4 · C_out.
  int64_t output_size(const Grid& grid) const;
  // Writes y for every nonce, row-major [nonces, output_size]. Throws std::invalid_argument
  // for a malformed request and Cancelled when *cancel becomes true.
  virtual void forward(const BatchRequest& req, float* out,
                       const std::atomic<bool>* cancel = nullptr) = 0;
  // forward(), then per_outputs(begin, end) over the nonces [0, req.nonces.size()): host work on
  // the outputs (the artifacts). The CPU backend runs it on its pool inside its forward lock, so
  // it never competes with the next forward for cores; others run it afterwards, split over a
  // pool of all the host's cores.
  virtual void forward_then(const BatchRequest& req, float* out, const std::atomic<bool>* cancel,
                            const std::function<void(int64_t, int64_t)>& per_outputs);
  // Output length per context of a denoise: C_out · F · H · W.
  int64_t denoise_output_size(const DenoiseRequest& req) const;
  // Writes f(x, t, context) for every context, [contexts, C_out, F, H, W]: the nonce forward
  // with every layer on req.expert, no reflections, the head unpatchified. Throws like forward.
  void denoise(const DenoiseRequest& req, float* out, const std::atomic<bool>* cancel = nullptr);
  const ModelConfig& config() const { return *weights_->config; }
  // "random:<seed>" or the checkpoint path, "+<transform>" when a weight transform was applied.
  const std::string& identity() const { return weights_->identity; }
  // One weight tensor as the backend computes with it (bf16, the official key and shape), for
  // checks and references. Throws std::runtime_error naming a missing tensor, or when the
  // backend keeps no host copy (CUDA's weights live on the GPU), std::out_of_range for `expert`.
  virtual Tensor tensor(int expert, const std::string& key) const;

 protected:
  explicit Backend(std::shared_ptr<const ModelWeights> w) : weights_(std::move(w)) {}
  std::shared_ptr<const ModelWeights> weights_;
};

// Checks a request against the model: grid, ctx_len, routing lengths, timesteps, seeds.
void validate_request(const ModelConfig& cfg, const BatchRequest& req);
// Checks a denoise request: latent shape against C_in and the patch, timestep, expert, ctx_len,
// contexts. Throws std::invalid_argument with the reason.
void validate_denoise_request(const ModelConfig& cfg, const DenoiseRequest& req);
// The same checks less the latent and context pointers (callers size their inputs after it).
void validate_denoise_shape(const ModelConfig& cfg, const DenoiseRequest& req);
// The nonce forward a denoise runs: one nonce per context, all sharing the latent pointer.
BatchRequest denoise_batch(const ModelConfig& cfg, const DenoiseRequest& req);
// Official Wan2.2 unpatchify of one sample: head output y [L, pt·ph·pw·C_out] with each token's
// vector laid out (pt, ph, pw, c), c fastest, tokens (f, h, w) row-major over `grid` →
// out [C_out, F·pt, H·ph, W·pw] with out[c, f·pt+a, h·ph+i, w·pw+j] = y[tok][((a·ph+i)·pw+j)·C_out+c].
void unpatchify(const ModelConfig& cfg, const Grid& grid, const float* y, float* out);

// The CPU backend on the kernels' path cpu::active_isa(), or on the given one (cpu/cpu_isa.h),
// over host weights: it copies them into its packed form tensor by tensor and keeps no
// reference to `weights`.
std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const ModelWeights> weights, int threads);
std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const ModelWeights> weights, int threads,
                                          cpu::Isa isa);
// The CPU backend over weights that stream in (stream_random_weights, stream_checkpoint): each
// tensor is packed (matrices) or widened to fp32 as it arrives and its bf16 copy freed, so host
// memory holds the packed model and one batch of tensors, never the model twice. Refuses with
// std::runtime_error, before the stream starts, when cpu_weight_bytes(cfg) exceeds the available
// host memory. Every (expert, tensor) must come exactly once with its spec's shape, else
// std::invalid_argument; the stream's own exceptions propagate.
std::unique_ptr<Backend> make_cpu_backend_streamed(const ModelConfig& cfg, const std::string& identity,
                                                   const WeightStream& stream, int threads, cpu::Isa isa);
// Host bytes a CPU backend of `cfg` needs for its weights while loading (its packed weights and
// the batch of tensors in flight).
int64_t cpu_weight_bytes(const ModelConfig& cfg);
// Host bytes of the CPU backend's workspace for a forward of `batch` passes at `grid`, `ctx_len`
// (a double: absurd requests exceed int64).
double cpu_workspace_bytes(const ModelConfig& cfg, const Grid& grid, int ctx_len, int64_t batch);

}  // namespace ditpoc
