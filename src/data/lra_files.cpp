// LRA's released data for the image (CIFAR-10), text (IMDb) and retrieval (AAN) tasks, read into
// kat's image and sequence containers. Each reader checks what it reads and names the file (and
// the record or line) in its errors; none of them downloads anything.
#include "kat/lra_files.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "kat/error.h"
#include "kat/files.h"
#include "kat/rng.h"

namespace kat {
namespace {

namespace fs = std::filesystem;

const char* const kCifarTrainFiles[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                        "data_batch_4.bin", "data_batch_5.bin"};
const char* const kCifarTestFile = "test_batch.bin";
const char* const kCifarFrom =
    "CIFAR-10's binary version: cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/"
    "cifar.html, unpacked to cifar-10-batches-bin/";

const char* const kImdbFrom =
    "the aclImdb directory of aclImdb_v1.tar.gz from https://ai.stanford.edu/~amaas/data/"
    "sentiment/; kat downloads nothing";

const char* const kAanFiles[] = {"new_aan_pairs.train.tsv", "new_aan_pairs.eval.tsv",
                                 "new_aan_pairs.test.tsv"};
const char* const kAanFrom =
    "LRA's retrieval data: the lra_release/lra_release/tsv_data directory of "
    "https://storage.googleapis.com/long-range-arena/lra_release.gz; kat downloads nothing";

bool any_cifar_file(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_regular_file(dir / kCifarTestFile, ec)) return true;
  for (const char* name : kCifarTrainFiles)
    if (fs::is_regular_file(dir / name, ec)) return true;
  return false;
}

// Where the files are: dir itself or the cifar-10-batches-bin/ the archive unpacks to.
fs::path cifar_dir(const std::string& dir) {
  const fs::path inner = fs::path(dir) / "cifar-10-batches-bin";
  return !any_cifar_file(dir) && any_cifar_file(inner) ? inner : fs::path(dir);
}

std::string joined(const std::vector<std::string>& parts) {
  std::string s;
  for (const std::string& p : parts) s += (s.empty() ? "" : ", ") + p;
  return s;
}

SequenceDataset byte_sequences(std::string source) {
  SequenceDataset d;
  d.vocab_size = 256, d.num_classes = 2, d.source = std::move(source);
  return d;
}

void append(SequenceDataset& d, const std::string& bytes, int32_t label) {
  d.tokens.insert(d.tokens.end(), bytes.begin(), bytes.end());
  d.offsets.push_back(static_cast<int64_t>(d.tokens.size()));
  d.labels.push_back(label);
}

// The *.txt files of a directory in name order.
std::vector<fs::path> text_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  check(!files.empty(), dir.string(), ": no .txt reviews (", kImdbFrom, ")");
  return files;
}

// Reviews listed as (file, label) into one dataset, each cut to max_bytes.
SequenceDataset read_reviews(const std::vector<std::pair<fs::path, int>>& files, int64_t max_bytes,
                             std::string source) {
  SequenceDataset d = byte_sequences(std::move(source));
  for (const auto& [path, label] : files) {
    std::string text = read_text_file(path.string());
    check(!text.empty(), path.string(), ": empty review");
    if (static_cast<int64_t>(text.size()) > max_bytes) text.resize(max_bytes);
    append(d, text, label);
  }
  return d;
}

}  // namespace

bool has_cifar10(const std::string& dir) {
  return any_cifar_file(dir) || any_cifar_file(fs::path(dir) / "cifar-10-batches-bin");
}

uint8_t lra_gray(uint8_t r, uint8_t g, uint8_t b) {
  const float scale = 1.0f / 255.0f;
  const float gray = (r * scale) * 0.2989f + (g * scale) * 0.5870f + (b * scale) * 0.1140f;
  return static_cast<uint8_t>(gray * 255.5f);  // at most 0.9999 * 255.5 < 256
}

ImageDataset load_cifar10_gray(const std::string& dir, Split split) {
  const fs::path base = cifar_dir(dir);
  std::vector<std::string> names;
  if (split == Split::Train)
    names.assign(std::begin(kCifarTrainFiles), std::end(kCifarTrainFiles));
  else
    names = {kCifarTestFile};
  std::vector<std::string> missing;
  std::error_code ec;
  for (const std::string& name : names)
    if (!fs::is_regular_file(base / name, ec)) missing.push_back(name);
  check(missing.empty(), base.string(), ": missing ", joined(missing), " (", kCifarFrom, ")");

  constexpr int kPlane = 32 * 32;
  ImageDataset set;
  set.channels = 1, set.height = 32, set.width = 32, set.num_classes = 10;
  set.source = (base / (split == Split::Train ? "data_batch_{1..5}.bin" : kCifarTestFile)).string();
  for (const std::string& name : names) {
    const std::string path = (base / name).string();
    const std::vector<uint8_t> bytes = read_file(path);
    const size_t records = bytes.size() / kCifarRecordBytes,
                 rest = bytes.size() % kCifarRecordBytes;
    check(!bytes.empty(), path, ": empty file (", kCifarFrom, ")");
    check(rest == 0, path, ": truncated: record ", records, " (counting from 0) holds ", rest,
          " of its ", kCifarRecordBytes, " bytes (label byte, then 3 x 1024 pixels)");
    for (size_t i = 0; i < records; i++) {
      const uint8_t* record = bytes.data() + i * kCifarRecordBytes;
      check(record[0] < 10, path, ": record ", i, " has label ", int{record[0]},
            ", expected 0-9 (is this CIFAR-10's binary version?)");
      set.labels.push_back(record[0]);
      const uint8_t *r = record + 1, *g = r + kPlane, *b = g + kPlane;
      for (int p = 0; p < kPlane; p++) set.pixels.push_back(lra_gray(r[p], g[p], b[p]));
    }
    set.count += static_cast<int64_t>(records);
  }
  return set;
}

LraData load_imdb(const std::string& dir, uint64_t seed, int64_t max_bytes) {
  check(!dir.empty(), "the text task needs --data DIR: ", kImdbFrom);
  check(max_bytes > 0, "load_imdb: max_bytes must be positive");
  std::error_code ec;
  check(fs::is_directory(dir, ec), dir, ": no such directory; --data for text is ", kImdbFrom);
  std::vector<std::string> missing;
  for (const char* sub : {"train/pos", "train/neg", "test/pos", "test/neg"})
    if (!fs::is_directory(fs::path(dir) / sub, ec)) missing.push_back(sub);
  check(missing.empty(), dir, ": missing ", joined(missing), "; --data for text is ", kImdbFrom);

  auto listed = [&](const char* split) {
    std::vector<std::pair<fs::path, int>> files;
    for (auto [label_dir, label] : {std::pair{"neg", 0}, {"pos", 1}})
      for (const fs::path& f : text_files(fs::path(dir) / split / label_dir))
        files.push_back({f, label});
    return files;
  };
  // A tenth of the training reviews, drawn with the seed (Fisher-Yates), is the validation set.
  std::vector<std::pair<fs::path, int>> train = listed("train");
  Rng rng(seed);
  for (size_t i = train.size(); i > 1; i--) std::swap(train[i - 1], train[rng.next_u64() % i]);
  const size_t n_valid = train.size() / 10;
  const std::vector<std::pair<fs::path, int>> valid(train.begin(), train.begin() + n_valid);
  train.erase(train.begin(), train.begin() + n_valid);
  LraData data;
  const std::string root = fs::path(dir).string();
  data.train = read_reviews(train, max_bytes, root + "/train");
  data.valid = read_reviews(valid, max_bytes, root + "/train (validation tenth)");
  data.test = read_reviews(listed("test"), max_bytes, root + "/test");
  return data;
}

SequenceDataset read_aan_tsv(const std::string& path, int64_t max_bytes) {
  check(max_bytes > 0, "read_aan_tsv: max_bytes must be positive");
  std::ifstream in(path, std::ios::binary);
  check(in.is_open(), "cannot open ", path, " (", kAanFrom, ")");
  SequenceDataset d = byte_sequences(path);
  std::string line, bytes;
  for (int64_t line_no = 1; std::getline(in, line); line_no++) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    std::vector<std::string> fields;
    for (size_t at = 0;;) {
      const size_t tab = line.find('\t', at);
      fields.push_back(line.substr(at, tab == std::string::npos ? std::string::npos : tab - at));
      if (tab == std::string::npos) break;
      at = tab + 1;
    }
    check(fields.size() == 5, where,
          ": expected 5 tab-separated fields (label, id1, id2, text1, text2), found ",
          fields.size());
    // LRA reads the label as a float: "1" and "1.0" are both fine.
    const std::string& label = fields[0];
    char* end = nullptr;
    const double value = std::strtod(label.c_str(), &end);
    check(!label.empty() && end == label.c_str() + label.size() && (value == 0 || value == 1),
          where, ": label '", label.substr(0, 20), "' is not 0 or 1");
    for (int t = 3; t < 5; t++)
      check(fields[t].find('\0') == std::string::npos, where, ": text", t - 2,
            " holds a NUL byte (kat joins the two texts with NUL)");
    bytes.assign(fields[3], 0, static_cast<size_t>(max_bytes));
    bytes += '\0';
    bytes.append(fields[4], 0, static_cast<size_t>(max_bytes));
    append(d, bytes, value == 1 ? 1 : 0);
  }
  check(!in.bad(), path, ": read error");
  check(d.size() > 0, path, ": no pairs");
  return d;
}

LraData load_aan(const std::string& dir, int64_t max_bytes) {
  check(!dir.empty(), "the retrieval task needs --data DIR: ", kAanFrom);
  std::error_code ec;
  check(fs::is_directory(dir, ec), dir, ": no such directory; --data for retrieval is ", kAanFrom);
  std::vector<std::string> missing;
  for (const char* name : kAanFiles)
    if (!fs::is_regular_file(fs::path(dir) / name, ec)) missing.push_back(name);
  check(missing.empty(), dir, ": missing ", joined(missing), " (", kAanFrom, ")");
  LraData data;
  data.train = read_aan_tsv((fs::path(dir) / kAanFiles[0]).string(), max_bytes);
  data.valid = read_aan_tsv((fs::path(dir) / kAanFiles[1]).string(), max_bytes);
  data.test = read_aan_tsv((fs::path(dir) / kAanFiles[2]).string(), max_bytes);
  return data;
}

}  // namespace kat
