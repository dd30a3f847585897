// JSON reader, safetensors reader/writer and checkpoint loader: tiny checkpoints written to a
// temp dir in every supported layout and dtype must load to the same bf16 bits, and every
// malformed case must fail with an error an operator can act on. Streamed weights (what a GPU
// backend uploads tensor by tensor) must equal the loaded ones.
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bf16.h"
#include "check.h"
#include "checkpoint.h"
#include "json_reader.h"
#include "safetensors.h"
#include "weight_transforms.h"

using namespace ditpoc;

namespace {

std::string g_tmp;

std::string path_in(const std::string& rel) { return g_tmp + "/" + rel; }

void make_dirs(const std::string& path) {
  for (size_t p = 1; p != std::string::npos; p = path.find('/', p + 1))
    ::mkdir(path.substr(0, p).c_str(), 0755);
  ::mkdir(path.c_str(), 0755);
}

int remove_entry(const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }
void remove_tree(const std::string& dir) { ::nftw(dir.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}
// Replaces the first `from` in the file with `to` (same length keeps the header length valid).
void patch_file(const std::string& path, const std::string& from, const std::string& to) {
  std::string s = read_text(path);
  const size_t at = s.find(from);
  CHECK_MSG(at != std::string::npos, "patch target '%s' not in %s", from.c_str(), path.c_str());
  if (at != std::string::npos) write_text(path, s.replace(at, from.size(), to));
}
// A raw safetensors file: explicit header length, header text and data bytes.
void write_raw(const std::string& path, uint64_t header_len, const std::string& header,
               const std::string& data) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(header_len >> (8 * i));
  write_text(path, s + header + data);
}

// ---- JSON reader ----

void test_json() {
  const json::Value v = json::parse(
      " {\"a\": [1, -2, 3.5, 1e3, true, false, null], \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\","
      " \"big\": 9223372036854775807, \"min\": -9223372036854775808, \"over\": 9223372036854775808,"
      " \"o\": {}} ");
  CHECK(v.is(json::Type::Object) && v.size() == 6);
  const json::Value& a = *v.find("a");
  CHECK(a.size() == 7 && a[0].as_int() == 1 && a[1].as_int() == -2 && a[2].as_double() == 3.5);
  CHECK(a[3].is(json::Type::Double) && a[3].as_double() == 1000.0);
  CHECK(a[4].as_bool() && !a[5].as_bool() && a[6].is(json::Type::Null));
  CHECK(v.find("s")->as_string() == "q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(v.find("big")->as_int() == INT64_MAX && v.find("min")->as_int() == INT64_MIN);
  CHECK(v.find("over")->is(json::Type::Double));
  CHECK(v.find("o")->size() == 0 && v.find("missing") == nullptr);
  CHECK(v.keys()[1] == "s");
  CHECK(json::parse(json::quote("a\"b\\c\n\x01")).as_string() == "a\"b\\c\n\x01");

  CHECK_THROWS_WITH(json::parse("[1,]"), "at byte 3 (line 1, column 4): expected a JSON value, found ']'");
  CHECK_THROWS_WITH(json::parse("{\"a\" 1}"), "expected ':' after an object key");
  CHECK_THROWS_WITH(json::parse("{\"a\":1,\"a\":2}"), "duplicate key \"a\"");
  CHECK_THROWS_WITH(json::parse("01"), "expected end of input after the JSON value, found '1'");
  CHECK_THROWS_WITH(json::parse("\"abc"), "expected '\"' closing the string, found end of input");
  CHECK_THROWS_WITH(json::parse("\"\\x\""), "a valid escape");
  CHECK_THROWS_WITH(json::parse("\"\\ude00\""), "a high surrogate before a low one");
  CHECK_THROWS_WITH(json::parse("\"\\ud83dx\""), "low surrogate after a high surrogate");
  CHECK_THROWS_WITH(json::parse("\"a\nb\""), "line 1, column 3): expected an escaped control character");
  CHECK_THROWS_WITH(json::parse("[1]\n x"), "(line 2, column 2)");
  CHECK_THROWS_WITH(json::parse("1."), "a digit after '.'");
  CHECK_THROWS_WITH(json::parse("1e999"), "within double range");
  CHECK_THROWS_WITH(json::parse("tru"), "expected a JSON value, found 't'");
  CHECK_THROWS_WITH(json::parse(""), "found end of input");
  CHECK_THROWS_WITH(json::parse(std::string(300, '[')), "levels of nesting");
  CHECK_THROWS_WITH(json::parse("\"x\"").as_int(), "expected a JSON integer, found a string");
  CHECK_THROWS_WITH(json::parse("1.5").as_int(), "found a non-integer number");
}

// ---- safetensors ----

void test_f16_rounding() {
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (f != f) continue;  // NaN payloads need not round-trip
    if (f32_to_f16(f) != h) ++bad;
  }
  CHECK_MSG(bad == 0, "%d f16 values do not round-trip", bad);
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);      // tie -> even (down)
  CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);  // tie -> even (up)
  CHECK(f32_to_f16(65519.0f) == 0x7bff && f32_to_f16(65520.0f) == 0x7c00);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0 && f32_to_f16(std::ldexp(1.5f, -25)) == 1);
  CHECK(f32_to_f16(-std::ldexp(3.0f, -25)) == 0x8002);  // 1.5 units: tie -> even 2
  CHECK((f32_to_f16(std::nanf("")) & 0x7fff) > 0x7c00);
}

void test_safetensors_roundtrip() {
  const std::string p = path_in("rt.safetensors");
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> a(6 * 1000 + 3), b(17), c(5);
  for (auto* v : {&a, &b, &c})
    for (auto& x : *v) x = nd(rng);
  CHECK_THROWS_WITH(write_safetensors(p, {{"a.f32", StDType::F32, {6, 1000, 1}, a}}),
                    "tensor 'a.f32' has 6003 values for shape [6,1000,1]");
  a.resize(6000);
  write_safetensors(p, {{"a.f32", StDType::F32, {6, 1000, 1}, a},
                        {"b.bf16", StDType::BF16, {17}, b},
                        {"c.f16", StDType::F16, {5, 1}, c},
                        {"scalar", StDType::F32, {}, {2.5f}},
                        {"empty", StDType::F16, {0, 4}, {}}},
                    {{"format", "pt"}});
  const SafetensorsFile f = SafetensorsFile::open(p);
  CHECK(f.tensors().size() == 5 && f.metadata().at("format") == "pt");
  CHECK(f.info("a.f32").dtype == "F32" && f.info("a.f32").shape == (std::vector<int64_t>{6, 1000, 1}));
  CHECK(f.info("c.f16").kind == StDType::F16 && f.info("scalar").numel() == 1);
  CHECK((f.info("a.f32").begin - 8) % 8 == 0);  // header padded to 8 bytes

  std::vector<uint16_t> out(6000);
  f.read_as_bf16("a.f32", out.data());
  int bad = 0;
  for (size_t i = 0; i < 6000; ++i) bad += out[i] != f32_to_bf16(a[i]);
  std::vector<uint16_t> part(100);
  f.read_as_bf16("a.f32", 4321, 100, part.data());
  for (size_t i = 0; i < 100; ++i) bad += part[i] != f32_to_bf16(a[4321 + i]);
  f.read_as_bf16("b.bf16", out.data());
  for (size_t i = 0; i < 17; ++i) bad += out[i] != f32_to_bf16(b[i]);
  f.read_as_bf16("c.f16", out.data());
  for (size_t i = 0; i < 5; ++i) bad += out[i] != f32_to_bf16(f16_to_f32(f32_to_f16(c[i])));
  f.read_as_bf16("scalar", out.data());
  bad += out[0] != f32_to_bf16(2.5f);
  f.read_as_bf16("empty", out.data());
  CHECK_MSG(bad == 0, "%d values differ after the round trip", bad);
  CHECK_THROWS_WITH(f.read_as_bf16("a.f32", 5990, 11, out.data()), "out of range");
  CHECK_THROWS_WITH(f.read_as_bf16("nope", out.data()), "no tensor 'nope'");

  CHECK_THROWS_WITH(write_safetensors(p, {{"x", StDType::F32, {2, 2}, {1, 2, 3}}}), "has 3 values for shape [2,2]");
  CHECK_THROWS_WITH(write_safetensors(p, {{"x", StDType::F32, {1}, {1}}, {"x", StDType::F16, {1}, {1}}}),
                    "duplicate or reserved tensor name 'x'");
}

void test_safetensors_malformed() {
  const std::string p = path_in("bad.safetensors");
  const std::string hdr = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
  const std::string data(24, '\0');
  write_raw(p, hdr.size(), hdr, data);
  CHECK(SafetensorsFile::open(p).tensors().size() == 1);

  CHECK_THROWS_WITH(SafetensorsFile::open(path_in("absent.safetensors")), "cannot open");
  write_text(p, "abcde");
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "file is 5 bytes, too short for a safetensors header");
  write_raw(p, uint64_t{1} << 40, hdr, data);
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "header length 1099511627776 bytes exceeds the 100000000-byte limit");
  write_raw(p, hdr.size() + 100, hdr, data);
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "runs past the end of the 89-byte file (file truncated?)");
  write_raw(p, hdr.size(), hdr, data.substr(0, 20));
  CHECK_THROWS_WITH(SafetensorsFile::open(p),
                    "header entry 't': data_offsets [0,24] run past the end of the 20-byte data section (file truncated?)");
  const std::string not_json = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}";
  write_raw(p, not_json.size(), not_json, data);
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "bad header: JSON error at byte");
  write_raw(p, 6, "[1, 2]", data);
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "bad header: expected a JSON object, found an array");
  const std::string short_span = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}";
  write_raw(p, short_span.size(), short_span, data);
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "data_offsets [0,20] span 20 bytes, but shape [2,3] of F32 needs 24");
  const std::string odd = "{\"t\":{\"dtype\":\"Q7\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
  write_raw(p, odd.size(), odd, data);
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "header entry 't': unknown dtype 'Q7'");
  const std::string no_shape = "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,24]}}";
  write_raw(p, no_shape.size(), no_shape, data);
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "lacks \"dtype\", \"shape\" or \"data_offsets\"");
  const std::string overlap =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}";
  write_raw(p, overlap.size(), overlap, data);
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "tensors 'a' and 'b' overlap");
  const std::string i64 = "{\"t\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]}}";
  write_raw(p, i64.size(), i64, data);
  const SafetensorsFile f = SafetensorsFile::open(p);  // other dtypes open; reading them fails
  std::vector<uint16_t> out(3);
  CHECK_THROWS_WITH(f.read_as_bf16("t", out.data()),
                    "tensor 't' has dtype I64, which the engine does not load (supported: F32, BF16, F16)");
}

// ---- checkpoints ----

using Values = std::map<std::string, std::vector<float>>;  // official key -> values

// Values exactly representable in F16 (so the F32, BF16 and F16 files agree after bf16 rounding);
// f16 keeps 3 more mantissa bits than bf16, so ties and round-ups are exercised.
Values make_values(const ModelConfig& cfg, int expert) {
  Values v;
  std::mt19937 rng(1234 + expert);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (const auto& s : tensor_specs(cfg)) {
    auto& x = v[s.name];
    x.resize(static_cast<size_t>(s.numel()));
    const float mu = s.kind == TensorKind::NormWeight ? 1.0f : 0.0f;
    for (auto& e : x) e = f16_to_f32(f32_to_f16(mu + nd(rng)));
  }
  return v;
}

struct Layout {
  bool diffusers = false;
  StDType dtype = StDType::F32;
  int shards = 1;
  std::string prefix;        // e.g. "model.diffusion_model."
  bool root = false;         // one-expert official checkpoint at the dir root
  // Edits an expert's tensor list before it is written.
  std::function<void(int expert, std::vector<TensorToWrite>&)> edit;
};

std::string shard_name(int i, int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "diffusion_pytorch_model-%05d-of-%05d.safetensors", i + 1, n);
  return buf;
}

void write_expert(const std::string& folder, const std::vector<TensorToWrite>& ts, int shards) {
  make_dirs(folder);
  if (shards == 1) {
    write_safetensors(folder + "/diffusion_pytorch_model.safetensors", ts);
    return;
  }
  std::string map;
  std::set<std::string> listed;  // an index names each tensor once (the duplicate case relies on it)
  for (int s = 0; s < shards; ++s) {
    const size_t b = ts.size() * s / shards, e = ts.size() * (s + 1) / shards;
    const std::vector<TensorToWrite> part(ts.begin() + b, ts.begin() + e);
    write_safetensors(folder + "/" + shard_name(s, shards), part);
    for (const auto& t : part)
      if (listed.insert(t.name).second)
        map += (map.empty() ? "" : ",\n    ") + json::quote(t.name) + ": " + json::quote(shard_name(s, shards));
  }
  write_text(folder + "/diffusion_pytorch_model.safetensors.index.json",
             "{\n  \"metadata\": {\"total_size\": 0},\n  \"weight_map\": {\n    " + map + "\n  }\n}\n");
}

void write_checkpoint(const std::string& dir, const ModelConfig& cfg, const std::vector<Values>& values,
                      const Layout& lay) {
  for (int e = 0; e < cfg.num_experts(); ++e) {
    std::vector<TensorToWrite> ts;
    for (const auto& s : tensor_specs(cfg))
      ts.push_back({lay.prefix + (lay.diffusers ? diffusers_key(s.name) : s.name), lay.dtype, s.shape,
                    values[e].at(s.name)});
    if (lay.diffusers) std::reverse(ts.begin(), ts.end());  // order must not matter
    if (lay.edit) lay.edit(e, ts);
    const std::string folder = lay.root ? dir
                               : lay.diffusers ? dir + (e == 0 ? "/transformer" : "/transformer_" + std::to_string(e + 1))
                                               : dir + "/" + cfg.experts[e];
    write_expert(folder, ts, lay.shards);
  }
}

// Number of elements whose loaded bits differ from the bf16 rounding of `values`.
int64_t mismatches(const ModelWeights& w, const std::vector<Values>& values) {
  int64_t bad = 0;
  for (size_t e = 0; e < values.size(); ++e) {
    if (w.experts[e].tensors.size() != values[e].size()) return -1;
    for (const auto& [key, v] : values[e]) {
      const auto it = w.experts[e].tensors.find(key);
      if (it == w.experts[e].tensors.end() || it->second.data.size() != v.size()) return -1;
      const Tensor& t = it->second;
      for (size_t i = 0; i < v.size(); ++i) bad += t.data[i] != f32_to_bf16(v[i]);
    }
  }
  return bad;
}

void test_wan_tiny_layouts(ThreadPool& pool) {
  const ModelConfig& cfg = find_model("wan-tiny");
  const std::vector<Values> values = {make_values(cfg, 0), make_values(cfg, 1)};

  Layout official;
  official.shards = 2;
  write_checkpoint(path_in("official"), cfg, values, official);
  Layout bf16;
  bf16.diffusers = true;
  bf16.dtype = StDType::BF16;
  write_checkpoint(path_in("diffusers_bf16"), cfg, values, bf16);
  Layout f16 = bf16;
  f16.dtype = StDType::F16;
  f16.shards = 3;
  write_checkpoint(path_in("diffusers_f16"), cfg, values, f16);

  CHECK(detect_checkpoint_layout(cfg, path_in("official")).kind == "official");
  CHECK(detect_checkpoint_layout(cfg, path_in("diffusers_f16")).expert_dirs[1] ==
        path_in("diffusers_f16") + "/transformer_2");

  std::vector<ModelWeights> loaded;
  for (const char* name : {"official", "diffusers_bf16", "diffusers_f16"}) {
    int64_t last = -1, total = 0, calls = 0;
    bool monotonic = true;
    loaded.push_back(load_checkpoint(cfg, path_in(name), pool, [&](int64_t d, int64_t t) {
      monotonic = monotonic && d >= last;
      last = d;
      total = t;
      ++calls;
    }));
    const ModelWeights& w = loaded.back();
    CHECK(w.config == &cfg && w.identity == path_in(name) && w.experts.size() == 2);
    CHECK_MSG(mismatches(w, values) == 0, "%s: %lld mismatching elements", name,
              static_cast<long long>(mismatches(w, values)));
    CHECK(monotonic && calls >= 2 && last == total &&
          total == 2 * static_cast<int64_t>(tensor_specs(cfg).size()));
    for (const auto& s : tensor_specs(cfg)) CHECK(w.experts[1].tensors.at(s.name).shape == s.shape);
  }
  for (size_t e = 0; e < 2; ++e)
    for (const auto& [key, t] : loaded[0].experts[e].tensors) {
      CHECK(t.data == loaded[1].experts[e].tensors.at(key).data);
      CHECK(t.data == loaded[2].experts[e].tensors.at(key).data);
    }
  // The two experts must not be swapped (transformer = high noise = routing bit 0).
  CHECK(loaded[1].experts[0].tensors.at("blocks.0.norm3.weight").data !=
        loaded[1].experts[1].tensors.at("blocks.0.norm3.weight").data);
}

// stream_checkpoint and stream_random_weights hand out the same tensors as load_checkpoint and
// random_weights, each once, before the whole model is read; per-tensor weight transforms equal
// the whole-model ones. The official wan-tiny checkpoint has 2 shards per expert.
void test_streamed_weights(ThreadPool& pool) {
  const ModelConfig& cfg = find_model("wan-tiny");
  const ModelWeights loaded = load_checkpoint(cfg, path_in("official"), pool);
  std::vector<std::map<std::string, Tensor>> got(2);
  int64_t sunk = 0, reports = 0, total_tensors = 0;
  bool twice = false, in_step = true;
  stream_checkpoint(
      cfg, path_in("official"), pool,
      [&](int e, const std::string& key, Tensor& t) {
        twice = twice || got.at(e).count(key);
        ++sunk;
        got.at(e)[key] = std::move(t);
      },
      [&](int64_t d, int64_t t) {
        in_step = in_step && d == sunk;  // tensors go out batch by batch, as they are read
        total_tensors = t;
        ++reports;
      });
  CHECK(!twice && sunk == total_tensors && total_tensors == 2 * static_cast<int64_t>(tensor_specs(cfg).size()));
  // Streaming: one batch per shard here (4), each handed out before the next is read.
  CHECK_MSG(in_step && reports >= 5, "progress out of step with the sink (%lld reports)",
            static_cast<long long>(reports));
  for (int e = 0; e < 2; ++e) {
    CHECK(got[e].size() == loaded.experts[e].tensors.size());
    for (const auto& [key, t] : loaded.experts[e].tensors)
      CHECK_MSG(got[e].count(key) && got[e].at(key).data == t.data && got[e].at(key).shape == t.shape,
                "streamed %s differs", key.c_str());
  }
  // A failing sink stops the stream with its own error.
  int calls = 0;
  CHECK_THROWS_WITH(stream_checkpoint(cfg, path_in("official"), pool,
                                      [&](int, const std::string& key, Tensor&) {
                                        if (++calls == 3) throw std::runtime_error("device full at " + key);
                                      }),
                    "device full at ");
  CHECK(calls == 3);

  // Random weights, streamed, then transformed tensor by tensor.
  const ModelWeights random = random_weights(cfg, "stream-test", pool);
  for (const char* spec_text : {"fp8", "int4:64", "noise:0.01:s"}) {
    const WeightTransform tr = parse_weight_transform(spec_text);
    ModelWeights whole = random;
    apply_weight_transform(whole, tr, pool);
    int64_t n = 0, mismatched = 0, changed = 0;
    stream_random_weights(cfg, "stream-test", pool, [&](int e, const std::string& key, Tensor& t) {
      ++n;
      const bool same_as_random = t.data == random.experts[e].tensors.at(key).data;
      for (const auto& spec : tensor_specs(cfg))
        if (spec.name == key) apply_weight_transform(cfg, e, spec, t, tr, pool);
      if (!same_as_random || t.data != whole.experts[e].tensors.at(key).data) ++mismatched;
      if (t.data != random.experts[e].tensors.at(key).data) ++changed;
    });
    CHECK_MSG(n == 2 * static_cast<int64_t>(tensor_specs(cfg).size()) && mismatched == 0,
              "%s: %lld tensors, %lld mismatched", spec_text, static_cast<long long>(n),
              static_cast<long long>(mismatched));
    CHECK(changed > 0);  // the transform did something
  }
}

// A few-hundred-parameter model for the layout and error cases.
ModelConfig micro_config(int experts) {
  ModelConfig c;
  c.id = "micro";
  c.dim = 8;
  c.ffn_dim = 16;
  c.num_heads = 1;
  c.num_layers = 2;
  c.in_channels = 4;
  c.out_channels = 4;
  c.text_dim = 8;
  c.freq_dim = 8;
  c.experts = experts == 2 ? std::vector<std::string>{"high_noise_model", "low_noise_model"}
                           : std::vector<std::string>{"model"};
  return c;
}

void test_single_expert_layouts(ThreadPool& pool) {
  const ModelConfig cfg = micro_config(1);
  const std::vector<Values> values = {make_values(cfg, 0)};
  Layout root;
  root.root = true;
  root.prefix = "model.diffusion_model.";  // ComfyUI repack spelling
  write_checkpoint(path_in("one_root"), cfg, values, root);
  CHECK(mismatches(load_checkpoint(cfg, path_in("one_root"), pool), values) == 0);

  write_checkpoint(path_in("one_model"), cfg, values, Layout{});  // dir/model/
  CHECK(detect_checkpoint_layout(cfg, path_in("one_model")).expert_dirs[0] == path_in("one_model") + "/model");
  CHECK(mismatches(load_checkpoint(cfg, path_in("one_model"), pool), values) == 0);

  Layout diff;
  diff.diffusers = true;
  diff.shards = 2;
  write_checkpoint(path_in("one_diffusers"), cfg, values, diff);
  CHECK(detect_checkpoint_layout(cfg, path_in("one_diffusers")).kind == "diffusers");
  CHECK(mismatches(load_checkpoint(cfg, path_in("one_diffusers"), pool), values) == 0);

  // Full-precision F32 values round to nearest even.
  std::vector<Values> fine = values;
  std::mt19937 rng(99);
  std::uniform_real_distribution<float> ud(-4.0f, 4.0f);
  for (auto& [key, v] : fine[0])
    for (auto& x : v) x = ud(rng);
  fine[0]["blocks.0.ffn.0.bias"][0] = bf16_to_f32(0x3f81) + std::ldexp(1.0f, -8);  // tie: 1.0078125 + half ulp
  write_checkpoint(path_in("one_f32"), cfg, fine, Layout{});
  const ModelWeights w = load_checkpoint(cfg, path_in("one_f32"), pool);
  CHECK(mismatches(w, fine) == 0);
  CHECK(w.experts[0].tensors.at("blocks.0.ffn.0.bias").data[0] == 0x3f82);  // odd 0x3f81 ties up to even
}

// Writes a fresh micro checkpoint in `name` and expects loading it to fail with an error that
// contains every needle.
void expect_load_error(ThreadPool& pool, const std::string& name, const Layout& lay,
                       const std::function<void(const std::string& dir)>& damage,
                       const std::vector<std::string>& needles) {
  const ModelConfig cfg = micro_config(2);
  const std::vector<Values> values = {make_values(cfg, 0), make_values(cfg, 1)};
  const std::string dir = path_in("bad_" + name);
  write_checkpoint(dir, cfg, values, lay);
  if (damage) damage(dir);
  bool thrown = false;
  try {
    load_checkpoint(cfg, dir, pool);
  } catch (const std::exception& e) {
    thrown = true;
    for (const auto& needle : needles)
      CHECK_MSG(std::string(e.what()).find(needle) != std::string::npos, "%s: '%s' lacks '%s'",
                name.c_str(), e.what(), needle.c_str());
  }
  CHECK_MSG(thrown, "%s: loading did not throw", name.c_str());
}

void test_checkpoint_errors(ThreadPool& pool) {
  const ModelConfig cfg = micro_config(2);
  Layout sharded;
  sharded.shards = 2;
  Layout diffusers;
  diffusers.diffusers = true;
  const std::string high = "/high_noise_model/";
  const std::string shard1 = high + shard_name(0, 2), shard2 = high + shard_name(1, 2);

  // Sanity: the undamaged micro checkpoints load.
  write_checkpoint(path_in("good"), cfg, {make_values(cfg, 0), make_values(cfg, 1)}, sharded);
  CHECK(load_checkpoint(cfg, path_in("good"), pool).experts.size() == 2);

  CHECK_THROWS_WITH(load_checkpoint(cfg, path_in("nowhere"), pool), "nowhere: no such directory");
  expect_load_error(pool, "missing_expert", sharded,
                    [](const std::string& d) { remove_tree(d + "/low_noise_model"); },
                    {"bad_missing_expert: no micro weights found; tried layouts official {high_noise_model/, "
                     "low_noise_model/} (no weights in low_noise_model/); diffusers {transformer/, transformer_2/} "
                     "(no weights in transformer/, transformer_2/). Each expert folder needs "
                     "diffusion_pytorch_model.safetensors or diffusion_pytorch_model.safetensors.index.json"});
  Layout drop = sharded;
  drop.edit = [](int e, std::vector<TensorToWrite>& ts) {
    if (e == 1)
      ts.erase(std::find_if(ts.begin(), ts.end(), [](const TensorToWrite& t) { return t.name == "blocks.0.norm3.weight"; }));
  };
  expect_load_error(pool, "missing_tensor", drop, nullptr,
                    {"low_noise_model: missing 1 of 69 micro tensors: blocks.0.norm3.weight (diffusers blocks.0.norm2.weight)"});
  Layout extra = diffusers;
  extra.edit = [](int e, std::vector<TensorToWrite>& ts) {
    ts.push_back({"blocks.0.norm1.weight", StDType::F32, {8}, std::vector<float>(8, 1.0f)});
  };
  expect_load_error(pool, "extra_tensor", extra, nullptr,
                    {"/transformer: unexpected tensor 'blocks.0.norm1.weight' in diffusion_pytorch_model.safetensors: "
                     "not a micro parameter under official or diffusers naming"});
  Layout shape = diffusers;
  shape.edit = [](int e, std::vector<TensorToWrite>& ts) {
    for (auto& t : ts)
      if (t.name == "blocks.1.ffn.net.0.proj.weight") t.shape = {8, 16};
  };
  expect_load_error(pool, "wrong_shape", shape, nullptr,
                    {"tensor 'blocks.1.ffn.net.0.proj.weight' (official blocks.1.ffn.0.weight) in "
                     "diffusion_pytorch_model.safetensors has shape [8,16], expected [16,8] for micro"});
  expect_load_error(pool, "missing_shard", sharded,
                    [&](const std::string& d) { ::remove((d + shard2).c_str()); },
                    {"diffusion_pytorch_model.safetensors.index.json lists shard "
                     "'diffusion_pytorch_model-00002-of-00002.safetensors' (for tensor", "which does not exist"});
  expect_load_error(pool, "truncated", sharded,
                    [&](const std::string& d) {
                      const std::string p = d + shard1;
                      CHECK(::truncate(p.c_str(), static_cast<off_t>(read_text(p).size() - 10)) == 0);
                    },
                    {shard1 + ": header entry", "run past the end of the", "(file truncated?)"});
  expect_load_error(pool, "bad_header", sharded,
                    [&](const std::string& d) { patch_file(d + shard2, "\"data_offsets\":[", "\"data_offsets\":{"); },
                    {shard2 + ": bad header: JSON error at byte"});
  expect_load_error(pool, "oversized_header", sharded,
                    [&](const std::string& d) {
                      std::string s = read_text(d + shard1);
                      s[5] = 1;  // header length += 2^40
                      write_text(d + shard1, s);
                    },
                    {"exceeds the 100000000-byte limit"});
  expect_load_error(pool, "dtype", sharded,
                    [&](const std::string& d) {
                      patch_file(d + shard2, "\"time_embedding.0.weight\":{\"dtype\":\"F32\"",
                                 "\"time_embedding.0.weight\":{\"dtype\":\"I32\"");
                    },
                    {"tensor 'time_embedding.0.weight' in diffusion_pytorch_model-00002-of-00002.safetensors has "
                     "dtype I32, which the engine does not load"});
  Layout dup = sharded;
  dup.edit = [](int e, std::vector<TensorToWrite>& ts) {
    if (e == 0) ts.push_back(ts.front());  // blocks.0.modulation again, in the second shard
  };
  expect_load_error(pool, "duplicate", dup, nullptr,
                    {"tensor blocks.0.modulation appears twice: as 'blocks.0.modulation' in "
                     "diffusion_pytorch_model-00001-of-00002.safetensors and as 'blocks.0.modulation' in "
                    "diffusion_pytorch_model-00002-of-00002.safetensors"});
  Layout mixed = sharded;  // norm3 under both spellings: diffusers norm2 is official norm3
  mixed.edit = [](int e, std::vector<TensorToWrite>& ts) {
    for (const auto& t : std::vector<TensorToWrite>(ts))
      if (t.name == "blocks.1.norm3.weight") ts.push_back({"blocks.1.norm2.weight", t.dtype, t.shape, t.values});
  };
  expect_load_error(pool, "mixed_names", mixed, nullptr,
                    {"tensor blocks.1.norm3.weight appears twice: as 'blocks.1.norm2.weight' in"});
  expect_load_error(pool, "index_mismatch", sharded,
                    [&](const std::string& d) {
                      patch_file(d + "/high_noise_model/diffusion_pytorch_model.safetensors.index.json",
                                 "\"head.modulation\": \"diffusion_pytorch_model-00002", "\"head.modulation\": \"diffusion_pytorch_model-00001");
                    },
                    {"places tensor 'head.modulation' in diffusion_pytorch_model-00001-of-00002.safetensors, "
                     "which does not contain it"});
  expect_load_error(pool, "index_path", sharded,
                    [&](const std::string& d) {
                      patch_file(d + "/high_noise_model/diffusion_pytorch_model.safetensors.index.json",
                                 "\"diffusion_pytorch_model-00002-of-00002.safetensors\"", "\"../x.safetensors\"");
                    },
                    {"shard name '../x.safetensors' for tensor"});
  expect_load_error(pool, "index_json", sharded,
                    [&](const std::string& d) {
                      write_text(d + "/low_noise_model/diffusion_pytorch_model.safetensors.index.json", "{\"weight_map\": [}");
                    },
                    {"low_noise_model/diffusion_pytorch_model.safetensors.index.json: bad index: JSON error at byte 16"});
  // Pointing at one expert folder, or naming a model with the other number of experts, gets a hint.
  CHECK_THROWS_WITH(load_checkpoint(cfg, path_in("good/high_noise_model"), pool),
                    "It looks like a one-expert checkpoint (or one expert's folder): is the model id right?");
  const ModelConfig one = micro_config(1);
  CHECK_THROWS_WITH(load_checkpoint(one, path_in("good"), pool),
                    "tried layouts official {model/} (no weights in model/); official {./} (no weights in ./); "
                    "diffusers {transformer/} (no weights in transformer/). Each expert folder needs "
                    "diffusion_pytorch_model.safetensors or diffusion_pytorch_model.safetensors.index.json. "
                    "It looks like a two-expert checkpoint: is the model id right?");
}

// ---- bounded work per header (hostile files under the byte limits) ----

void test_json_limits() {
  json::Limits l;
  l.max_depth = 2;
  l.max_values = 6;
  l.max_array_items = 3;
  l.max_object_keys = 2;
  l.max_string_bytes = 4;
  l.max_number_chars = 5;
  CHECK(json::parse("{\"ab\":[1,2,3],\"c\":\"abcd\"}", l).size() == 2);  // every bound reached, none passed
  CHECK_THROWS_WITH(json::parse("[[[1]]]", l), "expected at most 2 levels of nesting");
  CHECK_THROWS_WITH(json::parse("[1,2,3,4]", l), "at byte 7 (line 1, column 8): expected at most 3 elements in an array");
  CHECK_THROWS_WITH(json::parse("{\"a\":1,\"b\":2,\"c\":3}", l), "expected at most 2 members in an object, found '\"'");
  CHECK_THROWS_WITH(json::parse("[[1,2],[3,4]]", l), "expected at most 6 values in the document");
  CHECK_THROWS_WITH(json::parse("\"abcde\"", l), "expected a string of at most 4 bytes");
  CHECK_THROWS_WITH(json::parse("{\"abcde\":1}", l), "expected a string of at most 4 bytes");
  CHECK_THROWS_WITH(json::parse("123456", l), "at byte 0 (line 1, column 1): expected a number of at most 5 characters");
  // The defaults bound a document too: 5 million values fail at the 4M-value default.
  std::string many = "[";
  for (int i = 0; i < 5'000'000; ++i) many += "0,";
  many += "0]";
  CHECK_THROWS_WITH(json::parse(many), "at most 1048576 elements in an array");
}

// Writes a safetensors file whose header is `header` and whose data section is `data_bytes` zeros.
void write_header_file(const std::string& p, const std::string& header, size_t data_bytes = 0) {
  write_raw(p, header.size(), header, std::string(data_bytes, '\0'));
}

void test_safetensors_header_bounds() {
  const std::string p = path_in("bomb.safetensors");
  // A rank past any tensor: 1,000,000 dimensions of 1 (8 MB of header) stop at the 33rd.
  std::string shape = "[";
  for (int i = 0; i < 1'000'000; ++i) shape += i ? ",1" : "1";
  write_header_file(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":" + shape + "],\"data_offsets\":[0,4]}}", 4);
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "bad header: JSON error at byte");
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "expected at most 32 elements in an array");
  // More tensors than any shard: 200,000 empty entries (about 10 MB) stop at 131,072.
  std::string many = "{";
  for (int i = 0; i < 200'000; ++i)
    many += (i ? ",\"t" : "\"t") + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}";
  write_header_file(p, many + "}");
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "expected at most 131072 members in an object");
  // Nesting past the format's own (header > entry > shape > dimension).
  write_header_file(p, "{\"__metadata__\":{\"a\":{\"b\":{\"c\":{\"d\":\"e\"}}}}}");
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "expected at most 4 levels of nesting");
  // One 20 MB metadata string.
  write_header_file(p, "{\"__metadata__\":{\"a\":\"" + std::string(20u << 20, 'x') + "\"}}");
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "expected a string of at most 16777216 bytes");
  // A 100-digit number.
  write_header_file(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[" + std::string(100, '7') + "],\"data_offsets\":[0,4]}}", 4);
  CHECK_THROWS_WITH(SafetensorsFile::open(p), "expected a number of at most 64 characters");
  // Within the bounds: rank 32 and metadata with a 1 MB string still open.
  std::string rank32 = "[";
  for (int i = 0; i < 32; ++i) rank32 += i ? ",1" : "1";
  write_header_file(p, "{\"__metadata__\":{\"thumb\":\"" + std::string(1u << 20, 'x') + "\"},"
                       "\"t\":{\"dtype\":\"F32\",\"shape\":" + rank32 + "],\"data_offsets\":[0,4]}}", 4);
  const SafetensorsFile f = SafetensorsFile::open(p);
  CHECK(f.info("t").shape.size() == 32 && f.metadata().at("thumb").size() == (1u << 20));
}

// Random byte flips, truncations and structural characters in a valid header: every open ends in
// a std::exception or a file whose every tensor reads inside the file. Never a crash or a hang.
void test_safetensors_header_fuzz() {
  const std::string good = path_in("fuzz_good.safetensors");
  write_safetensors(good, {{"a.weight", StDType::F32, {2, 3}, {1, 2, 3, 4, 5, 6}},
                           {"b.bias", StDType::BF16, {4}, {1, 2, 3, 4}},
                           {"c", StDType::F16, {1, 2, 1}, {0.5f, -1}}},
                    {{"format", "pt"}});
  const std::string base = read_text(good);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(base[i]);
  std::mt19937 rng(20261201);
  const std::string specials = "{}[]\",:0123456789-.eE \\u";
  const std::string p = path_in("fuzz.safetensors");
  int opened = 0, refused = 0;
  for (int it = 0; it < 3000; ++it) {
    std::string m = base;
    const int kind = it % 4;
    auto at = [&](size_t lo, size_t hi) { return hi > lo ? lo + rng() % (hi - lo) : lo; };
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      if (kind == 0) m[at(8, 8 + header_len)] ^= static_cast<char>(1u << (rng() % 8));
      else if (kind == 1) m[at(8, 8 + header_len)] = specials[rng() % specials.size()];
      else if (kind == 2) m[at(0, 8)] = static_cast<char>(rng());  // the length field
      else m.resize(at(0, m.size()));                                 // truncation
    }
    write_text(p, m);
    try {
      const SafetensorsFile f = SafetensorsFile::open(p);
      for (const auto& [name, t] : f.tensors()) {
        CHECK(t.begin <= t.end && t.end <= m.size());
        if (t.kind == StDType::Other || t.numel() > 1024) continue;
        std::vector<uint16_t> out(static_cast<size_t>(t.numel()));
        f.read_as_bf16(name, out.data());
      }
      ++opened;
    } catch (const std::exception&) {
      ++refused;
    }
  }
  CHECK_MSG(opened > 20 && refused > 50, "fuzz reached %d opened, %d refused", opened, refused);
}

// Mutated index files of a sharded checkpoint: each load ends in a std::exception or the weights.
void test_index_fuzz(ThreadPool& pool) {
  const ModelConfig cfg = micro_config(1);
  const std::vector<Values> values = {make_values(cfg, 0)};
  Layout lay;
  lay.shards = 2;
  const std::string dir = path_in("fuzz_index");
  write_checkpoint(dir, cfg, values, lay);
  const std::string index = dir + "/model/diffusion_pytorch_model.safetensors.index.json";
  const std::string base = read_text(index);
  CHECK(mismatches(load_checkpoint(cfg, dir, pool), values) == 0);
  std::mt19937 rng(7);
  const std::string specials = "{}[]\",:0123456789-/.\\ ";
  int loaded = 0, refused = 0;
  for (int it = 0; it < 300; ++it) {
    std::string m = base;
    for (int k = 0, n = 1 + static_cast<int>(rng() % 3); k < n; ++k) {
      if (it % 3 == 2) m.resize(m.empty() ? 0 : rng() % m.size());
      else if (m.empty()) break;
      else if (it % 3 == 1) m[rng() % m.size()] = specials[rng() % specials.size()];
      else m[rng() % m.size()] ^= static_cast<char>(1u << (rng() % 8));
    }
    write_text(index, m);
    try {
      const ModelWeights w = load_checkpoint(cfg, dir, pool);
      CHECK(mismatches(w, values) == 0);
      ++loaded;
    } catch (const std::exception&) {
      ++refused;
    }
  }
  CHECK_MSG(refused > 50, "index fuzz: %d loaded, %d refused", loaded, refused);
  // Bounds of their own: an index past 100 MB is refused before it is read; so is one naming
  // more shards than a checkpoint has.
  {
    std::ofstream big(index, std::ios::binary | std::ios::trunc);
    big.seekp(100'000'001);
    big.put(' ');
  }
  CHECK_THROWS_WITH(load_checkpoint(cfg, dir, pool), "100000002 bytes exceeds the 100000000-byte limit");
  std::string map;
  for (int i = 0; i < 5000; ++i) {
    const std::string shard = "s" + std::to_string(i) + ".safetensors";
    write_text(dir + "/model/" + shard, "");
    map += (i ? ",\"t" : "\"t") + std::to_string(i) + "\":\"" + shard + "\"";
  }
  write_text(index, "{\"weight_map\":{" + map + "}}");
  CHECK_THROWS_WITH(load_checkpoint(cfg, dir, pool), "bad index: more than 4096 shard files");
}

}  // namespace

int main() {
  char tmpl[] = "/tmp/ditpoc_test_checkpoint_XXXXXX";
  if (!::mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  g_tmp = tmpl;
  ThreadPool pool(2);
  try {
    test_json();
    test_f16_rounding();
    test_safetensors_roundtrip();
    test_safetensors_malformed();
    test_wan_tiny_layouts(pool);
    test_streamed_weights(pool);
    test_single_expert_layouts(pool);
    test_checkpoint_errors(pool);
    test_json_limits();
    test_safetensors_header_bounds();
    test_safetensors_header_fuzz();
    test_index_fuzz(pool);
  } catch (const std::exception& e) {
    std::printf("unexpected exception: %s\n", e.what());
    ++check::failures();
  }
  remove_tree(g_tmp);
  return check::finish("test_checkpoint");
}
