// `kat train-lm`, `kat generate` and `kat eval-lm` as a user meets them: a tiny model learns a
// small text, generation is reproducible, resume is exact, and bad input is one clear error line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "kat/files.h"

namespace kat {
namespace {

using testing::expect_one_line_error;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::run_kat;
using testing::TempDir;

// Text with structure a tiny model picks up in a few hundred steps.
std::string sample_text() {
  const char* words[] = {"kat", "trains", "rational", "functions", "on", "the", "cpu"};
  std::string s;
  for (int i = 0; i < 3000; i++) {
    s += words[i % 7];
    s += (i % 7 == 6) ? ".\n" : " ";
  }
  return s;
}

class LmCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("cli-lm");
    write_file_atomic(*dir_ / "tiny.json", testing::kTinyLmConfig);
    write_file_atomic(*dir_ / "text.txt", sample_text());
    const auto r = train("run", "--steps 300 --eval-every 100");
    ASSERT_EQ(r.status, 0) << r.output;
    first_output_ = r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string train_args(const std::string& out, const std::string& extra) {
    return "train-lm --config " + (*dir_ / "tiny.json") + " --text " + (*dir_ / "text.txt") +
           " --out " + (*dir_ / out) +
           " --batch 8 --lr 3e-3 --warmup 20 --threads 2 --progress lines " + extra;
  }
  static testing::RunResult train(const std::string& out, const std::string& extra) {
    return run_kat(train_args(out, extra));
  }
  static std::string ckpt() { return *dir_ / "run/last"; }
  static TempDir* dir_;
  static std::string first_output_;
};
TempDir* LmCliTest::dir_ = nullptr;
std::string LmCliTest::first_output_;

TEST_F(LmCliTest, TrainingLearnsTheText) {
  // Uniform over 257 symbols is 8.0 bits; a repeated sentence is far below after 300 steps.
  const std::string& out = first_output_;
  const size_t at = out.find("final validation ");
  ASSERT_NE(at, std::string::npos) << out;
  const double bpb = std::stod(out.substr(at + 17));
  EXPECT_LT(bpb, 1.5) << out;
  EXPECT_TRUE(std::filesystem::exists(*dir_ / "run/metrics.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(*dir_ / "run/best/model.safetensors"));
}

TEST_F(LmCliTest, GenerateIsReproducibleAndEvalReportsBitsPerByte) {
  const std::string gen = "generate " + ckpt() + " --prompt 'kat trains' --tokens 40 --seed 5";
  const auto a = run_kat(gen), b = run_kat(gen);
  ASSERT_EQ(a.status, 0) << a.output;
  EXPECT_THAT(a.output, HasSubstr("kat trains"));
  EXPECT_THAT(a.output, HasSubstr("tokens/s"));
  const auto strip = [](const std::string& s) { return s.substr(0, s.find("generated ")); };
  EXPECT_EQ(strip(a.output), strip(b.output));
  const auto greedy =
      run_kat("generate " + ckpt() + " --prompt 'rational ' --tokens 9 " + "--temperature 0");
  ASSERT_EQ(greedy.status, 0) << greedy.output;
  EXPECT_THAT(greedy.output, HasSubstr("rational functions")) << greedy.output;
  // Past the 32-token context the cache restarts from the last half and generation goes on.
  const auto long_run = run_kat("generate " + ckpt() + " --tokens 100 --temperature 0");
  ASSERT_EQ(long_run.status, 0) << long_run.output;
  EXPECT_THAT(long_run.output, HasSubstr("generated 100 tokens"));
  const auto e = run_kat("eval-lm " + ckpt() + " --text " + (*dir_ / "text.txt"));
  ASSERT_EQ(e.status, 0) << e.output;
  EXPECT_THAT(e.output, HasSubstr("bits/byte"));
  EXPECT_THAT(e.output, HasSubstr("perplexity"));
  const auto info = run_kat("info " + ckpt());
  ASSERT_EQ(info.status, 0) << info.output;
  EXPECT_THAT(info.output, HasSubstr("h.1.mlp.act2.weight_denominator"));
}

TEST_F(LmCliTest, ResumeContinuesExactly) {
  auto r = train("whole", "--steps 30 --eval-every 20");
  ASSERT_EQ(r.status, 0) << r.output;
  r = train("split", "--steps 30 --eval-every 20 --stop-after 13");
  ASSERT_EQ(r.status, 0) << r.output;
  const double before = testing::seconds_trained(*dir_ / "split/last");
  r = run_kat("train-lm --resume " + (*dir_ / "split/last") + " --threads 2 --progress lines");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resuming at step 13"));
  testing::expect_clock_goes_on(*dir_ / "split", before);
  for (const char* f : {"last/model.safetensors", "last/optimizer.safetensors"})
    EXPECT_EQ(read_file(*dir_ / ("whole/" + std::string(f))),
              read_file(*dir_ / ("split/" + std::string(f))))
        << f;
  // A flag the resumed run would not use is refused, not dropped.
  for (const char* flag : {"--lr 0.1", "--depth 3", "--context 16", "--text /etc/hostname"})
    expect_one_line_error(run_kat("train-lm --resume " + (*dir_ / "split/last") + " " + flag),
                          "cannot change it");
}

// `kill` (SIGTERM) stops `kat train-lm` as Ctrl-C does: last/ saved.
TEST_F(LmCliTest, SigtermSavesLast) {
  const std::string out = *dir_ / "sigterm";
  const auto r = testing::signal_kat(
      train_args("sigterm", "--steps 100000 --eval-every 100000 --log-every 1"), out, "TERM");
  testing::expect_stopped_and_saved(r, out, 100000);
}

TEST_F(LmCliTest, DepthSetsTheNumberOfBlocks) {
  auto r = train("deep", "--steps 2 --eval-every 2 --depth 3");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto config = nlohmann::json::parse(read_text_file(*dir_ / "deep/last/config.json"));
  EXPECT_EQ(config["n_layer"], 3);
  r = run_kat("info " + (*dir_ / "deep/last"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("h.2.mlp.act2.weight_denominator"));
  EXPECT_THAT(r.output, Not(HasSubstr("h.3.")));
  expect_one_line_error(train("none", "--depth 0"), "n_layer 0");
}

TEST_F(LmCliTest, BadInputIsOneClearError) {
  write_file_atomic(*dir_ / "empty.txt", "");
  write_file_atomic(*dir_ / "garbage.bin", std::string("\x7f"
                                                       "ELF\0\0\x01\xff\xfe",
                                                       9));
  expect_one_line_error(train("e", "--text " + (*dir_ / "empty.txt")), "empty.txt");
  expect_one_line_error(train("g", "--text " + (*dir_ / "garbage.bin")), "garbage.bin");
  expect_one_line_error(train("m", "--text " + (*dir_ / "absent.txt")), "absent.txt");
  expect_one_line_error(run_kat("eval-lm " + ckpt() + " --context 64"), "supports (32 tokens)");
  expect_one_line_error(run_kat("generate " + ckpt() + " --prompt " + std::string(40, 'a')),
                        "longer than the model's context of 32");
  expect_one_line_error(run_kat("generate " + ckpt() + " --top-p 0"), "--top-p");
  expect_one_line_error(run_kat("generate " + ckpt() + " --top-p 1.5"), "--top-p");
  expect_one_line_error(run_kat("generate " + (*dir_ / "nothing")), "nothing");
  expect_one_line_error(run_kat("train-lm --config gpt_big"), "gpt_big");
  expect_one_line_error(train("run", "--steps 2"), "already holds");
}

}  // namespace
}  // namespace kat
