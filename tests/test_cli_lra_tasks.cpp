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
  expect_one_line_error(run_kat("lra listops --distractors 1"), "generated Pathfinder");
  expect_one_line_error(run_kat("lra pathfinder --data " + dir.str() + " --contour-dashes 3"),
                        "--data reads its files as they are");
  expect_one_line_error(run_kat("lra pathfinder --contour-dashes 1"), "at least 2");
  expect_one_line_error(run_kat("lra pathfinder --distractors -1"), "not negative");
  expect_one_line_error(run_kat("lra --resume " + (dir / "easy/last") + " --distractors 0"),
                        "--resume continues a run as it was started");
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
