// Text corpora for the language models and the sampler of `kat generate`.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "cli.h"
#include "kat/error.h"
#include "kat/lm.h"
#include "kat/lm_trainer.h"
#include "kat/text.h"

namespace kat {
namespace {

void write(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

TEST(Text, FortunesAreSplitAtPercentLines) {
  testing::TempDir dir("fortunes");
  write(dir / "jokes", "first\nfortune\n%\nsecond\n%\n%\nthird\n");
  const auto docs = read_documents({dir / "jokes"}, true);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0], "first\nfortune\n");
  EXPECT_EQ(docs[1], "second\n");
  EXPECT_EQ(docs[2], "third\n");
  EXPECT_EQ(read_documents({dir / "jokes"}, false).size(), 1u);  // plain text: one document
}

TEST(Text, FortuneFilesSkipIndexesAndLinks) {
  testing::TempDir dir("fortune-files");
  write(dir / "art", "a\n%\n");
  write(dir / "art.dat", std::string("\0\0\0\2", 4));
  write(dir / "science", "b\n%\n");
  std::filesystem::create_symlink(dir / "art", dir / "art.u8");
  std::filesystem::create_directory(dir / "off");
  const auto files = fortune_files(dir.str());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0], dir / "art");
  EXPECT_EQ(files[1], dir / "science");
  EXPECT_THROW(fortune_files(dir / "missing"), Error);
}

TEST(Text, SplitIsNinetyTenAndDeterministic) {
  std::vector<std::string> docs;
  for (int i = 0; i < 400; i++) docs.push_back("document " + std::to_string(i) + " text\n");
  const TextCorpus a = split_corpus(docs, 16, "test"), b = split_corpus(docs, 16, "test");
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.valid, b.valid);
  const double total = static_cast<double>(a.train.size() + a.valid.size());
  EXPECT_NEAR(a.valid.size() / total, 0.1, 0.02);
  EXPECT_EQ(a.documents, 400);
  // Every token is kept once, and documents are joined by end-of-text.
  EXPECT_EQ(static_cast<int64_t>(total), a.bytes + 399);
  int64_t eot = 0;
  for (int32_t t : a.train) eot += t == kEndOfText;
  for (int32_t t : a.valid) eot += t == kEndOfText;
  EXPECT_EQ(eot, 399);
  EXPECT_THROW(split_corpus({"tiny"}, 16, "tiny"), Error);  // too little for the context
}

TEST(Text, BinaryAndEmptyFilesAreRefused) {
  testing::TempDir dir("bad-text");
  write(dir / "empty", "");
  write(dir / "binary", std::string("ab\0cd", 5));
  write(dir / "latin1", "caf\xe9 au lait");
  write(dir / "utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  for (const char* name : {"empty", "binary", "latin1"}) {
    try {
      read_documents({dir / name}, false);
      ADD_FAILURE() << name << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(read_documents({dir / "utf8"}, false));
  EXPECT_EQ(invalid_utf8_offset("ok \xc0\xaf"), 3);       // overlong
  EXPECT_EQ(invalid_utf8_offset("\xed\x9f\xbf"), -1);     // U+D7FF
  EXPECT_EQ(invalid_utf8_offset("\xf4\x90\x80\x80"), 0);  // beyond U+10FFFF
}

TEST(Sampling, GreedyTopKAndTopPPickTheLikeliest) {
  const float logits[5] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f};
  std::vector<float> scratch;
  Rng rng(1);
  for (SamplingOptions s : {SamplingOptions{0.0f, 0, 1.0f}, SamplingOptions{1.0f, 1, 1.0f},
                            SamplingOptions{1.0f, 0, 1e-3f}})
    for (int i = 0; i < 20; i++) EXPECT_EQ(sample_token(logits, 5, s, rng, scratch), 1);
  // top-k 2 draws only the two likeliest, roughly in proportion e^2 : e^1.9.
  int counts[5] = {};
  for (int i = 0; i < 4000; i++) counts[sample_token(logits, 5, {1.0f, 2, 1.0f}, rng, scratch)]++;
  EXPECT_EQ(counts[0] + counts[2] + counts[4], 0);
  EXPECT_NEAR(counts[1] / 4000.0, std::exp(2.0) / (std::exp(2.0) + std::exp(1.9)), 0.03);
}

TEST(Sampling, FollowsTheSoftmaxAndTheSeed) {
  const float logits[3] = {0.0f, std::log(2.0f), std::log(5.0f)};  // probabilities 1:2:5
  std::vector<float> scratch;
  Rng rng(7);
  int counts[3] = {};
  const int n = 8000;
  for (int i = 0; i < n; i++) counts[sample_token(logits, 3, {1.0f, 0, 1.0f}, rng, scratch)]++;
  EXPECT_NEAR(counts[0] / double(n), 1 / 8.0, 0.015);
  EXPECT_NEAR(counts[1] / double(n), 2 / 8.0, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 5 / 8.0, 0.02);
  Rng a(3), b(3);
  for (int i = 0; i < 50; i++)
    EXPECT_EQ(sample_token(logits, 3, {0.9f, 0, 0.9f}, a, scratch),
              sample_token(logits, 3, {0.9f, 0, 0.9f}, b, scratch));
  EXPECT_THROW(validate(SamplingOptions{1.0f, 0, 0.0f}), Error);
  EXPECT_THROW(validate(SamplingOptions{1.0f, 0, 1.5f}), Error);
  EXPECT_THROW(validate(SamplingOptions{-1.0f, 0, 1.0f}), Error);
  EXPECT_THROW(validate(SamplingOptions{1.0f, -2, 1.0f}), Error);
}

}  // namespace
}  // namespace kat
