#include "safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>

#include "bf16.h"
#include "json_reader.h"

// safetensors data is little-endian; BF16 tensors are copied straight into the output.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.cpp assumes a little-endian host"
#endif

namespace ditpoc {

namespace {

// The reference implementation's limit: a larger header means a corrupt or foreign file.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// The work one header may cost (it is parsed before anything else is known about the file):
// the format's own nesting (header > entry > shape > dimension), a rank well past any real tensor,
// more tensors than any checkpoint shard holds, and room for the metadata strings some tools
// write (configs, thumbnails). Checked while parsing, so a hostile header fails at the bound.
constexpr size_t kMaxTensors = size_t{1} << 17;
constexpr size_t kMaxRank = 32;
const json::Limits kHeaderLimits = [] {
  json::Limits l;
  l.max_depth = 4;
  l.max_values = size_t{1} << 20;
  l.max_object_keys = kMaxTensors;
  l.max_array_items = kMaxRank;
  l.max_string_bytes = size_t{16} << 20;
  l.max_number_chars = 64;
  return l;
}();
// Elements converted per pread for F32/F16 (4 MB of F32): bounds memory per reading thread.
constexpr int64_t kChunkElems = 1 << 20;

// Byte size of the dtypes the safetensors format defines (0: unknown dtype).
int dtype_size(const std::string& d) {
  static const std::map<std::string, int> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
      {"F32", 4},  {"I64", 8}, {"U64", 8}, {"F64", 8}};
  auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

StDType dtype_kind(const std::string& d) {
  if (d == "F32") return StDType::F32;
  if (d == "BF16") return StDType::BF16;
  if (d == "F16") return StDType::F16;
  return StDType::Other;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string errno_str() { return std::strerror(errno); }

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

const char* dtype_name(StDType t) {
  switch (t) {
    case StDType::F32: return "F32";
    case StDType::BF16: return "BF16";
    case StDType::F16: return "F16";
    case StDType::Other: return "other";
  }
  return "?";
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = o.fd_;
    file_size_ = o.file_size_;
    tensors_ = std::move(o.tensors_);
    metadata_ = std::move(o.metadata_);
    o.fd_ = -1;
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

void SafetensorsFile::read_bytes(uint64_t offset, uint64_t size, void* out,
                                 const std::string& what) const {
  auto* p = static_cast<char*>(out);
  while (size > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(size, 1u << 30));
    const ssize_t got = ::pread(fd_, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw std::runtime_error(path_ + ": reading " + what + ": " + errno_str());
    if (got == 0)
      throw std::runtime_error(path_ + ": reading " + what + ": unexpected end of file at byte " +
                               std::to_string(offset) + " (file truncated?)");
    p += got;
    offset += static_cast<uint64_t>(got);
    size -= static_cast<uint64_t>(got);
  }
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + errno_str());
  struct stat st;
  if (::fstat(f.fd_, &st) != 0) throw std::runtime_error("cannot stat " + path + ": " + errno_str());
  if (!S_ISREG(st.st_mode)) throw std::runtime_error(path + ": not a regular file");
  f.file_size_ = static_cast<uint64_t>(st.st_size);

  if (f.file_size_ < 8)
    throw std::runtime_error(path + ": file is " + std::to_string(f.file_size_) +
                             " bytes, too short for a safetensors header (file truncated?)");
  unsigned char len_bytes[8];
  f.read_bytes(0, 8, len_bytes, "the header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxHeaderBytes)
    throw std::runtime_error(path + ": header length " + std::to_string(header_len) +
                             " bytes exceeds the " + std::to_string(kMaxHeaderBytes) +
                             "-byte limit (corrupt, or not a safetensors file)");
  if (header_len > f.file_size_ - 8)
    throw std::runtime_error(path + ": header length " + std::to_string(header_len) +
                             " bytes runs past the end of the " + std::to_string(f.file_size_) +
                             "-byte file (file truncated?)");
  std::string text(header_len, '\0');
  f.read_bytes(8, header_len, text.data(), "the header");

  json::Value header;
  try {
    header = json::parse(text, kHeaderLimits);
    header.keys();  // throws unless an object
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": bad header: " + e.what());
  }

  const uint64_t data_start = 8 + header_len, data_size = f.file_size_ - data_start;
  for (size_t i = 0; i < header.size(); ++i) {
    const std::string& name = header.keys()[i];
    const json::Value& entry = header[i];
    try {
      if (name == "__metadata__") {
        for (size_t j = 0; j < entry.keys().size(); ++j)
          f.metadata_[entry.keys()[j]] = entry[j].as_string();
        continue;
      }
      const json::Value* dtype = entry.find("dtype");
      const json::Value* shape = entry.find("shape");
      const json::Value* offsets = entry.find("data_offsets");
      if (!dtype || !shape || !offsets)
        throw std::runtime_error("entry lacks \"dtype\", \"shape\" or \"data_offsets\"");
      TensorInfo t;
      t.dtype = dtype->as_string();
      t.kind = dtype_kind(t.dtype);
      const int esize = dtype_size(t.dtype);
      if (esize == 0) throw std::runtime_error("unknown dtype '" + t.dtype + "'");
      // Bound numel so numel * size cannot overflow; 2^56 bytes is far past any real file.
      uint64_t bytes = static_cast<uint64_t>(esize);
      for (const auto& d : shape->items()) {
        const int64_t n = d.as_int();
        if (n < 0) throw std::runtime_error("negative dimension in shape");
        t.shape.push_back(n);
        bytes = n == 0 ? 0 : (bytes > (uint64_t{1} << 56) / n ? (uint64_t{1} << 57) : bytes * n);
      }
      if (offsets->size() != 2) throw std::runtime_error("data_offsets must be [begin, end]");
      const int64_t b = (*offsets)[0].as_int(), e = (*offsets)[1].as_int();
      const std::string range = "[" + std::to_string(b) + "," + std::to_string(e) + "]";
      if (b < 0 || e < b) throw std::runtime_error("data_offsets " + range + " are not a byte range");
      if (static_cast<uint64_t>(e) > data_size)
        throw std::runtime_error("data_offsets " + range + " run past the end of the " +
                                 std::to_string(data_size) + "-byte data section (file truncated?)");
      if (static_cast<uint64_t>(e - b) != bytes)
        throw std::runtime_error("data_offsets " + range + " span " + std::to_string(e - b) +
                                 " bytes, but shape " + shape_str(t.shape) + " of " + t.dtype +
                                 " needs " + std::to_string(bytes));
      t.begin = data_start + static_cast<uint64_t>(b);
      t.end = data_start + static_cast<uint64_t>(e);
      f.tensors_.emplace(name, std::move(t));
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ": header entry '" + name + "': " + e.what());
    }
  }

  // Overlapping tensors mean a corrupt header (the format lays tensors out back to back).
  std::vector<std::pair<uint64_t, const std::string*>> order;
  for (const auto& [name, t] : f.tensors_)
    if (t.end > t.begin) order.emplace_back(t.begin, &name);
  std::sort(order.begin(), order.end());
  for (size_t i = 1; i < order.size(); ++i)
    if (f.tensors_.at(*order[i - 1].second).end > order[i].first)
      throw std::runtime_error(path + ": tensors '" + *order[i - 1].second + "' and '" +
                               *order[i].second + "' overlap in the data section");
  return f;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw std::runtime_error(path_ + ": no tensor '" + name + "'");
  return it->second;
}

void SafetensorsFile::read_as_bf16(const std::string& name, uint16_t* out) const {
  read_as_bf16(name, 0, info(name).numel(), out);
}

void SafetensorsFile::read_as_bf16(const std::string& name, int64_t first, int64_t count,
                                   uint16_t* out) const {
  const TensorInfo& t = info(name);
  if (first < 0 || count < 0 || first + count > t.numel())
    throw std::out_of_range(path_ + ": tensor '" + name + "': elements [" + std::to_string(first) +
                            ", " + std::to_string(first + count) + ") out of range");
  const std::string what = "tensor '" + name + "'";
  switch (t.kind) {
    case StDType::BF16:
      read_bytes(t.begin + 2 * static_cast<uint64_t>(first), 2 * static_cast<uint64_t>(count), out, what);
      return;
    case StDType::F32: {
      std::vector<float> buf(static_cast<size_t>(std::min(count, kChunkElems)));
      for (int64_t i = 0; i < count; i += kChunkElems) {
        const int64_t n = std::min(count - i, kChunkElems);
        read_bytes(t.begin + 4 * static_cast<uint64_t>(first + i), 4 * static_cast<uint64_t>(n), buf.data(), what);
        for (int64_t j = 0; j < n; ++j) out[i + j] = f32_to_bf16(buf[j]);
      }
      return;
    }
    case StDType::F16: {
      std::vector<uint16_t> buf(static_cast<size_t>(std::min(count, kChunkElems)));
      for (int64_t i = 0; i < count; i += kChunkElems) {
        const int64_t n = std::min(count - i, kChunkElems);
        read_bytes(t.begin + 2 * static_cast<uint64_t>(first + i), 2 * static_cast<uint64_t>(n), buf.data(), what);
        for (int64_t j = 0; j < n; ++j) out[i + j] = f32_to_bf16(f16_to_f32(buf[j]));
      }
      return;
    }
    case StDType::Other:
      break;
  }
  throw std::runtime_error(path_ + ": tensor '" + name + "' has dtype " + t.dtype +
                           ", which the engine does not load (supported: F32, BF16, F16)");
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((a >> 13) & 0x3ffu);  // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to infinity
  if (a < 0x38800000u) {                         // below 2^-14: f16 subnormal (units of 2^-24)
    if (a < 0x33000000u) return sign;            // below 2^-25 (2^-25 itself ties to 0)
    const uint32_t man = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(a >> 23);  // 14..24
    uint32_t r = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t v = a - (112u << 23);  // rebias the exponent 127 -> 15
  v += 0xfffu + ((v >> 13) & 1u);
  return sign | static_cast<uint16_t>(v >> 13);
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      header += (first ? "" : ",") + json::quote(k) + ":" + json::quote(v);
      first = false;
    }
    header += "}";
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.dtype == StDType::Other)
      throw std::invalid_argument("write_safetensors: tensor '" + t.name + "': dtype must be F32, BF16 or F16");
    if (t.name == "__metadata__" || !names.insert(t.name).second)
      throw std::invalid_argument("write_safetensors: duplicate or reserved tensor name '" + t.name + "'");
    int64_t numel = 1;
    for (auto d : t.shape) numel *= d;
    if (numel != static_cast<int64_t>(t.values.size()))
      throw std::invalid_argument("write_safetensors: tensor '" + t.name + "' has " +
                                  std::to_string(t.values.size()) + " values for shape " +
                                  shape_str(t.shape));
    const uint64_t bytes = static_cast<uint64_t>(numel) * (t.dtype == StDType::F32 ? 4 : 2);
    if (header.size() > 1) header += ",";
    header += json::quote(t.name) + ":{\"dtype\":\"" + dtype_name(t.dtype) + "\",\"shape\":" +
              shape_str(t.shape) + ",\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // pad so the data starts 8-aligned

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot create " + path + ": " + errno_str());
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(header.size() >> (8 * i));
  out.write(reinterpret_cast<const char*>(len_bytes), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  std::vector<char> buf;
  for (const auto& t : tensors) {
    const size_t esize = t.dtype == StDType::F32 ? 4 : 2;
    buf.resize(t.values.size() * esize);
    for (size_t i = 0; i < t.values.size(); ++i) {
      if (t.dtype == StDType::F32) {
        std::memcpy(&buf[4 * i], &t.values[i], 4);
      } else {
        const uint16_t h = t.dtype == StDType::BF16 ? f32_to_bf16(t.values[i]) : f32_to_f16(t.values[i]);
        std::memcpy(&buf[2 * i], &h, 2);
      }
    }
    out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
  }
  out.close();
  if (!out) throw std::runtime_error("writing " + path + " failed: " + errno_str());
}

}  // namespace ditpoc
