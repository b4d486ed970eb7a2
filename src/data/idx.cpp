// IDX reader (MNIST family): raw or gzip-compressed, validated against the real data size.
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kat/data.h"
#include "kat/error.h"

namespace kat {
namespace {

namespace fs = std::filesystem;

// Sequential byte reader over a file that may be gzip-compressed. read() returns fewer bytes than
// asked only at the end of the (decompressed) data; a corrupt gzip stream throws.
class ByteReader {
 public:
  explicit ByteReader(const std::string& path) : path_(path) {
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    check(fs::exists(status), path, ": no such file");
    check(!fs::is_directory(status), path, ": is a directory, expected an IDX file");
    file_size_ = fs::file_size(path, ec);
    check(!ec, path, ": cannot read: ", ec.message());
    file_.open(path, std::ios::binary);
    check(file_.is_open(), path, ": cannot open: ", std::strerror(errno));
    // Decide by content, not by name: gzip streams start with 1f 8b.
    const size_t got = read_raw(in_buf_, 2);
    in_len_ = got;
    gzipped_ = got == 2 && in_buf_[0] == 0x1f && in_buf_[1] == 0x8b;
    if (gzipped_) {
      stream_ = std::make_unique<z_stream>();
      std::memset(stream_.get(), 0, sizeof(z_stream));
      // 16 + MAX_WBITS: expect a gzip header and trailer (CRC and length are verified).
      check(inflateInit2(stream_.get(), 16 + MAX_WBITS) == Z_OK, path, ": cannot start zlib");
      stream_->next_in = in_buf_;
      stream_->avail_in = static_cast<uInt>(in_len_);
    }
  }
  ~ByteReader() {
    if (stream_) inflateEnd(stream_.get());
  }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  bool gzipped() const { return gzipped_; }

  // Bytes of the raw file not yet consumed (raw files only; checked before allocating).
  uint64_t raw_bytes_left() const { return file_size_ - consumed_; }

  // Reads up to n bytes into out; fewer only at the end of the data.
  size_t read(uint8_t* out, size_t n) { return gzipped_ ? read_gzip(out, n) : read_plain(out, n); }

  // True when nothing follows; for gzip this also drives the stream to its end so the trailer's
  // CRC and length are checked even when the header told us to stop early.
  bool at_end() {
    uint8_t probe;
    return read(&probe, 1) == 0;
  }

 private:
  size_t read_raw(uint8_t* out, size_t n) {
    file_.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(n));
    check(!file_.bad(), path_, ": read error: ", std::strerror(errno));
    return static_cast<size_t>(file_.gcount());
  }

  size_t read_plain(uint8_t* out, size_t n) {
    // The two sniffed bytes come first.
    size_t done = std::min(n, in_len_ - in_pos_);
    std::memcpy(out, in_buf_ + in_pos_, done);
    in_pos_ += done;
    if (done < n) done += read_raw(out + done, n - done);
    consumed_ += done;
    return done;
  }

  size_t read_gzip(uint8_t* out, size_t n) {
    z_stream& z = *stream_;
    size_t done = 0;
    while (done < n && !finished_) {
      if (z.avail_in == 0) {
        in_len_ = read_raw(in_buf_, sizeof(in_buf_));
        z.next_in = in_buf_;
        z.avail_in = static_cast<uInt>(in_len_);
        if (in_len_ == 0)
          fail(path_, ": corrupt or truncated gzip stream (file ends before the stream does)");
      }
      const size_t chunk = std::min<size_t>(n - done, std::numeric_limits<uInt>::max());
      z.next_out = out + done;
      z.avail_out = static_cast<uInt>(chunk);
      const int rc = inflate(&z, Z_NO_FLUSH);
      done += chunk - z.avail_out;
      if (rc == Z_STREAM_END) {
        // Concatenated gzip members are one stream (as gunzip treats them); anything else after
        // the stream is garbage.
        if (z.avail_in == 0) {
          in_len_ = read_raw(in_buf_, sizeof(in_buf_));
          z.next_in = in_buf_;
          z.avail_in = static_cast<uInt>(in_len_);
        }
        if (z.avail_in == 0) {
          finished_ = true;
        } else {
          // (inflate itself validates the rest of the next member's header.)
          check(z.next_in[0] == 0x1f, path_,
                ": corrupt gzip file (trailing garbage after the compressed stream)");
          check(inflateReset(&z) == Z_OK, path_, ": cannot restart zlib");
        }
      } else if (rc == Z_MEM_ERROR) {
        fail(path_, ": out of memory while decompressing");
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        fail(path_, ": corrupt gzip stream (", z.msg ? z.msg : zError(rc), ")");
      }
    }
    return done;
  }

  std::string path_;
  std::ifstream file_;
  bool gzipped_ = false;
  bool finished_ = false;
  std::unique_ptr<z_stream> stream_;
  uint8_t in_buf_[1 << 16];
  size_t in_len_ = 0, in_pos_ = 0;  // in_pos_: consumed sniffed bytes (raw files only)
  uint64_t file_size_ = 0, consumed_ = 0;
};

struct IdxArray {
  std::vector<uint32_t> dims;
  std::vector<uint8_t> data;  // row-major over dims
};

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string dims_string(const std::vector<uint32_t>& dims, size_t first) {
  std::string s;
  for (size_t i = first; i < dims.size(); ++i)
    s += (i > first ? "x" : "") + std::to_string(dims[i]);
  return s;
}

// Reads one IDX file of unsigned bytes whose dimension count is one of allowed_ndims.
// what: "images" or "labels", for messages.
IdxArray read_idx(const std::string& path, std::initializer_list<int> allowed_ndims,
                  const char* what) {
  ByteReader reader(path);
  uint8_t magic[4];
  const size_t magic_got = reader.read(magic, 4);
  check(magic_got == 4, path, ": truncated: file holds ", magic_got,
        " bytes, the IDX header needs at least 4");
  if (magic[0] != 0 || magic[1] != 0) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%08x", big_endian_u32(magic));
    fail(path, ": bad magic ", hex, " (not an IDX file: the first two bytes must be zero)");
  }
  if (magic[2] != 0x08) {
    char type[8];
    std::snprintf(type, sizeof(type), "0x%02x", magic[2]);
    fail(path, ": unsupported element type ", type, " (only unsigned byte, 0x08, is supported)");
  }
  const int ndims = magic[3];
  if (std::find(allowed_ndims.begin(), allowed_ndims.end(), ndims) == allowed_ndims.end()) {
    std::string allowed;
    for (int n : allowed_ndims) allowed += (allowed.empty() ? "" : " or ") + std::to_string(n);
    fail(path, ": expected ", what, " with ", allowed, " dimensions, the file has ", ndims);
  }

  IdxArray array;
  std::vector<uint8_t> header(4 * static_cast<size_t>(ndims));
  const size_t header_got = reader.read(header.data(), header.size());
  check(header_got == header.size(), path, ": truncated: the header needs ", 4 + header.size(),
        " bytes, the file holds ", 4 + header_got);
  uint64_t total = 1;
  for (int d = 0; d < ndims; ++d) {
    const uint32_t dim = big_endian_u32(&header[4 * d]);
    check(dim > 0, path, ": dimension ", d, " of the ", what, " is zero (empty data)");
    // Every dimension ends up in an int (and their product in int64 offsets).
    check(dim <= uint32_t{std::numeric_limits<int32_t>::max()}, path, ": dimension ", d, " is ",
          dim, ", too large");
    array.dims.push_back(dim);
    constexpr uint64_t kMaxBytes = uint64_t{1} << 40;
    check(total <= kMaxBytes / dim, path, ": header says ", dims_string(array.dims, 0),
          " elements, which is implausibly large (over 1 TiB)");
    total *= dim;
  }

  // Never allocate more than the data really holds: the size of raw files is known; gzip data
  // grows chunk by chunk, bounded by what decompresses.
  const uint64_t item_bytes = total / array.dims[0];
  auto truncated = [&](uint64_t got) {
    const std::string item =
        ndims == 1 ? std::string(what) : std::string(what) + " of " + dims_string(array.dims, 1);
    fail(path, ": truncated: header says ", array.dims[0], " ", item, ", file holds ",
         got / item_bytes, " (", got, " of ", total, " data bytes)");
  };
  if (!reader.gzipped()) {
    const uint64_t left = reader.raw_bytes_left();
    if (left < total) truncated(left);
    array.data.resize(total);
    const size_t got = reader.read(array.data.data(), total);
    if (got < total) truncated(got);
  } else {
    constexpr uint64_t kChunk = uint64_t{1} << 24;
    uint64_t got = 0;
    while (got < total) {
      const uint64_t want = std::min(kChunk, total - got);
      array.data.resize(got + want);
      const size_t n = reader.read(array.data.data() + got, want);
      got += n;
      if (n < want) truncated(got);
    }
  }
  check(reader.at_end(), path, ": has extra bytes after the ", total, " data bytes the header",
        " describes (", what, " ", dims_string(array.dims, 0), ")");
  return array;
}

std::string lowercase(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Normalized form for comparing directory names ("/a/b/" == "/a/b").
std::string normalized_dir(const std::string& dir) {
  std::string s = fs::path(dir).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

ImageDataset load_idx(const std::string& images_path, const std::string& labels_path) {
  IdxArray images = read_idx(images_path, {3, 4}, "images");
  const IdxArray labels = read_idx(labels_path, {1}, "labels");
  check(images.dims[0] == labels.dims[0], "count mismatch: ", images_path, " holds ",
        images.dims[0], " images but ", labels_path, " holds ", labels.dims[0], " labels");

  ImageDataset set;
  set.count = images.dims[0];
  set.height = static_cast<int>(images.dims[1]);
  set.width = static_cast<int>(images.dims[2]);
  set.channels = images.dims.size() == 4 ? static_cast<int>(images.dims[3]) : 1;
  set.source = images_path + " + " + labels_path;
  const uint64_t plane = uint64_t{images.dims[1]} * images.dims[2];
  check(plane * set.channels <= uint64_t{std::numeric_limits<int32_t>::max()}, images_path,
        ": one image has ", plane * set.channels, " values, too many");

  if (set.channels == 1) {
    set.pixels = std::move(images.data);
  } else {
    // [N, H, W, C] channels-last -> [N, C, H, W].
    set.pixels.resize(images.data.size());
    const int64_t channels = set.channels;
    const int64_t image_size = static_cast<int64_t>(plane) * channels;
    for (int64_t n = 0; n < set.count; ++n) {
      const uint8_t* src = images.data.data() + n * image_size;
      uint8_t* dst = set.pixels.data() + n * image_size;
      for (int64_t p = 0; p < static_cast<int64_t>(plane); ++p)
        for (int64_t c = 0; c < channels; ++c) dst[c * plane + p] = src[p * channels + c];
    }
  }

  set.labels.assign(labels.data.begin(), labels.data.end());
  set.num_classes = *std::max_element(set.labels.begin(), set.labels.end()) + 1;
  return set;
}

const char* default_data_dir() { return "/usr/share/datasets/fashion-mnist"; }

ImageDataset load_idx_split(const std::string& dir, Split split) {
  const bool is_default = normalized_dir(dir) == normalized_dir(default_data_dir());
  const std::string hint =
      is_default ? "; install it with: apt-get install dataset-fashion-mnist" : "";
  std::error_code ec;
  check(fs::is_directory(dir, ec), "data directory ", dir, " does not exist", hint);

  const std::string prefix = split == Split::Train ? "train" : "t10k";
  const char* split_name = split == Split::Train ? "training" : "test";
  // The MNIST family ships as "<prefix>-images-idx3-ubyte[.gz]"; some mirrors use a dot.
  auto find = [&](const std::string& kind, const std::string& idx) {
    const std::vector<std::string> names = {prefix + "-" + kind + "-" + idx + "-ubyte.gz",
                                            prefix + "-" + kind + "-" + idx + "-ubyte",
                                            prefix + "-" + kind + "." + idx + "-ubyte"};
    std::string tried;
    for (const std::string& name : names) {
      const fs::path path = fs::path(dir) / name;
      if (fs::is_regular_file(path, ec)) return path.string();
      tried += (tried.empty() ? "" : ", ") + name;
    }
    fail(dir, ": no ", split_name, " ", kind, " found (tried ", tried, ")", hint);
  };
  const std::string images_path = find("images", "idx3");
  const std::string labels_path = find("labels", "idx1");
  return load_idx(images_path, labels_path);
}

std::vector<std::string> class_names_for(const std::string& dir, int num_classes) {
  if (num_classes == 10 && lowercase(dir).find("fashion") != std::string::npos)
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  std::vector<std::string> names;
  for (int i = 0; i < num_classes; ++i) names.push_back(std::to_string(i));
  return names;
}

}  // namespace kat
