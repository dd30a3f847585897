#include "host_memory.h"
#include "checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "json_reader.h"
#include "safetensors.h"

namespace ditpoc {

namespace {

const char* const kSingleFile = "diffusion_pytorch_model.safetensors";
const char* const kIndexFile = "diffusion_pytorch_model.safetensors.index.json";
const std::string kComfyPrefix = "model.diffusion_model.";
// Bounds on an index file, as on a safetensors header: its size before it is read, the work of
// parsing it, and the shards it may name (each is opened, so each costs a file descriptor).
constexpr uint64_t kMaxIndexBytes = 100'000'000;
constexpr size_t kMaxShards = 4096;
const json::Limits kIndexLimits = [] {
  json::Limits l;
  l.max_depth = 8;
  l.max_values = size_t{1} << 20;
  l.max_object_keys = size_t{1} << 17;
  l.max_array_items = 4096;
  l.max_string_bytes = size_t{1} << 20;
  l.max_number_chars = 64;
  return l;
}();
// Conversion work units: big enough to amortise a pread, small enough to balance threads.
constexpr int64_t kChunkElems = 4 << 20;
// Tensors converted between progress reports (and the most memory newly touched per batch).
constexpr int64_t kBatchElems = 64 << 20;

// stat() rather than std::filesystem: older GPU-host toolchains need an extra library for it.
bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
std::string join(const std::string& dir, const std::string& name) {
  return !dir.empty() && dir.back() == '/' ? dir + name : dir + "/" + name;
}
bool holds_weights(const std::string& d) {
  return is_file(join(d, kIndexFile)) || is_file(join(d, kSingleFile));
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// Official key for every name a checkpoint may use: official and diffusers spellings.
struct KeyMap {
  std::map<std::string, const TensorSpec*> spec;   // official key -> spec
  std::unordered_map<std::string, std::string> official;  // any accepted name -> official key
};

KeyMap make_key_map(const std::vector<TensorSpec>& specs) {
  KeyMap m;
  for (const auto& s : specs) {
    m.spec[s.name] = &s;
    m.official[s.name] = s.name;
    m.official[diffusers_key(s.name)] = s.name;
  }
  return m;
}

// Where one official tensor comes from.
struct Source {
  size_t shard;
  std::string name;  // as spelled in the file
};

struct ExpertPlan {
  std::vector<std::string> shard_names;                 // file names inside folder
  std::vector<std::unique_ptr<SafetensorsFile>> shards;  // open until streamed
  std::map<std::string, Source> sources;                // official key -> source
};

// The shard file names an expert folder uses: the index's weight_map values, or the single file.
// Also returns the weight map so tensor placement can be cross-checked.
std::vector<std::string> list_shards(const std::string& folder,
                                     std::map<std::string, std::string>& weight_map) {
  const std::string index_path = join(folder, kIndexFile);
  if (!is_file(index_path)) return {kSingleFile};
  struct stat st;
  if (::stat(index_path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) > kMaxIndexBytes)
    throw std::runtime_error(index_path + ": bad index: " + std::to_string(st.st_size) + " bytes exceeds the " +
                             std::to_string(kMaxIndexBytes) + "-byte limit (corrupt, or not an index file)");
  std::ifstream in(index_path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw std::runtime_error("cannot read " + index_path);
  try {
    const json::Value index = json::parse(text.str(), kIndexLimits);
    const json::Value* map = index.find("weight_map");
    if (!map) throw std::runtime_error("no \"weight_map\" object");
    for (size_t i = 0; i < map->keys().size(); ++i)
      weight_map[map->keys()[i]] = (*map)[i].as_string();
  } catch (const std::exception& e) {
    throw std::runtime_error(index_path + ": bad index: " + e.what());
  }
  std::set<std::string> files;
  for (const auto& [tensor, file] : weight_map) {
    // Shards are siblings of the index: a path would let an index read files elsewhere.
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
      throw std::runtime_error(index_path + ": shard name '" + file + "' for tensor '" + tensor +
                               "' is not a plain file name");
    if (files.insert(file).second && !is_file(join(folder, file)))
      throw std::runtime_error("checkpoint " + folder + ": " + kIndexFile + " lists shard '" +
                               file + "' (for tensor '" + tensor + "'), which does not exist");
    if (files.size() > kMaxShards)
      throw std::runtime_error(index_path + ": bad index: more than " + std::to_string(kMaxShards) + " shard files");
  }
  if (files.empty()) throw std::runtime_error(index_path + ": bad index: the weight_map is empty");
  return {files.begin(), files.end()};
}

// Opens every shard header of one expert and checks names, shapes and dtypes against `keys`.
ExpertPlan plan_expert(const ModelConfig& cfg, const KeyMap& keys, const std::string& folder) {
  ExpertPlan plan;
  std::map<std::string, std::string> weight_map;
  plan.shard_names = list_shards(folder, weight_map);
  const std::string where = "checkpoint " + folder + ": ";
  for (size_t s = 0; s < plan.shard_names.size(); ++s) {
    const std::string& file = plan.shard_names[s];
    plan.shards.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(join(folder, file))));
    for (const auto& [name, info] : plan.shards.back()->tensors()) {
      const bool prefixed = name.compare(0, kComfyPrefix.size(), kComfyPrefix) == 0;
      auto it = keys.official.find(prefixed ? name.substr(kComfyPrefix.size()) : name);
      if (it == keys.official.end())
        throw std::runtime_error(where + "unexpected tensor '" + name + "' in " + file + ": not a " +
                                 cfg.id + " parameter under official or diffusers naming");
      const std::string& key = it->second;
      const std::string shown = name == key ? "'" + key + "'" : "'" + name + "' (official " + key + ")";
      auto [pos, fresh] = plan.sources.emplace(key, Source{s, name});
      if (!fresh) {
        const Source& first = pos->second;
        throw std::runtime_error(where + "tensor " + key + " appears twice: as '" + first.name +
                                 "' in " + plan.shard_names[first.shard] + " and as '" + name +
                                 "' in " + file);
      }
      const TensorSpec& spec = *keys.spec.at(key);
      if (info.shape != spec.shape)
        throw std::runtime_error(where + "tensor " + shown + " in " + file + " has shape " +
                                 shape_str(info.shape) + ", expected " + shape_str(spec.shape) +
                                 " for " + cfg.id);
      if (info.kind == StDType::Other)
        throw std::runtime_error(where + "tensor " + shown + " in " + file + " has dtype " +
                                 info.dtype + ", which the engine does not load (supported: F32, BF16, F16)");
    }
  }
  // The index must agree with the shards, or it describes some other checkpoint.
  std::map<std::string, size_t> shard_of;
  for (size_t s = 0; s < plan.shard_names.size(); ++s) shard_of[plan.shard_names[s]] = s;
  for (const auto& [name, file] : weight_map) {
    const auto& shard = *plan.shards[shard_of.at(file)];
    if (!shard.tensors().count(name))
      throw std::runtime_error(where + kIndexFile + " places tensor '" + name + "' in " + file +
                               ", which does not contain it");
  }
  std::vector<std::string> missing;
  for (const auto& [key, spec] : keys.spec)
    if (!plan.sources.count(key)) missing.push_back(key);
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 5; ++i) {
      const std::string d = diffusers_key(missing[i]);
      list += (i ? ", " : "") + missing[i] + (d != missing[i] ? " (diffusers " + d + ")" : "");
    }
    if (missing.size() > 5) list += ", ...";
    throw std::runtime_error(where + "missing " + std::to_string(missing.size()) + " of " +
                             std::to_string(keys.spec.size()) + " " + cfg.id + " tensors: " + list);
  }
  return plan;
}

// Reads one batch of tensors from `shard` into `out`, spread over the pool in chunks.
struct Job {
  const std::string* name;  // in the shard
  Tensor* out;
};

void convert_batch(const SafetensorsFile& shard, const std::vector<Job>& jobs, ThreadPool& pool) {
  pool.parallel_for(static_cast<int64_t>(jobs.size()), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) jobs[i].out->data.resize(static_cast<size_t>(jobs[i].out->numel()));
  });
  struct Chunk { const Job* job; int64_t first, count; };
  std::vector<Chunk> chunks;
  for (const auto& j : jobs)
    for (int64_t f = 0, n = j.out->numel(); f < n; f += kChunkElems)
      chunks.push_back({&j, f, std::min(kChunkElems, n - f)});
  // Dynamic hand-out: chunk sizes vary (a bias vs a slice of an FFN weight).
  std::atomic<size_t> next{0};
  pool.run_on_all([&](int, int) {
    for (size_t c; (c = next.fetch_add(1)) < chunks.size();) {
      const Chunk& k = chunks[c];
      shard.read_as_bf16(*k.job->name, k.first, k.count, k.job->out->data.data() + k.first);
    }
  });
}

}  // namespace

CheckpointLayout detect_checkpoint_layout(const ModelConfig& cfg, const std::string& dir) {
  if (!is_dir(dir)) throw std::runtime_error("checkpoint " + dir + ": no such directory");
  if (cfg.num_experts() < 1) throw std::invalid_argument("model " + cfg.id + " has no experts");
  std::vector<CheckpointLayout> tries;
  CheckpointLayout official{"official", {}}, diffusers{"diffusers", {}};
  for (int e = 0; e < cfg.num_experts(); ++e) {
    official.expert_dirs.push_back(join(dir, cfg.experts[e]));
    diffusers.expert_dirs.push_back(join(dir, e == 0 ? "transformer" : "transformer_" + std::to_string(e + 1)));
  }
  tries.push_back(official);
  if (cfg.num_experts() == 1) tries.push_back({"official", {dir}});
  tries.push_back(diffusers);

  // Folder names relative to dir keep the message readable.
  auto rel = [&](const std::string& d) {
    std::string r = d.substr(dir.size());
    if (!r.empty() && r[0] == '/') r.erase(0, 1);
    return r.empty() ? std::string("./") : r + "/";
  };
  std::string tried;
  for (const auto& t : tries) {
    std::string folders, missing;
    for (const auto& d : t.expert_dirs) {
      folders += (folders.empty() ? "" : ", ") + rel(d);
      if (!holds_weights(d)) missing += (missing.empty() ? "" : ", ") + rel(d);
    }
    if (missing.empty()) return t;
    tried += (tried.empty() ? "" : "; ") + t.kind + " {" + folders + "} (no weights in " + missing + ")";
  }
  // The usual operator mistakes: an expert folder given as the checkpoint, or the wrong model id.
  std::string hint;
  if (cfg.num_experts() > 1 && (holds_weights(dir) || holds_weights(join(dir, "model"))))
    hint = ". It looks like a one-expert checkpoint (or one expert's folder): is the model id right?";
  else if (cfg.num_experts() == 1 && (holds_weights(join(dir, "high_noise_model")) ||
                                      holds_weights(join(dir, "transformer_2"))))
    hint = ". It looks like a two-expert checkpoint: is the model id right?";
  throw std::runtime_error("checkpoint " + dir + ": no " + cfg.id + " weights found; tried layouts " +
                           tried + ". Each expert folder needs " + kSingleFile + " or " + kIndexFile + hint);
}

void stream_checkpoint(const ModelConfig& cfg, const std::string& dir, ThreadPool& pool, const TensorSink& sink,
                       const ProgressFn& progress) {
  const CheckpointLayout layout = detect_checkpoint_layout(cfg, dir);
  const std::vector<TensorSpec> specs = tensor_specs(cfg);
  const KeyMap keys = make_key_map(specs);

  // Phase 1: every header of every expert, so a bad checkpoint fails before minutes of reading.
  std::vector<ExpertPlan> plans;
  for (const auto& folder : layout.expert_dirs) plans.push_back(plan_expert(cfg, keys, folder));

  // Phase 2: stream shard by shard, closing each once read; a batch lives until the sink has it.
  const int64_t total = static_cast<int64_t>(specs.size() * plans.size());
  int64_t done = 0;
  if (progress) progress(0, total);
  for (size_t e = 0; e < plans.size(); ++e) {
    ExpertPlan& plan = plans[e];
    for (size_t s = 0; s < plan.shards.size(); ++s) {
      const SafetensorsFile& shard = *plan.shards[s];
      struct Pending {
        uint64_t begin;  // file offset: file order keeps reads mostly sequential
        const std::string* key;
        const std::string* name;
      };
      std::vector<Pending> order;
      for (const auto& [key, src] : plan.sources)
        if (src.shard == s) order.push_back({shard.info(src.name).begin, &key, &src.name});
      std::sort(order.begin(), order.end(), [](const Pending& a, const Pending& b) { return a.begin < b.begin; });
      std::vector<Tensor> tensors;
      std::vector<const std::string*> batch_keys;
      int64_t batch_elems = 0;
      tensors.reserve(order.size());
      for (size_t i = 0; i < order.size(); ++i) {
        Tensor t;
        t.shape = keys.spec.at(*order[i].key)->shape;
        batch_elems += t.numel();
        tensors.push_back(std::move(t));
        batch_keys.push_back(order[i].key);
        if (batch_elems < kBatchElems && i + 1 < order.size()) continue;
        std::vector<Job> jobs;
        const size_t first = i + 1 - batch_keys.size();
        for (size_t j = 0; j < batch_keys.size(); ++j) jobs.push_back(Job{order[first + j].name, &tensors[j]});
        convert_batch(shard, jobs, pool);
        for (size_t j = 0; j < batch_keys.size(); ++j) sink(static_cast<int>(e), *batch_keys[j], tensors[j]);
        done += static_cast<int64_t>(batch_keys.size());
        if (progress) progress(done, total);
        tensors.clear();
        batch_keys.clear();
        batch_elems = 0;
      }
      plan.shards[s].reset();
    }
  }
}

ModelWeights load_checkpoint(const ModelConfig& cfg, const std::string& dir, ThreadPool& pool,
                             const ProgressFn& progress) {
  // The layout alone sizes the host-memory check, which must come before any data is read.
  const CheckpointLayout layout = detect_checkpoint_layout(cfg, dir);
  require_host_memory(params_per_expert(cfg) * static_cast<int64_t>(layout.expert_dirs.size()) * 2,
                      "the bf16 weights of checkpoint " + dir);
  ModelWeights w;
  w.config = &cfg;
  w.identity = dir;
  w.experts.resize(layout.expert_dirs.size());
  stream_checkpoint(cfg, dir, pool,
                    [&](int expert, const std::string& key, Tensor& t) { w.experts[expert].tensors[key] = std::move(t); },
                    progress);
  return w;
}

}  // namespace ditpoc
