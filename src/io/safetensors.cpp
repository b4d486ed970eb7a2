// safetensors reader and writer. The reader trusts nothing in the file: the header length, the
// JSON, every dtype, shape and offset are checked before a byte of tensor data is touched.
#include "kat/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "kat/error.h"
#include "kat/files.h"

namespace kat {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeader = 100u << 20;  // the Python library's limit: 100 MB

struct DTypeInfo {
  DType type;
  const char* name;
  int bytes;
};

constexpr DTypeInfo kDTypes[] = {{DType::F64, "F64", 8}, {DType::F32, "F32", 4},
                                 {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
                                 {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
                                 {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
                                 {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1}};

const DTypeInfo& dtype_info(DType t) {
  for (const DTypeInfo& d : kDTypes)
    if (d.type == t) return d;
  fail("unknown dtype");
}

template <class T>
T load_le(const uint8_t* p) {
  static_assert(std::endian::native == std::endian::little, "kat assumes a little-endian host");
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant * 2^-24
      const float v = static_cast<float>(mant) * 0x1p-24f;
      return sign ? -v : v;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

int64_t element_count(const std::vector<int64_t>& shape, const std::string& where) {
  int64_t n = 1;
  for (int64_t d : shape) {
    check(d >= 0, where, ": negative dimension");
    if (d != 0) check(n <= std::numeric_limits<int64_t>::max() / d, where, ": shape too large");
    n *= d;
  }
  return n;
}

std::string shape_text(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

const char* dtype_name(DType t) { return dtype_info(t).name; }

SafetensorsFile SafetensorsFile::load(const std::string& path) {
  return parse(read_file(path), path);
}

SafetensorsFile SafetensorsFile::parse(std::vector<uint8_t> bytes, const std::string& origin) {
  SafetensorsFile f;
  f.origin_ = origin;
  check(bytes.size() >= 8, origin, ": not a safetensors file (", bytes.size(),
        " bytes, shorter than the 8-byte header length)");
  const uint64_t n = load_le<uint64_t>(bytes.data());
  check(n <= kMaxHeader, origin, ": safetensors header length ", n, " is larger than the ",
        kMaxHeader, "-byte limit (corrupt file?)");
  check(n <= bytes.size() - 8, origin, ": truncated: header length ", n,
        " runs past the end of the ", bytes.size(), "-byte file");
  f.data_start_ = 8 + n;
  const uint64_t data_size = bytes.size() - f.data_start_;
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + static_cast<int64_t>(f.data_start_));
  } catch (const json::exception& e) {
    fail(origin, ": safetensors header is not valid JSON (", e.what(), ")");
  }
  check(header.is_object(), origin, ": safetensors header is not a JSON object");
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    const std::string where = origin + ": tensor '" + name + "'";
    if (name == "__metadata__") {
      check(e.is_object(), origin, ": __metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        check(m.value().is_string(), origin, ": __metadata__ value '", m.key(),
              "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    check(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"),
          where, ": entry needs dtype, shape and data_offsets");
    check(e["dtype"].is_string(), where, ": dtype is not a string");
    TensorInfo t;
    t.name = name;
    const std::string dt = e["dtype"].get<std::string>();
    const DTypeInfo* info = nullptr;
    for (const DTypeInfo& d : kDTypes)
      if (dt == d.name) info = &d;
    check(info != nullptr, where, ": unsupported dtype '", dt, "'");
    t.dtype = info->type;
    const json& shape = e["shape"];
    check(shape.is_array(), where, ": shape is not an array");
    for (const json& d : shape) {
      check(d.is_number_integer() && d.get<int64_t>() >= 0, where,
            ": shape entries must be non-negative integers");
      t.shape.push_back(d.get<int64_t>());
    }
    const json& off = e["data_offsets"];
    check(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
              off[1].is_number_unsigned(),
          where, ": data_offsets must be two non-negative integers");
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    check(t.begin <= t.end && t.end <= data_size, where, ": data_offsets [", t.begin, ", ", t.end,
          "] out of range of the ", data_size, "-byte data buffer");
    const int64_t count = element_count(t.shape, where);
    check(static_cast<uint64_t>(count) <= (t.end - t.begin) / static_cast<uint64_t>(info->bytes) &&
              static_cast<uint64_t>(count) * static_cast<uint64_t>(info->bytes) == t.end - t.begin,
          where, ": ", t.end - t.begin, " bytes do not hold shape ", shape_text(t.shape), " of ",
          dt);
    ranges.emplace_back(t.begin, t.end);
    f.tensors_.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); i++)
    check(ranges[i].first >= ranges[i - 1].second, origin, ": tensors overlap in the data buffer");
  f.bytes_ = std::move(bytes);
  return f;
}

bool SafetensorsFile::contains(const std::string& name) const { return tensors_.count(name) > 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  check(it != tensors_.end(), origin_, ": no tensor '", name, "'");
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

void SafetensorsFile::read_f32(const std::string& name, std::span<const int64_t> shape,
                               float* dst) const {
  const TensorInfo& t = info(name);
  check(std::equal(t.shape.begin(), t.shape.end(), shape.begin(), shape.end()), origin_,
        ": tensor '", name, "' has shape ", shape_text(t.shape), ", expected ", shape_text(shape));
  const uint8_t* p = bytes_.data() + data_start_ + t.begin;
  const int64_t n = element_count(t.shape, name);
  switch (t.dtype) {
    case DType::F32:
      if (n > 0) std::memcpy(dst, p, static_cast<size_t>(n) * 4);
      break;
    case DType::F64:
      for (int64_t i = 0; i < n; i++) dst[i] = static_cast<float>(load_le<double>(p + 8 * i));
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; i++) dst[i] = half_to_float(load_le<uint16_t>(p + 2 * i));
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; i++)
        dst[i] = std::bit_cast<float>(static_cast<uint32_t>(load_le<uint16_t>(p + 2 * i)) << 16);
      break;
    default:
      fail(origin_, ": tensor '", name, "' has dtype ", dtype_name(t.dtype),
           ", expected a floating-point tensor (F32, F64, F16 or BF16)");
  }
}

std::vector<float> SafetensorsFile::read_f32(const std::string& name) const {
  const TensorInfo& t = info(name);
  std::vector<float> out(static_cast<size_t>(element_count(t.shape, name)));
  read_f32(name, t.shape, out.data());
  return out;
}

std::vector<int64_t> SafetensorsFile::read_i64(const std::string& name) const {
  const TensorInfo& t = info(name);
  const uint8_t* p = bytes_.data() + data_start_ + t.begin;
  const int64_t n = element_count(t.shape, name);
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) {
    switch (t.dtype) {
      case DType::I64:
        out[i] = load_le<int64_t>(p + 8 * i);
        break;
      case DType::I32:
        out[i] = load_le<int32_t>(p + 4 * i);
        break;
      case DType::I16:
        out[i] = load_le<int16_t>(p + 2 * i);
        break;
      case DType::I8:
        out[i] = static_cast<int8_t>(p[i]);
        break;
      case DType::U8:
        out[i] = p[i];
        break;
      default:
        fail(origin_, ": tensor '", name, "' has dtype ", dtype_name(t.dtype),
             ", expected an integer tensor");
    }
  }
  return out;
}

void save_safetensors(const std::string& path, const std::vector<TensorRef>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorRef*> sorted;
  for (const TensorRef& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorRef* a, const TensorRef* b) { return a->name < b->name; });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < sorted.size(); i++) {
    const TensorRef& t = *sorted[i];
    check(t.name != "__metadata__", path, ": '__metadata__' is not a tensor name");
    check(i == 0 || sorted[i - 1]->name != t.name, path, ": tensor '", t.name, "' given twice");
    const uint64_t bytes = static_cast<uint64_t>(element_count(t.shape, t.name)) *
                           static_cast<uint64_t>(dtype_info(t.dtype).bytes);
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  out += text;
  out.reserve(out.size() + offset);
  for (const TensorRef* t : sorted) {
    const uint64_t bytes = static_cast<uint64_t>(element_count(t->shape, t->name)) *
                           static_cast<uint64_t>(dtype_info(t->dtype).bytes);
    out.append(static_cast<const char*>(t->data), bytes);
  }
  write_file_atomic(path, out);
}

}  // namespace kat
