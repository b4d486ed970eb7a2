// The `kat` command as a user meets it: end-to-end training, exact resume, and every kind of bad
// input answered with one "kat: error:" line that names the problem and a non-zero exit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "kat/data.h"
#include "kat/files.h"
#include "kat/safetensors.h"

namespace kat {
namespace {

namespace fs = std::filesystem;
using testing::expect_one_line_error;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::run_kat;
using testing::TempDir;

// A KAT small enough that a CLI test trains it in seconds, in the config.json format.
constexpr const char* kTinyConfig = R"({
  "architecture": "kat_cli_test",
  "model_args": {"img_size": 28, "patch_size": 7, "in_chans": 1, "embed_dim": 32, "depth": 2,
                 "num_heads": 2, "mlp_ratio": 2, "num_classes": 10, "rational_groups": 4},
  "pretrained_cfg": {"mean": [0.286], "std": [0.353]}
})";

bool have_fmnist() {
  return fs::exists(std::string(default_data_dir()) + "/train-images-idx3-ubyte.gz");
}

#define REQUIRE_FMNIST()                                                                       \
  if (!have_fmnist())                                                                          \
  GTEST_SKIP() << "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist, or " \
                  "run scripts/test, which does)"

std::string write_config(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir / name;
  write_file_atomic(path, text);
  return path;
}

// The arguments that train the tiny model into `out`; extra flags appended.
std::string tiny_args(const TempDir& dir, const std::string& out, const std::string& extra) {
  const std::string cfg = write_config(dir, "tiny.json", kTinyConfig);
  return "train --config " + cfg + " --out " + out +
         " --threads 2 --progress lines --log-every 10 " + extra;
}

// Trains the tiny model into `out`.
testing::RunResult train_tiny(const TempDir& dir, const std::string& out,
                              const std::string& extra) {
  return run_kat(tiny_args(dir, out, extra));
}

// One small checkpoint shared by the tests that only read it.
class CheckpointTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_fmnist()) return;
    dir_ = new TempDir("cli-ckpt");
    const auto r = train_tiny(*dir_, *dir_ / "run",
                              "--epochs 1 --batch 32 --train-limit 640 --test-limit 100");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string ckpt() { return *dir_ / "run/last"; }
  // A copy of the checkpoint whose model.safetensors is `edit`ed (tensor map in, map out).
  static std::string edited(
      const std::string& name,
      const std::function<void(std::map<std::string, std::vector<float>>&,
                               std::map<std::string, std::vector<int64_t>>&)>& edit) {
    const std::string out = *dir_ / name;
    fs::create_directories(out);
    fs::copy_file(ckpt() + "/config.json", out + "/config.json",
                  fs::copy_options::overwrite_existing);
    const auto f = SafetensorsFile::load(ckpt() + "/model.safetensors");
    std::map<std::string, std::vector<float>> values;
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& n : f.names()) values[n] = f.read_f32(n), shapes[n] = f.info(n).shape;
    edit(values, shapes);
    std::vector<TensorRef> refs;
    for (const auto& [n, v] : values) refs.push_back({n, shapes[n], v.data()});
    save_safetensors(out + "/model.safetensors", refs);
    return out;
  }
  static TempDir* dir_;
};
TempDir* CheckpointTest::dir_ = nullptr;

TEST(Cli, UsageAndUnknownInput) {
  auto r = run_kat("");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.output, HasSubstr("usage: kat <command>"));
  expect_one_line_error(run_kat("frobnicate"), "unknown command 'frobnicate'");
  expect_one_line_error(run_kat("train --bogus 3"), "--bogus");
  expect_one_line_error(run_kat("train --epochs"), "--epochs");
  expect_one_line_error(run_kat("train --epochs many"), "many");
  expect_one_line_error(run_kat("train --model resnet"), "resnet");
  expect_one_line_error(run_kat("train --config no_such_config"), "no_such_config");
  for (const char* cmd : {"train", "eval", "predict", "info", "fit-rational", "configs"}) {
    r = run_kat(std::string(cmd) + " --help");
    EXPECT_EQ(r.status, 0) << cmd;
    EXPECT_THAT(r.output, HasSubstr("usage: kat")) << cmd;
  }
}

TEST(Cli, MissingDatasetNamesTheDirectory) {
  TempDir dir("cli-nodata");
  expect_one_line_error(run_kat("train --data " + (dir / "nowhere") + " --out " + (dir / "run")),
                        dir / "nowhere");
  fs::create_directories(dir / "empty");
  expect_one_line_error(run_kat("train --data " + (dir / "empty") + " --out " + (dir / "run")),
                        "train-images");
}

TEST(Cli, BadConfigFilesAreRefused) {
  TempDir dir("cli-config");
  std::string text = kTinyConfig;
  text.replace(text.find("\"depth\""), 7, "\"depht\"");
  expect_one_line_error(run_kat("train --config " + write_config(dir, "typo.json", text)), "depht");
  text = kTinyConfig;
  text.replace(text.find("\"rational_groups\": 4"), 20, "\"rational_groups\": 3");
  expect_one_line_error(run_kat("train --config " + write_config(dir, "groups.json", text)),
                        "group");
  expect_one_line_error(
      run_kat("train --config " + write_config(dir, "bad.json", "{\"model_args\"")), "bad.json");
  expect_one_line_error(run_kat("train --config " + (dir / "missing.json")), "missing.json");
}

TEST(Cli, EndToEndTrainingLearnsAndRefusesToOverwrite) {
  REQUIRE_FMNIST();
  TempDir dir("cli-e2e");
  // 300 steps of 32 on 4800 images: chance is ln 10 = 2.30.
  auto r = train_tiny(dir, dir / "run",
                      "--epochs 2 --batch 32 --lr 5e-3 --warmup 0.2 --train-limit 4800 "
                      "--test-limit 1000");
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream metrics(dir / "run/metrics.jsonl");
  double last_loss = 0, test_acc = 0;
  int steps = 0;
  for (std::string line; std::getline(metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["kind"] == "step") last_loss = j["loss"], steps = j["step"];
    if (j["kind"] == "epoch") test_acc = j["test_acc"];
  }
  EXPECT_EQ(steps, 300);
  // Chance is a loss of ln 10 = 2.30 and 10% accuracy.
  EXPECT_LT(last_loss, 0.7 * std::log(10.0)) << "training loss did not fall well below chance";
  EXPECT_GT(test_acc, 0.4);
  for (const char* f : {"last/model.safetensors", "last/config.json", "last/optimizer.safetensors",
                        "last/trainer_state.json", "best/model.safetensors", "config.json"})
    EXPECT_TRUE(fs::exists(dir / ("run/" + std::string(f)))) << f;
  // The run directory is not overwritten unless asked.
  const auto before = read_file(dir / "run/last/model.safetensors");
  r = train_tiny(dir, dir / "run", "--epochs 1 --batch 32 --train-limit 320");
  expect_one_line_error(r, "--overwrite");
  EXPECT_EQ(read_file(dir / "run/last/model.safetensors"), before);
  r = train_tiny(dir, dir / "run", "--epochs 1 --batch 32 --train-limit 320 --overwrite");
  EXPECT_EQ(r.status, 0) << r.output;
}

// `kill` (SIGTERM, as job schedulers stop a job) stops `kat train` as Ctrl-C does: last/ saved.
TEST(Cli, SigtermSavesLast) {
  REQUIRE_FMNIST();
  TempDir dir("cli-sigterm");
  const std::string out = dir / "run";
  const auto r = testing::signal_kat(
      tiny_args(dir, out, "--epochs 50 --batch 32 --train-limit 1024 --test-limit 100"), out,
      "TERM");
  testing::expect_stopped_and_saved(r, out, 50 * 1024 / 32);
}

TEST(Cli, ResumeContinuesExactly) {
  REQUIRE_FMNIST();
  TempDir dir("cli-resume");
  const std::string common = "--epochs 2 --batch 32 --train-limit 1024 --test-limit 200";
  auto r = train_tiny(dir, dir / "whole", common);
  ASSERT_EQ(r.status, 0) << r.output;
  // Stop in the middle of the second epoch, then resume.
  r = train_tiny(dir, dir / "split", common + " --stop-after 45");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("at step 45"));
  const double before = testing::seconds_trained(dir / "split/last");
  r = run_kat("train --resume " + (dir / "split/last") + " --threads 2 --progress lines");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resuming at step 45"));
  testing::expect_clock_goes_on(dir / "split", before);
  for (const char* f : {"last/model.safetensors", "last/optimizer.safetensors"})
    EXPECT_EQ(read_file(dir / ("whole/" + std::string(f))),
              read_file(dir / ("split/" + std::string(f))))
        << f << " differs between the whole run and the resumed one";
  expect_one_line_error(run_kat("train --resume " + (dir / "nothing")), "nothing");
  // A flag the resumed run would not use is refused, not dropped.
  for (const char* flag : {"--lr 0.5", "--mixer linear", "--depth 3", "--batch 16", "--overwrite"})
    expect_one_line_error(run_kat("train --resume " + (dir / "split/last") + " " + flag),
                          "cannot change it");
}

TEST(Cli, DepthSetsTheNumberOfBlocks) {
  REQUIRE_FMNIST();
  TempDir dir("cli-depth");
  auto r = train_tiny(dir, dir / "run",
                      "--depth 3 --epochs 1 --batch 32 --train-limit 64 "
                      "--test-limit 32");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto config = nlohmann::json::parse(read_text_file(dir / "run/last/config.json"));
  EXPECT_EQ(config["model_args"]["depth"], 3);  // the tiny config's is 2
  r = run_kat("info " + (dir / "run/last"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("blocks.2.mlp.act2.weight_denominator"));
  EXPECT_THAT(r.output, Not(HasSubstr("blocks.3.")));
  expect_one_line_error(train_tiny(dir, dir / "none", "--depth 0"), "depth 0");
}

TEST_F(CheckpointTest, EvalInfoAndPredict) {
  REQUIRE_FMNIST();
  auto r = run_kat("eval " + ckpt() + " --limit 200");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("accuracy"));
  EXPECT_THAT(r.output, HasSubstr("Ankle boot"));  // confusion matrix rows carry class names
  r = run_kat("info " + ckpt());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("blocks.1.mlp.act2.weight_denominator"));
  EXPECT_THAT(r.output, HasSubstr("GR-KAN rational"));
  // A test image written as PGM at another size: predict resizes it.
  const ImageDataset test = load_idx_split(default_data_dir(), Split::Test);
  std::string pgm = "P5\n56 56\n255\n";
  for (int y = 0; y < 56; y++)
    for (int x = 0; x < 56; x++) pgm += static_cast<char>(test.pixels[(y / 2) * 28 + x / 2]);
  const std::string image = *dir_ / "sample.pgm";
  write_file_atomic(image, pgm);
  r = run_kat("predict " + ckpt() + " " + image);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("%"));
  write_file_atomic(*dir_ / "broken.png", "this is not a png");
  expect_one_line_error(run_kat("predict " + ckpt() + " " + (*dir_ / "broken.png")), "broken.png");
  expect_one_line_error(run_kat("predict " + ckpt() + " " + (*dir_ / "absent.png")), "absent.png");
}

TEST_F(CheckpointTest, CorruptCheckpointsAreRefused) {
  REQUIRE_FMNIST();
  expect_one_line_error(run_kat("eval " + (*dir_ / "no_such_ckpt")), "no_such_ckpt");
  {  // truncated weights
    const std::string d = edited("truncated", [](auto&, auto&) {});
    auto bytes = read_file(d + "/model.safetensors");
    bytes.resize(bytes.size() / 2);
    write_file_atomic(d + "/model.safetensors",
                      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    expect_one_line_error(run_kat("eval " + d), "model.safetensors");
  }
  expect_one_line_error(
      run_kat("info " + edited("missing", [](auto& v, auto&) { v.erase("head.bias"); })),
      "missing tensor 'head.bias'");
  expect_one_line_error(run_kat("info " + edited("extra",
                                                 [](auto& v, auto& s) {
                                                   v["blocks.9.extra"] = {1.0f};
                                                   s["blocks.9.extra"] = {1};
                                                 })),
                        "unexpected tensor 'blocks.9.extra'");
  expect_one_line_error(run_kat("info " + edited("shape",
                                                 [](auto& v, auto& s) {
                                                   v["head.bias"].push_back(0.0f);
                                                   s["head.bias"] = {11};
                                                 })),
                        "'head.bias' has shape [11], expected [10]");
  {  // config.json with an unknown key
    const std::string d = edited("badconfig", [](auto&, auto&) {});
    std::string cfg = read_text_file(d + "/config.json");
    cfg.insert(cfg.find('{') + 1, "\"colour\": \"blue\",");
    write_file_atomic(d + "/config.json", cfg);
    expect_one_line_error(run_kat("info " + d), "colour");
  }
}

}  // namespace
}  // namespace kat
