// safetensors: the checkpoint format of the Hugging Face hub, read and written natively.
// Format: 8-byte little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {str:
// str}}, then the data buffer; offsets are relative to the buffer's start.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace kat {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* dtype_name(DType t);

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data buffer
};

// A whole safetensors file held in memory, validated when loaded: every problem (truncated file,
// header length past the end, header not JSON, unknown dtype, offsets out of range or not matching
// the shape, overlapping tensors) is a kat::Error naming the file and the problem.
class SafetensorsFile {
 public:
  static SafetensorsFile load(const std::string& path);
  static SafetensorsFile parse(std::vector<uint8_t> bytes, const std::string& origin);

  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // error naming the tensor if missing
  std::vector<std::string> names() const;                 // sorted
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& origin() const { return origin_; }

  // Tensor `name` as float32 (F32 copied; F64, F16 and BF16 converted). The first form checks that
  // the stored shape equals `shape` and writes into dst; errors name the tensor and both shapes.
  void read_f32(const std::string& name, std::span<const int64_t> shape, float* dst) const;
  std::vector<float> read_f32(const std::string& name) const;
  // Integer tensor (I64, I32, I16, I8, U8) as int64.
  std::vector<int64_t> read_i64(const std::string& name) const;

 private:
  std::string origin_;
  std::vector<uint8_t> bytes_;
  uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorRef {
  std::string name;
  std::vector<int64_t> shape;
  const void* data;  // numel(shape) values of `dtype`
  DType dtype = DType::F32;
};

// Writes tensors (header keys sorted, 8-byte aligned header as the Python library does),
// atomically: a temporary file in the same directory, then rename over `path`.
void save_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace kat
