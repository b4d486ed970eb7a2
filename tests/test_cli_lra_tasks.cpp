// `kat lra` on the tasks beyond ListOps: a short Pathfinder run on generated images (exported in
// LRA's layout and read back), and the tasks whose data kat cannot make saying where it comes from.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "cli.h"
#include "kat/files.h"

namespace kat {
namespace {

using testing::expect_one_line_error;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::run_kat;
using testing::TempDir;

TEST(LraTasksCli, PathfinderRunsOnGeneratedImagesAndItsExport) {
  TempDir dir("cli-lra-pathfinder");
  const std::string common =
      " --steps 2 --batch 4 --eval-every 2 --eval-limit 8 --threads 2 --progress lines";
  auto r = run_kat("lra pathfinder --train-size 40 --heldout 8 --out " + (dir / "gen") +
                   " --export " + (dir / "lra") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("generated Pathfinder (seed 0)"));
  EXPECT_THAT(r.output, HasSubstr("up to 1024 tokens"));
  EXPECT_THAT(r.output, HasSubstr("test accuracy"));
  EXPECT_TRUE(std::filesystem::exists(dir / "gen/best/model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir / "lra/metadata/0.npy"));
  EXPECT_TRUE(std::filesystem::exists(dir / "lra/imgs/0/sample_55.png"));  // 40 + 8 + 8 images
  r = run_kat("lra pathfinder --data " + (dir / "lra") + " --out " + (dir / "read") + common);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("on 45 sequences of " + (dir / "lra")));  // 80% of 56
}

// An easier Pathfinder for a curriculum's first stage: the run states the rules, and a resumed run
// generates the same images (its start line names them again).
TEST(LraTasksCli, PathfinderDifficultyIsAnOptionThatResumeKeeps) {
  TempDir dir("cli-lra-pathfinder-rules");
  const std::string common =
      " --batch 4 --eval-every 2 --eval-limit 8 --threads 2 --progress lines --train-size 40 "
      "--heldout 8";
  auto r = run_kat("lra pathfinder --contour-dashes 2 --distractors 0 --steps 2 --stop-after 1" +
                   common + " --out " + (dir / "easy"));
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string source = "generated Pathfinder (seed 0, contours of 2 dashes, 0 distractors)";
  EXPECT_THAT(r.output, HasSubstr(source));
  r = run_kat("lra --resume " + (dir / "easy/last") + " --threads 2 --progress lines");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(source));
  // Evaluating the checkpoint uses its run's images too (no training images are made for it).
  r = run_kat("lra pathfinder --steps 0 --init " + (dir / "easy/last") + " --threads 2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("data:            " + source));
  EXPECT_THAT(r.output, HasSubstr("(8 sequences), test accuracy"));
  // Rotary positions by row and column: the images' width, and RoPE-ViT's base unless given.
  r = run_kat("lra pathfinder --positions rope2d --steps 1" + common + " --out " + (dir / "2d"));
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string config = read_text_file(dir / "2d/config.json");
  EXPECT_THAT(config, HasSubstr("\"grid_width\": 32"));
  EXPECT_THAT(config, HasSubstr("\"rope_theta\": 100.0"));
  expect_one_line_error(
      run_kat("lra listops --positions rope2d --steps 1 --train-size 8 --heldout 4"),
      "image tasks");
  // MAE's 2D sine-cosine table as pos_embed's start: the images' width too.
  r = run_kat("lra pathfinder --positions sincos2d --steps 1" + common + " --out " + (dir / "sc"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(read_text_file(dir / "sc/config.json"), HasSubstr("\"grid_width\": 32"));
  expect_one_line_error(
      run_kat("lra listops --positions sincos2d --steps 1 --train-size 8 --heldout 4"),
      "image tasks");
  expect_one_line_error(run_kat("lra listops --distractors 1"), "generated Pathfinder");
  expect_one_line_error(run_kat("lra pathfinder --data " + dir.str() + " --contour-dashes 3"),
                        "--data reads its files as they are");
  expect_one_line_error(run_kat("lra pathfinder --contour-dashes 1"), "at least 2");
  expect_one_line_error(run_kat("lra pathfinder --distractors -1"), "not negative");
  expect_one_line_error(run_kat("lra --resume " + (dir / "easy/last") + " --distractors 0"),
                        "--resume continues a run as it was started");
}

// Self-pretraining: a run that predicts hidden pixels (--pretrain), resumed as it was started,
// evaluated on the same fixed masks, then a classifier started from its weights without its head.
TEST(LraTasksCli, PretrainingThenAClassifierFromIt) {
  TempDir dir("cli-lra-pretrain");
  const std::string common =
      " --batch 4 --eval-every 2 --eval-limit 8 --threads 2 --progress lines --train-size 40 "
      "--heldout 8";
  auto r = run_kat(
      "lra pathfinder --mixer linear --pretrain --mask-ratio 0.3 --steps 4 "
      "--stop-after 2" +
      common + " --out " + (dir / "pre"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("kat: pretraining kat_lra_pathfinder_linear"));
  EXPECT_THAT(r.output, HasSubstr("predicting the 30% of the tokens each step hides"));
  EXPECT_THAT(r.output, HasSubstr("step 2: validation masked-token accuracy"));
  EXPECT_THAT(read_text_file(dir / "pre/config.json"), HasSubstr("\"masked_head\": true"));
  r = run_kat("lra --resume " + (dir / "pre/last") + " --threads 2 --progress lines");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("(resuming at step 2)"));
  // "hidden tokens (30.00%): validation accuracy V%, test accuracy T% after 4 steps"
  const size_t at = r.output.find("hidden tokens (30.00%): validation accuracy ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const std::string line = r.output.substr(at, r.output.find('\n', at) - at);
  const std::string valid = line.substr(44, line.find('%', 44) - 44);
  const size_t t = line.find("test accuracy ") + 14;
  const std::string test = line.substr(t, line.find('%', t) - t);
  // Evaluating the checkpoint hides the same pixels of the same images: the same figures.
  r = run_kat("lra pathfinder --steps 0 --init " + (dir / "pre/last") + " --batch 4 --threads 2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("hidden tokens (30.00%): validation accuracy " + valid +
                                  "% (8 sequences), test accuracy " + test + "% (8 sequences)"));
  // Its report says what it is rather than scoring an untrained classification head.
  r = run_kat("report " + (dir / "pre") + " --out " + (dir / "pre.html"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(read_text_file(dir / "pre.html"), HasSubstr("A self-pretraining checkpoint"));
  EXPECT_THAT(read_text_file(dir / "pre.html"), Not(HasSubstr("Confusion matrix")));
  // A classifier from it: the same weights but the masked-token head's, the labels trained.
  r = run_kat("lra pathfinder --init " + (dir / "pre/last") + " --steps 2" + common + " --out " +
              (dir / "cls"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("kat: training kat_lra_pathfinder_linear"));
  EXPECT_THAT(r.output, HasSubstr("step 2: validation accuracy"));
  EXPECT_EQ(read_text_file(dir / "cls/config.json").find("masked_head"), std::string::npos);
  EXPECT_THAT(read_text_file(dir / "cls/last/trainer_state.json"), Not(HasSubstr("mask_ratio")));
  // A classifier evaluates its labels; --mask-ratio belongs to pretraining.
  r = run_kat("lra pathfinder --steps 0 --init " + (dir / "cls/last") + " --threads 2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("hidden tokens")));
  expect_one_line_error(run_kat("lra pathfinder --mask-ratio 0.3 --steps 1"), "--pretrain");
  expect_one_line_error(
      run_kat("lra pathfinder --steps 0 --init " + (dir / "cls/last") + " --mask-ratio 0.3"),
      "--pretrain");
  expect_one_line_error(run_kat("lra pathfinder --pretrain --mask-ratio 1 --steps 1"), "(0, 1)");
  expect_one_line_error(run_kat("lra --resume " + (dir / "pre/last") + " --pretrain"),
                        "cannot change it");
}

TEST(LraTasksCli, TasksWithoutDataSayWhereItComesFrom) {
  TempDir dir("cli-lra-tasks");
  expect_one_line_error(run_kat("lra text"), "aclImdb_v1.tar.gz");
  expect_one_line_error(run_kat("lra text --data " + (dir / "none")), "no such directory");
  expect_one_line_error(run_kat("lra retrieval"), "tsv_data");
  expect_one_line_error(run_kat("lra retrieval --data " + dir.str()), "new_aan_pairs.train.tsv");
  expect_one_line_error(run_kat("lra pathfinder --data " + dir.str()), "metadata/");
  expect_one_line_error(run_kat("lra pathx"), "pathfinder");
  const auto help = run_kat("lra --help");
  for (const char* task : {"listops", "text", "retrieval", "image", "pathfinder"})
    EXPECT_THAT(help.output, HasSubstr(std::string("  ") + task + " ")) << task;
}

}  // namespace
}  // namespace kat
