// `kat lra` on the tasks beyond ListOps: a short Pathfinder run on generated images (exported in
// LRA's layout and read back), and the tasks whose data kat cannot make saying where it comes from.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "cli.h"

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
