// Reading and writing .safetensors files: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data.
// Reads go through pread in bounded chunks: a shard can be 10 GB and is never held in memory.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ditpoc {

// The dtypes the engine converts to bf16; any other dtype is kept by name so it can be reported.
enum class StDType { F32, BF16, F16, Other };

struct TensorInfo {
  std::string dtype;             // as written in the header, e.g. "F32", "I64"
  StDType kind = StDType::Other;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;   // absolute byte offsets in the file
  int64_t numel() const;
};

const char* dtype_name(StDType t);

class SafetensorsFile {
 public:
  // Reads and validates the header: length within limits and the file, JSON well formed, every
  // tensor's dtype known, data_offsets inside the data section, not overlapping, and spanning
  // exactly numel * dtype size. Throws std::runtime_error naming the file and tensor.
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The tensor's header entry; throws std::runtime_error when absent.
  const TensorInfo& info(const std::string& name) const;

  // Converts the whole tensor to bf16 bits: BF16 is copied, F32 rounds to nearest even, F16 is
  // widened exactly and then rounded. Other dtypes throw naming the dtype. Thread-safe (pread).
  void read_as_bf16(const std::string& name, uint16_t* out) const;
  // Elements [first, first + count) of the tensor, flattened row-major.
  void read_as_bf16(const std::string& name, int64_t first, int64_t count, uint16_t* out) const;

 private:
  SafetensorsFile() = default;
  void read_bytes(uint64_t offset, uint64_t size, void* out, const std::string& what) const;

  std::string path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor for write_safetensors: float values stored as `dtype` (F32, BF16 or F16; the 16-bit
// formats round to nearest even).
struct TensorToWrite {
  std::string name;
  StDType dtype = StDType::F32;
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major, numel of shape
};

// Writes a safetensors file (for tests and tools). Throws std::invalid_argument on a bad tensor
// (unsupported dtype, value count not matching the shape, duplicate name) and
// std::runtime_error on an I/O failure.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// float32 -> IEEE binary16, round to nearest even (overflow gives infinity, NaN stays NaN).
uint16_t f32_to_f16(float f);

}  // namespace ditpoc
