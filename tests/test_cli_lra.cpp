// `kat lra`: a short ListOps run end to end, LRA's TSV files in and out, and bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <sstream>
#include <utility>

#include "cli.h"
#include "kat/files.h"
#include "kat/listops.h"
#include "nlohmann/json.hpp"

namespace kat {
namespace {

using testing::expect_one_line_error;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::run_kat;
using testing::TempDir;

TEST(LraCli, ListOpsRunsExportsAndReadsItsOwnFiles) {
  TempDir dir("cli-lra");
  const std::string common =
      " --train-size 40 --heldout 12 --steps 4 --batch 4 --eval-every 2 --eval-limit 8 --threads 2 "
      "--progress lines --mixer linear";
  auto r = run_kat("lra listops --out " + (dir / "gen") + " --export " + (dir / "tsv") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("test accuracy"));
  EXPECT_THAT(r.output, HasSubstr("/best (step "));  // best/ is tested as well
  EXPECT_TRUE(std::filesystem::exists(dir / "gen/best/model.safetensors"));
  r = run_kat("info " + (dir / "gen/best"));  // kat info reads sequence classifiers too
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("embed.weight"));
  EXPECT_THAT(r.output, HasSubstr("kat-seq"));
  const auto train = read_listops_tsv(dir / "tsv/basic_train.tsv");
  EXPECT_EQ(train.size(), 40u);
  for (const auto& e : train) EXPECT_EQ(evaluate_listops(e.source), e.target);
  EXPECT_EQ(read_listops_tsv(dir / "tsv/basic_test.tsv").size(), 12u);
  r = run_kat("lra listops --data " + (dir / "tsv") + " --out " + (dir / "read") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("basic_train.tsv"));
  // --steps 0 with --export writes the files and trains nothing (no run directory).
  r = run_kat("lra listops --train-size 40 --heldout 12 --steps 0 --export " + (dir / "only") +
              " --out " + (dir / "none"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(read_file(dir / "only/basic_train.tsv"), read_file(dir / "tsv/basic_train.tsv"));
  EXPECT_FALSE(std::filesystem::exists(dir / "none"));
}

TEST(LraCli, ResumeContinuesExactly) {
  TempDir dir("cli-lra-resume");
  const std::string common =
      " --train-size 30 --heldout 8 --steps 6 --batch 4 --eval-every 2 --eval-limit 8 --threads 2 "
      "--progress lines";
  auto r = run_kat("lra listops --out " + (dir / "whole") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_kat("lra listops --stop-after 3 --out " + (dir / "parts") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--resume"));
  // Step 3 is between validations (every 2): the summary claims none for the final model.
  EXPECT_THAT(r.output, HasSubstr("(stopped between validations) test accuracy"));
  expect_one_line_error(run_kat("lra listops --resume " + (dir / "parts/last") + " --lr 0.1"),
                        "--lr");
  // A moved run directory goes on where it is now (given with a trailing slash, as a shell
  // completes it).
  std::filesystem::rename(dir / "parts", dir / "moved");
  const double before = testing::seconds_trained(dir / "moved/last");
  r = run_kat("lra listops --resume " + (dir / "moved/last/") + " --threads 2 --progress lines");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resuming at step 3"));
  testing::expect_clock_goes_on(dir / "moved", before);
  EXPECT_FALSE(std::filesystem::exists(dir / "parts"));
  for (const char* f : {"last/model.safetensors", "last/optimizer.safetensors"})
    EXPECT_EQ(read_file(dir / ("whole/" + std::string(f))),
              read_file(dir / ("moved/" + std::string(f))))
        << f;
  EXPECT_THAT(read_text_file(dir / "moved/metrics.jsonl"), HasSubstr("\"step\":6"));
  expect_one_line_error(run_kat("lra image --resume " + (dir / "moved/last")),
                        "is a run of the listops task");
}

// Ctrl-C (SIGINT) and `kill` (SIGTERM) stop a run at the end of its step with last/ saved and the
// test accuracy printed, and --resume goes on from that step.
TEST(LraCli, CtrlCAndSigtermSaveLastAndResume) {
  TempDir dir("cli-lra-signal");
  for (const std::string signal : {"INT", "TERM"}) {
    const std::string out = dir / signal;
    auto r = testing::signal_kat(
        "lra listops --train-size 30 --heldout 8 --steps 100000 --batch 4 "
        "--eval-every 100000 --eval-limit 8 --threads 1 --log-every 1 "
        "--progress lines --out " +
            out,
        out, signal);
    const int64_t step = testing::expect_stopped_and_saved(r, out, 100000);
    EXPECT_THAT(r.output, HasSubstr("test accuracy")) << r.output;
    r = run_kat("lra --resume " + out + "/last --stop-after " + std::to_string(step + 2) +
                " --threads 1 --progress lines");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("resuming at step " + std::to_string(step))) << r.output;
    EXPECT_THAT(r.output, HasSubstr("saved " + out + "/last at step " + std::to_string(step + 2)))
        << r.output;
  }
}

// The same signal a second time ends the run at once, here during the final test evaluation (500
// ListOps examples of the default model: about 20 s on one thread), with last/ saved before it.
TEST(LraCli, TheSameSignalTwiceEndsTheRunAtOnce) {
  TempDir dir("cli-lra-signal-twice");
  for (const std::string signal : {"INT", "TERM"}) {
    const std::string out = dir / signal;
    const auto r = testing::signal_kat(
        "lra listops --train-size 30 --heldout 500 --steps 100000 --batch 4 "
        "--eval-every 100000 --eval-limit 8 --threads 1 --log-every 1 --progress lines --out " +
            out,
        out, signal, /*twice=*/true);
    EXPECT_EQ(r.status, 128 + (signal == "INT" ? SIGINT : SIGTERM)) << r.output;
    EXPECT_THAT(r.output, HasSubstr("interrupted: saved " + out + "/last at step ")) << r.output;
    EXPECT_THAT(r.output, Not(HasSubstr("test accuracy"))) << r.output;
    EXPECT_TRUE(std::filesystem::exists(out + "/last/trainer_state.json")) << r.output;
  }
}

// A run stopped before its first step (here: what Ctrl-C during data generation leaves) holds
// nothing to lose, so the same command starts over; one with a logged step is kept.
TEST(LraCli, ARunStoppedBeforeItsFirstStepStartsOver) {
  TempDir dir("cli-lra-start-over");
  const std::string out = dir / "run";
  std::filesystem::create_directories(out);
  write_file_atomic(out + "/config.json", "{}\n");
  write_file_atomic(out + "/metrics.jsonl", "");
  const std::string args =
      "lra listops --train-size 30 --heldout 8 --steps 2 --batch 4 --eval-every 2 --eval-limit 8 "
      "--threads 1 --progress lines --out " +
      out;
  auto r = run_kat(args);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(out + "/last/trainer_state.json")) << r.output;
  expect_one_line_error(run_kat(args), "already holds a training run");
}

// --init starts a new run from a checkpoint's weights and config, with flags on top: here rotary
// positions added to a learned-position model. At a learning rate of 1e-30 no weight moves, so
// the new run's weights are the checkpoint's, byte for byte.
TEST(LraCli, InitStartsFromACheckpointsWeights) {
  TempDir dir("cli-lra-init");
  const std::string common =
      " --train-size 30 --heldout 8 --batch 4 --eval-every 2 --eval-limit 8 --threads 2 "
      "--progress lines";
  auto r = run_kat("lra listops --steps 3 --out " + (dir / "first") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_kat("lra listops --steps 2 --lr 1e-30 --positions learned+rope --init " +
              (dir / "first/last") + " --out " + (dir / "second") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("starting from the weights of"));
  EXPECT_THAT(read_text_file(dir / "second/config.json"), HasSubstr("learned+rope"));
  EXPECT_EQ(read_file(dir / "first/last/model.safetensors"),
            read_file(dir / "second/last/model.safetensors"));
  // Another shape is one clear error naming the tensor; --init does not go with --resume.
  expect_one_line_error(run_kat("lra listops --steps 2 --positions rope --init " +
                                (dir / "first/last") + " --out " + (dir / "third") + common),
                        "pos_embed");
  expect_one_line_error(run_kat("lra listops --steps 2 --end-token --init " + (dir / "first/last") +
                                " --out " + (dir / "fourth") + common),
                        "end_token");
  expect_one_line_error(
      run_kat("lra listops --resume " + (dir / "second/last") + " --init " + (dir / "first/last")),
      "--init");
  // --depth above the checkpoint's grows the model: five blocks from four, the new one an
  // identity, so (no weight moving) the grown model scores what the checkpoint scores.
  r = run_kat("lra listops --steps 2 --lr 1e-30 --depth 5 --init " + (dir / "first/last") +
              " --out " + (dir / "grown") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(read_text_file(dir / "grown/config.json")).at("depth"), 5);
  auto accuracy = [&](const std::string& checkpoint) {
    const auto e = run_kat("lra listops --steps 0 --batch 4 --threads 2 --init " + checkpoint);
    EXPECT_EQ(e.status, 0) << e.output;
    return e.output.substr(std::min(e.output.find("validation accuracy"), e.output.size()));
  };
  EXPECT_EQ(accuracy(dir / "grown/last"), accuracy(dir / "first/last"));
  expect_one_line_error(run_kat("lra listops --steps 2 --depth 3 --init " + (dir / "first/last") +
                                " --out " + (dir / "cut") + common),
                        "has 4 blocks and the model 3");
  expect_one_line_error(run_kat("lra listops --steps 2 --depth 0 --out " + (dir / "none") + common),
                        "depth 0");
}

// --init CKPT --steps 0 trains nothing and writes nothing: it prints the checkpoint's accuracy on
// the task's splits, the figures the run printed for that checkpoint when the data, batch and
// validation limit are the same; and on another seed's data.
TEST(LraCli, StepsZeroWithInitEvaluatesACheckpoint) {
  TempDir dir("cli-lra-eval");
  const std::string data = " --train-size 40 --heldout 12 --batch 4 --eval-limit 8 --threads 2";
  auto r = run_kat("lra listops --steps 4 --eval-every 2 --progress lines --mixer linear --out " +
                   (dir / "run") + data);
  ASSERT_EQ(r.status, 0) << r.output;
  // "validation accuracy V%" and "test accuracy T%" on the line that holds `marker`.
  auto figures = [&](const std::string& marker) {
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
      if (line.find(marker) == std::string::npos) continue;
      auto figure = [&](const std::string& name) {
        const size_t at = line.find(name + " accuracy ");
        if (at == std::string::npos) return std::string("(none)");
        const size_t from = at + name.size() + 10;
        return line.substr(from, line.find('%', from) - from);
      };
      return std::pair{figure("validation"), figure("test")};
    }
    ADD_FAILURE() << "no line with '" << marker << "' in\n" << r.output;
    return std::pair{std::string(), std::string()};
  };
  const auto last = figures("% after "), best = figures("/best (step ");
  // The data is the one the run recorded (seed, sizes, --eval-limit) unless flags change it.
  const std::string eval_flags = " --batch 4 --threads 2";
  for (const auto& [checkpoint, m] : {std::pair{"last", last}, std::pair{"best", best}}) {
    r = run_kat("lra listops --steps 0 --init " + (dir / ("run/" + std::string(checkpoint))) +
                eval_flags);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_THAT(r.output,
                HasSubstr("validation accuracy " + m.first + "% (8 sequences), test accuracy " +
                          m.second + "% (12 sequences)"))
        << checkpoint;
  }
  r = run_kat("lra listops --steps 0 --init " + (dir / "run/best") + eval_flags + " --seed 1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("generated ListOps (seed 1"));
  EXPECT_THAT(r.output, HasSubstr("(8 sequences), test accuracy"));
  EXPECT_THAT(r.output, HasSubstr("(12 sequences)"));
  r = run_kat("lra listops --steps 0 --init " + (dir / "run/best") + eval_flags + " --heldout 6");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("(6 sequences)\n"));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.str()),
                          std::filesystem::directory_iterator{}),
            1);  // run/ alone: evaluating wrote nothing
  // The model is the checkpoint's and nothing trains: model and training flags are errors.
  for (const std::string flag : {"--mixer", "--depth", "--lr", "--out"})
    expect_one_line_error(
        run_kat("lra listops --steps 0 --init " + (dir / "run/best") + data + " " + flag + " 1"),
        flag);
  expect_one_line_error(run_kat("lra listops --steps 0" + data), "--init");
  expect_one_line_error(run_kat("lra pathfinder --steps 0 --init " + (dir / "run/best")),
                        "is a model of the listops task, not of pathfinder");
  // The commands of the other models point to it.
  for (const char* command : {"eval ", "generate ", "eval-lm "})
    expect_one_line_error(run_kat(command + (dir / "run/best")), "--steps 0");
  expect_one_line_error(run_kat("predict " + (dir / "run/best") + " x.png"), "--steps 0");
}

// A length curriculum: a rotary model trained on short generated expressions, then a run on LRA's
// lengths from its weights (its max_len follows the data: no weight depends on it).
TEST(LraCli, LengthCurriculumStartsOnShortExpressions) {
  TempDir dir("cli-lra-lengths");
  const std::string common =
      " --train-size 30 --heldout 8 --batch 4 --eval-every 2 --eval-limit 8 --threads 2 "
      "--progress lines --positions rope";
  auto r = run_kat("lra listops --steps 2 --min-length 10 --max-length 40 --export " +
                   (dir / "short") + " --out " + (dir / "first") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("generated ListOps (seed 0, lengths 11-39)"));
  for (const char* split : {"train", "val", "test"})
    for (const auto& e : read_listops_tsv(dir / ("short/basic_" + std::string(split) + ".tsv"))) {
      const auto n = tokenize_listops(e.source, split).size();
      EXPECT_TRUE(n > 10 && n < 40) << split << ": " << n << " tokens";
    }
  const auto state = nlohmann::json::parse(read_text_file(dir / "first/last/trainer_state.json"));
  EXPECT_EQ(state.at("options").at("max_length"), 40);
  EXPECT_FALSE(state.at("options").contains("contour_dashes"));  // Pathfinder's rules
  r = run_kat("lra listops --steps 2 --init " + (dir / "first/last") + " --out " +
              (dir / "second") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("generated ListOps (seed 0) (up to"));
  EXPECT_GT(nlohmann::json::parse(read_text_file(dir / "second/config.json")).at("max_len"), 500);
  expect_one_line_error(run_kat("lra listops --min-length 10 --max-length 11"), "no length");
  expect_one_line_error(run_kat("lra image --max-length 100"), "generated ListOps");
  expect_one_line_error(run_kat("lra listops --min-length 10 --data " + (dir / "short")), "--data");
}

TEST(LraCli, BadInputIsOneClearError) {
  TempDir dir("cli-lra-bad");
  expect_one_line_error(run_kat("lra pathx"), "pathx");
  expect_one_line_error(run_kat("lra listops --data " + (dir / "none")), "basic_train.tsv");
  // Options are checked before the data is read.
  expect_one_line_error(run_kat("lra listops --steps 0 --data " + (dir / "none")), "--export");
  expect_one_line_error(run_kat("lra listops --train-size 8 --heldout 4 --mixer local"), "window");
  write_file_atomic(dir / "basic_train.tsv", "Source\tTarget\n[MAX 1 2 ]\t2\n[MIN 3 ]\tx\n");
  expect_one_line_error(run_kat("lra listops --data " + dir.str()), "basic_train.tsv:3");
}

}  // namespace
}  // namespace kat
