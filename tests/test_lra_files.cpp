// LRA's released data for image (CIFAR-10 binary), text (IMDb aclImdb) and retrieval (AAN TSVs):
// tiny synthetic copies written here, read back through the readers and load_lra, and every
// malformed case named in the error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "cli.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/lra.h"
#include "kat/lra_files.h"

namespace kat {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempDir;

std::string sequence(const SequenceDataset& d, int64_t i) {
  return std::string(d.tokens.begin() + d.offsets[i], d.tokens.begin() + d.offsets[i + 1]);
}

// load_lra's options for a task's files.
LraOptions options(const std::string& task, const std::string& data_dir = "", uint64_t seed = 0) {
  LraOptions o;
  o.task = task, o.data_dir = data_dir, o.seed = seed;
  return o;
}

// ---- CIFAR-10 ----

TEST(Cifar, GrayIsTensorFlowsRgbToGrayscale) {
  EXPECT_EQ(lra_gray(0, 0, 0), 0);
  EXPECT_EQ(lra_gray(255, 255, 255), 255);
  EXPECT_EQ(lra_gray(255, 0, 0), 76);   // trunc(0.2989 * 255.5)
  EXPECT_EQ(lra_gray(0, 255, 0), 149);  // trunc(0.5870 * 255.5) = trunc(149.97)
  EXPECT_EQ(lra_gray(0, 0, 255), 29);   // trunc(0.1140 * 255.5)
  // 0.2989 * 100 + 0.5870 * 150 + 0.1140 * 200 = 140.74; TensorFlow's 255.5 / 255 makes it 141.02.
  EXPECT_EQ(lra_gray(100, 150, 200), 141);
}

// A record: the label, then R, G and B planes filled from (record, plane, pixel).
std::string cifar_record(int label, int k) {
  std::string r(1, static_cast<char>(label));
  for (int c = 0; c < 3; c++)
    for (int p = 0; p < 1024; p++) r += static_cast<char>((k * 13 + c * 50 + p) % 256);
  return r;
}

uint8_t cifar_gray(int k, int p) {
  return lra_gray((k * 13 + p) % 256, (k * 13 + 50 + p) % 256, (k * 13 + 100 + p) % 256);
}

// Five training batches of two records and a test batch of three, under dir/cifar-10-batches-bin.
std::string write_cifar(const TempDir& dir) {
  const std::string base = dir / "cifar-10-batches-bin";
  fs::create_directories(base);
  for (int b = 1; b <= 5; b++)
    write_file_atomic(base + "/data_batch_" + std::to_string(b) + ".bin",
                      cifar_record(b, 2 * b) + cifar_record(9 - b, 2 * b + 1));
  write_file_atomic(base + "/test_batch.bin",
                    cifar_record(0, 100) + cifar_record(7, 101) + cifar_record(3, 102));
  return base;
}

TEST(Cifar, BinaryBatchesReadAsGrayscaleSequences) {
  TempDir dir("lra-cifar");
  EXPECT_FALSE(has_cifar10(dir.str()));
  const std::string base = write_cifar(dir);
  EXPECT_TRUE(has_cifar10(dir.str()));
  EXPECT_TRUE(has_cifar10(base));
  const ImageDataset train = load_cifar10_gray(dir.str(), Split::Train);
  ASSERT_EQ(train.count, 10);
  EXPECT_EQ(train.channels, 1);
  EXPECT_EQ(train.height, 32);
  EXPECT_EQ(train.num_classes, 10);
  EXPECT_EQ(train.labels, (std::vector<int32_t>{1, 8, 2, 7, 3, 6, 4, 5, 5, 4}));
  for (int i = 0; i < 10; i++)
    for (int p : {0, 1, 500, 1023}) EXPECT_EQ(train.image(i)[p], cifar_gray(i + 2, p)) << i;

  // load_lra: the last tenth of train validates, 1024 tokens, 10 classes.
  const LraData data = load_lra(options("image", dir.str()));
  ASSERT_EQ(data.train.size(), 9);
  ASSERT_EQ(data.valid.size(), 1);
  ASSERT_EQ(data.test.size(), 3);
  EXPECT_EQ(data.valid.labels[0], 4);
  EXPECT_EQ(data.test.labels, (std::vector<int32_t>{0, 7, 3}));
  EXPECT_EQ(data.train.max_length(), 1024);
  EXPECT_EQ(data.train.vocab_size, 256);
  EXPECT_EQ(data.train.num_classes, 10);
  EXPECT_EQ(static_cast<uint8_t>(sequence(data.test, 1)[5]), cifar_gray(101, 5));
  const SequenceConfig c = lra_config("image", data);
  EXPECT_EQ(c.max_len, 1024);
  EXPECT_EQ(c.num_classes, 10);
}

TEST(Cifar, TruncatedMissingAndBadFilesAreNamed) {
  TempDir dir("lra-cifar-bad");
  const std::string base = write_cifar(dir);
  const std::string batch3 = base + "/data_batch_3.bin";
  write_file_atomic(batch3, cifar_record(1, 0) + cifar_record(2, 1) + std::string(100, 'x'));
  std::string e = error_of([&] { load_cifar10_gray(dir.str(), Split::Train); });
  EXPECT_THAT(e, HasSubstr(batch3 + ": truncated: record 2"));
  EXPECT_THAT(e, HasSubstr("100 of its 3073 bytes"));
  write_file_atomic(batch3, cifar_record(12, 0));
  EXPECT_THAT(error_of([&] { load_cifar10_gray(dir.str(), Split::Train); }),
              HasSubstr(batch3 + ": record 0 has label 12"));
  fs::remove(base + "/data_batch_5.bin");
  e = error_of([&] { load_cifar10_gray(dir.str(), Split::Train); });
  EXPECT_THAT(e, HasSubstr("missing data_batch_5.bin"));
  EXPECT_THAT(e, HasSubstr("cifar-10-binary.tar.gz"));
  // Test batch still fine on its own.
  EXPECT_EQ(load_cifar10_gray(dir.str(), Split::Test).count, 3);
  // Without CIFAR files, the image task still reads IDX files (and says which it looked for).
  TempDir empty("lra-cifar-none");
  EXPECT_THAT(error_of([&] { load_lra(options("image", empty.str())); }),
              HasSubstr("train-images-idx3-ubyte"));
}

// ---- IMDb ----

void write_review(const TempDir& dir, const std::string& rel, const std::string& text) {
  fs::create_directories(fs::path(dir / rel).parent_path());
  write_file_atomic(dir / rel, text);
}

// 6 + 6 training reviews, 2 + 2 test reviews; train/pos/3_10.txt is 1500 bytes long.
void write_imdb(const TempDir& dir) {
  for (int i = 0; i < 6; i++) {
    write_review(dir, "aclImdb/train/pos/" + std::to_string(i) + "_10.txt",
                 i == 3 ? std::string(1500, 'p') : "great film " + std::to_string(i));
    write_review(dir, "aclImdb/train/neg/" + std::to_string(i) + "_1.txt",
                 "awful film " + std::to_string(i));
  }
  write_review(dir, "aclImdb/test/pos/1_9.txt", "loved it");
  write_review(dir, "aclImdb/test/pos/0_8.txt", "liked it");
  write_review(dir, "aclImdb/test/neg/0_2.txt", "hated it");
  write_review(dir, "aclImdb/test/neg/1_3.txt", "meh");
  write_review(dir, "aclImdb/test/neg/README", "not a review");
}

TEST(Imdb, ReviewsBecomeByteSequences) {
  TempDir dir("lra-imdb");
  write_imdb(dir);
  const LraData data = load_imdb(dir / "aclImdb", 1);
  ASSERT_EQ(data.train.size(), 11);
  ASSERT_EQ(data.valid.size(), 1);  // a tenth of 12
  ASSERT_EQ(data.test.size(), 4);
  // Test: neg then pos, files in name order; the README is not a review.
  EXPECT_EQ(data.test.labels, (std::vector<int32_t>{0, 0, 1, 1}));
  EXPECT_EQ(sequence(data.test, 0), "hated it");
  EXPECT_EQ(sequence(data.test, 1), "meh");
  EXPECT_EQ(sequence(data.test, 2), "liked it");
  EXPECT_EQ(data.train.vocab_size, 256);
  EXPECT_EQ(data.train.num_classes, 2);
  // Every training review is in train or validation once, labelled by its folder; the long one
  // is cut to 1000 bytes.
  std::multiset<std::string> seen;
  for (const SequenceDataset* d : {&data.train, &data.valid})
    for (int64_t i = 0; i < d->size(); i++) {
      const std::string s = sequence(*d, i);
      seen.insert(s);
      EXPECT_EQ(d->labels[i], s[0] == 'a' ? 0 : 1) << s;
    }
  EXPECT_EQ(seen.size(), 12u);
  EXPECT_EQ(seen.count(std::string(1000, 'p')), 1u);
  EXPECT_EQ(std::max(data.train.max_length(), data.valid.max_length()), 1000);
  // The validation review depends on the seed and only on it.
  EXPECT_EQ(sequence(load_imdb(dir / "aclImdb", 1).valid, 0), sequence(data.valid, 0));
  std::set<std::string> picks;
  for (uint64_t seed = 0; seed < 8; seed++)
    picks.insert(sequence(load_imdb(dir / "aclImdb", seed).valid, 0));
  EXPECT_GT(picks.size(), 2u);
  // Through load_lra and the text config (4 layers, 64 wide).
  const LraData via = load_lra(options("text", dir / "aclImdb", 3));
  EXPECT_EQ(via.train.size() + via.valid.size(), 12);
  const SequenceConfig c = lra_config("text", via);
  EXPECT_EQ(c.depth, 4);
  EXPECT_EQ(c.embed_dim, 64);
  EXPECT_EQ(c.max_len, 1000);
}

TEST(Imdb, MissingDataSaysWhatAndWhere) {
  TempDir dir("lra-imdb-missing");
  write_imdb(dir);
  fs::remove_all(dir / "aclImdb/test/neg");
  std::string e = error_of([&] { load_imdb(dir / "aclImdb", 0); });
  EXPECT_THAT(e, HasSubstr("missing test/neg"));
  EXPECT_THAT(e, Not(HasSubstr("train/pos")));
  EXPECT_THAT(e, HasSubstr("aclImdb_v1.tar.gz"));
  EXPECT_THAT(e, HasSubstr("https://ai.stanford.edu/~amaas/data/sentiment/"));
  e = error_of([&] { load_imdb(dir / "nowhere", 0); });
  EXPECT_THAT(e, HasSubstr(dir / "nowhere" + ": no such directory"));
  EXPECT_THAT(error_of([&] { load_lra(options("text")); }), HasSubstr("needs --data DIR"));
  write_review(dir, "aclImdb/test/neg/5_1.txt", "");
  EXPECT_THAT(error_of([&] { load_imdb(dir / "aclImdb", 0); }), HasSubstr("5_1.txt: empty review"));
}

// ---- AAN ----

void write_aan(const TempDir& dir, const std::string& train) {
  write_file_atomic(dir / "new_aan_pairs.train.tsv", train);
  write_file_atomic(dir / "new_aan_pairs.eval.tsv", "0\ta\tb\tfirst\tsecond\n");
  write_file_atomic(dir / "new_aan_pairs.test.tsv", "1.0\ta\tb\tx\ty\n0.0\tc\td\t\tz\n");
}

TEST(Aan, PairsJoinTwoTextsWithNul) {
  TempDir dir("lra-aan");
  const std::string long_text(5000, 'L');
  write_aan(dir,
            "1.0\tid1\tid2\tpaper one\tpaper two\r\n\n0\tid3\tid4\t" + long_text + "\tshort\n");
  const SequenceDataset train = read_aan_tsv(dir / "new_aan_pairs.train.tsv");
  ASSERT_EQ(train.size(), 2);
  EXPECT_EQ(train.labels, (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(sequence(train, 0), std::string("paper one\0paper two", 19));
  EXPECT_EQ(sequence(train, 1), std::string(4000, 'L') + std::string(1, '\0') + "short");
  const LraData data = load_lra(options("retrieval", dir.str()));
  EXPECT_EQ(data.valid.size(), 1);
  ASSERT_EQ(data.test.size(), 2);
  EXPECT_EQ(data.test.labels, (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(sequence(data.test, 1), std::string("\0z", 2));  // an empty text1 is allowed
  const SequenceConfig c = lra_config("retrieval", data);
  EXPECT_EQ(c.max_len, 4006);
  EXPECT_EQ(c.vocab_size, 256);
  EXPECT_EQ(c.num_classes, 2);
  EXPECT_EQ(c.depth, 4);
}

TEST(Aan, MalformedLinesNameTheFileAndLine) {
  TempDir dir("lra-aan-bad");
  const std::string path = dir / "new_aan_pairs.train.tsv";
  auto error_for = [&](const std::string& second_line) {
    write_aan(dir, "1\ta\tb\tc\td\n" + second_line + "\n");
    return error_of([&] { load_aan(dir.str()); });
  };
  EXPECT_THAT(error_for("1\ta\tb\tc"), HasSubstr(path + ":2: expected 5 tab-separated fields"));
  EXPECT_THAT(error_for("1\ta\tb\tc\td\te"), HasSubstr(path + ":2: expected 5"));
  EXPECT_THAT(error_for("2\ta\tb\tc\td"), HasSubstr(path + ":2: label '2' is not 0 or 1"));
  EXPECT_THAT(error_for("yes\ta\tb\tc\td"), HasSubstr(path + ":2: label 'yes'"));
  EXPECT_THAT(error_for(std::string("0\ta\tb\tc\tnul\0here", 16)),
              HasSubstr(path + ":2: text2 holds a NUL byte"));
  EXPECT_THAT(error_for("0.0\ta\tb\tc\td"), HasSubstr("<no error>"));
  fs::remove(dir / "new_aan_pairs.eval.tsv");
  fs::remove(dir / "new_aan_pairs.test.tsv");
  const std::string e = error_of([&] { load_aan(dir.str()); });
  EXPECT_THAT(e, HasSubstr("missing new_aan_pairs.eval.tsv, new_aan_pairs.test.tsv"));
  EXPECT_THAT(e, HasSubstr("lra_release.gz"));
  EXPECT_THAT(e, HasSubstr("tsv_data"));
  EXPECT_THAT(error_of([&] { load_lra(options("retrieval")); }), HasSubstr("needs --data DIR"));
}

}  // namespace
}  // namespace kat
