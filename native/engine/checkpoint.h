// Loading real Wan checkpoints (safetensors, official or diffusers layout) into bf16 ModelWeights.
#pragma once
#include <string>
#include <vector>

#include "model_config.h"
#include "thread_pool.h"
#include "weights.h"

namespace ditpoc {

// Where each expert's weights live (research/wan22-architecture.md §5):
//   official:  dir/<expert>/ for each name in cfg.experts (high_noise_model, low_noise_model);
//              a one-expert model may also use dir itself (the TI2V-5B release does);
//   diffusers: dir/transformer/ (the high-noise or only expert), dir/transformer_2/ (low noise).
// An expert folder holds diffusion_pytorch_model.safetensors, or the shards that
// diffusion_pytorch_model.safetensors.index.json lists. When both layouts are present the
// official one wins.
struct CheckpointLayout {
  std::string kind;                      // "official" or "diffusers"
  std::vector<std::string> expert_dirs;  // index = routing bit, like cfg.experts
};

// Throws std::runtime_error listing the layouts tried when no layout has every expert folder.
CheckpointLayout detect_checkpoint_layout(const ModelConfig& cfg, const std::string& dir);

// Loads every expert of `cfg` from `dir`. Tensor names may be official or diffusers names (the
// latter renamed with diffusers_key, norm2 -> norm3 included), optionally prefixed
// "model.diffusion_model." (ComfyUI repacks). F32 and F16 are rounded to bf16 to nearest even,
// BF16 is copied. All headers are checked before any data is read, so a bad checkpoint fails in
// seconds: std::runtime_error naming the folder, file and tensor for a missing, unexpected or
// duplicate tensor, a wrong shape, an unsupported dtype, an index naming a missing shard, or a
// truncated or corrupt file. Data is then streamed shard by shard, converted on `pool`.
// progress(tensors done, tensors total) is called on the calling thread.
ModelWeights load_checkpoint(const ModelConfig& cfg, const std::string& dir, ThreadPool& pool,
                             const ProgressFn& progress = nullptr);

// load_checkpoint without the host copy of the model: the same layouts, checks and errors (all
// before any data is read), but each tensor goes to `sink` as soon as its batch of reads is
// converted and is freed after. Host memory peaks at one batch (about 64M elements, or one
// tensor when larger), which lets a GPU backend take a 57 GB model on a host without 57 GB.
// An exception from the sink stops the stream and propagates.
void stream_checkpoint(const ModelConfig& cfg, const std::string& dir, ThreadPool& pool, const TensorSink& sink,
                       const ProgressFn& progress = nullptr);

}  // namespace ditpoc
