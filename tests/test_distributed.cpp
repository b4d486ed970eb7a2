// Data-parallel training under mpirun (kat/distributed.h), end to end through the `kat` binary on
// loopback: 2 ranks train the weights 1 rank trains with the doubled batch, checkpoints move
// between rank counts, and a dead or stopped rank ends the job with an error instead of a hang.
// Skipped, saying why, when mpirun is missing or kat was built without MPI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "cli.h"
#include "kat/files.h"
#include "kat/safetensors.h"

namespace kat {
namespace {

using ::testing::AnyOf;
using testing::expect_one_line_error;
using ::testing::HasSubstr;
using testing::run_command;
using testing::run_kat;
using testing::RunResult;
using testing::TempDir;
namespace fs = std::filesystem;

// Why these tests cannot run here, or "" when they can.
std::string mpi_missing() {
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0)
    return "mpirun is not installed (Debian: openmpi-bin)";
  if (run_kat("--version").output.find("with MPI") == std::string::npos)
    return "this kat was built without MPI (Debian: libopenmpi-dev)";
  return "";
}

// `mpirun -np N kat ARGS` on loopback, one thread per rank, whatever the core count and user.
std::string mpirun_command(int ranks, const std::string& args, const std::string& env = "") {
  std::string cmd = "env ASAN_OPTIONS=detect_leaks=0 OMPI_MCA_btl_tcp_if_include=lo ";
  cmd += "OMPI_MCA_oob_tcp_if_include=lo " + env + " mpirun --oversubscribe --bind-to none ";
  if (::geteuid() == 0) cmd += "--allow-run-as-root ";
  return cmd + "-np " + std::to_string(ranks) + " " + KAT_BINARY_PATH + " " + args + " 2>&1";
}

RunResult run_mpi(int ranks, const std::string& args, const std::string& env = "") {
  return run_command(mpirun_command(ranks, args, env));
}

// Largest |a - b| over the tensors of two checkpoints, which must hold the same names.
float max_weight_difference(const std::string& a_dir, const std::string& b_dir) {
  const auto a = SafetensorsFile::load(a_dir + "/model.safetensors");
  const auto b = SafetensorsFile::load(b_dir + "/model.safetensors");
  EXPECT_EQ(a.names(), b.names());
  float worst = 0;
  for (const auto& name : a.names()) {
    const auto x = a.read_f32(name), y = b.read_f32(name);
    EXPECT_EQ(x.size(), y.size()) << name;
    for (size_t i = 0; i < std::min(x.size(), y.size()); i++)
      worst = std::max(worst, std::abs(x[i] - y[i]));
  }
  return worst;
}

// The kinds of training run: a name, the command word and its arguments without --batch, --out
// and --stop-after.
struct Kind {
  std::string name, command, args;
};

std::vector<Kind> kinds(const TempDir& dir) {
  write_file_atomic(dir / "lm.json", testing::kTinyLmConfig);
  std::string text;
  for (int i = 0; i < 200; i++) text += "The quick brown fox " + std::to_string(i) + " jumps.\n";
  write_file_atomic(dir / "text.txt", text);
  return {{"train", "train", "--train-limit 128 --test-limit 40 --epochs 1"},
          {"train-lm", "train-lm",
           "--config " + (dir / "lm.json") + " --text " + (dir / "text.txt") +
               " --steps 6 --eval-every 2 --eval-tokens 64"},
          {"lra", "lra",
           "listops --train-size 40 --heldout 12 --steps 6 --eval-every 2 --eval-limit 8"},
          // Each rank hides the pixels one process would hide in its part of the batch.
          {"lra-pretrain", "lra",
           "pathfinder --pretrain --mixer linear --train-size 40 --heldout 8 --steps 6 "
           "--eval-every 2 --eval-limit 8"}};
}

const char* const kQuiet = " --threads 1 --progress lines";

class Distributed : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = mpi_missing();
    if (!why.empty()) GTEST_SKIP() << why;
  }
};

// After 4 steps, 2 ranks with batch 4 each hold the weights of 1 rank with batch 8 (the same
// samples in the same order), up to the rounding of sums taken in another order. A 2-rank
// checkpoint then resumes on 1 rank, and a 1-rank checkpoint on 2, to the same weights again.
TEST_F(Distributed, TwoRanksTrainTheWeightsOfOneRankWithTheDoubledBatch) {
  TempDir dir("mpi-equal");
  for (const Kind& k : kinds(dir)) {
    SCOPED_TRACE(k.name);
    const std::string run = k.command + " " + k.args + kQuiet;
    const std::string one = dir / (k.name + "-1"), two = dir / (k.name + "-2");
    RunResult r = run_kat(run + " --batch 8 --stop-after 4 --out " + one);
    ASSERT_EQ(r.status, 0) << r.output;
    r = run_mpi(2, run + " --batch 4 --stop-after 4 --out " + two);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("8 (2 ranks x 4)"));
    const std::string start = k.args.find("--pretrain") == std::string::npos
                                  ? "kat: training"
                                  : "kat: pretraining";  // rank 0 alone reports
    EXPECT_THAT(r.output, HasSubstr(start));
    EXPECT_EQ(r.output.find(start), r.output.rfind(start)) << r.output;
    const float diff = max_weight_difference(one + "/last", two + "/last");
    EXPECT_LT(diff, 1e-5f);
    std::cerr << k.name << ": largest weight difference, 1 rank x 8 vs 2 ranks x 4: " << diff
              << "\n";

    // 2 ranks -> 1 rank, and 1 rank -> 2 ranks, each from step 2 to step 4.
    const std::string resume = k.command + " --resume ";
    for (const auto& [from, to] : {std::pair{2, 1}, std::pair{1, 2}}) {
      const std::string part = dir / (k.name + "-from" + std::to_string(from));
      const std::string batch = from == 2 ? " --batch 4" : " --batch 8";
      r = from == 2 ? run_mpi(2, run + batch + " --stop-after 2 --out " + part)
                    : run_kat(run + batch + " --stop-after 2 --out " + part);
      ASSERT_EQ(r.status, 0) << r.output;
      const std::string more = resume + part + "/last" + kQuiet + " --stop-after 4";
      r = to == 2 ? run_mpi(2, more) : run_kat(more);
      ASSERT_EQ(r.status, 0) << r.output;
      EXPECT_THAT(r.output, HasSubstr("resuming at step 2"));
      EXPECT_LT(max_weight_difference(one + "/last", part + "/last"), 1e-5f)
          << from << " -> " << to << " ranks";
    }
    // A global batch of 8 does not split over 3 ranks.
    r = run_mpi(3, resume + one + "/last" + kQuiet);
    EXPECT_NE(r.status, 0);
    EXPECT_THAT(r.output, HasSubstr("does not split evenly over 3 ranks")) << r.output;
  }
}

// The processes of the kat job whose command line holds `marker`, with their rank.
std::vector<std::pair<pid_t, int>> ranks_of(const std::string& marker) {
  std::vector<std::pair<pid_t, int>> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmdline(entry.path() / "cmdline"), environ(entry.path() / "environ");
    std::stringstream c, e;
    c << cmdline.rdbuf(), e << environ.rdbuf();
    if (c.str().find(marker) == std::string::npos ||
        c.str().find(KAT_BINARY_PATH) == std::string::npos)
      continue;
    const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
    const size_t at = e.str().find(key);
    if (at != std::string::npos)
      found.emplace_back(std::stoi(name), std::atoi(e.str().c_str() + at + key.size()));
  }
  return found;
}

// Starts a long 2-rank run, waits until it trains, sends rank 1 `signal`, and returns what the
// job printed and how long it took to end after the signal (bounded: `timeout` kills it at 120 s).
std::pair<RunResult, double> signal_rank_one(const TempDir& dir, int signal,
                                             const std::string& env) {
  const std::string out = dir / "run";
  auto job = std::async(std::launch::async, [&] {
    return run_command(
        "timeout 120 " +
        mpirun_command(2,
                       "train --train-limit 4000 --epochs 20 --batch 4 --log-every 1 "
                       "--out " +
                           out + kQuiet,
                       env));
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  pid_t victim = 0;
  while (victim == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (!fs::exists(out + "/metrics.jsonl") || fs::file_size(out + "/metrics.jsonl") == 0) continue;
    for (const auto& [pid, rank] : ranks_of(out))
      if (rank == 1) victim = pid;
  }
  EXPECT_NE(victim, 0) << "the 2-rank run did not start training";
  if (victim) ::kill(victim, signal);
  const auto t0 = std::chrono::steady_clock::now();
  RunResult r = job.get();
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (signal == SIGSTOP && victim) ::kill(victim, SIGKILL);  // in case the job left it behind
  return {r, waited};
}

// A rank killed mid-run: mpirun stops the others and says which rank died and how.
TEST_F(Distributed, KilledRankEndsTheJobWithAnError) {
  TempDir dir("mpi-kill");
  const auto [r, waited] = signal_rank_one(dir, SIGKILL, "");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(waited, 30) << r.output;
  EXPECT_THAT(r.output, HasSubstr("rank 1")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("signal 9")) << r.output;
}

// A rank that stops answering (here: SIGSTOP): the others give up after KAT_MPI_TIMEOUT seconds
// with an error naming the exchange, and the job ends.
TEST_F(Distributed, HungRankIsATimeoutError) {
  TempDir dir("mpi-hang");
  const auto [r, waited] = signal_rank_one(dir, SIGSTOP, "KAT_MPI_TIMEOUT=3");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(waited, 30) << r.output;
  EXPECT_THAT(r.output, HasSubstr("kat: error: rank 0 of 2: the other ranks did not answer in 3 s "
                                  "(gradient all-reduce of step"))
      << r.output;
}

TEST_F(Distributed, OnlyTrainingCommandsRunUnderMpirun) {
  TempDir dir("mpi-bad");
  RunResult r = run_mpi(2, "configs");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("kat: error: kat configs runs in one process")) << r.output;
  // An error every rank meets is reported once, by rank 0.
  r = run_mpi(2, "train --data " + (dir / "missing") + kQuiet);
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("kat: error: ")) << r.output;
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("rank 1:"))) << r.output;
  // An error rank 1 alone meets (here its own --data, by mpirun's MPMD form `A : B`) is printed
  // by rank 1, named, and ends the job at once rather than after KAT_MPI_TIMEOUT. (Had rank 0
  // met an error too, it would print it and rank 1 would stay silent.)
  const auto t0 = std::chrono::steady_clock::now();
  r = run_command(mpirun_command(1,
                                 "train --batch 16 --train-limit 128 --test-limit 40" +
                                     std::string(kQuiet) + " --out " + (dir / "run") + " : -np 1 " +
                                     KAT_BINARY_PATH + " train --batch 16 --data " +
                                     (dir / "rank1-data") + kQuiet,
                                 "KAT_MPI_TIMEOUT=120"));
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("kat: error: rank 1: ")) << r.output;
  EXPECT_EQ(r.output.find("kat: error:"), r.output.rfind("kat: error:")) << r.output;
  EXPECT_THAT(r.output, HasSubstr(dir / "rank1-data")) << r.output;
  EXPECT_LT(waited, 60) << r.output;
  // It ends the job before rank 0 creates the run directory, which would otherwise (holding an
  // empty metrics.jsonl) refuse the same command once rank 1's data is there.
  EXPECT_FALSE(std::filesystem::exists(dir / "run")) << r.output;
  r = run_mpi(2, "train" + std::string(kQuiet), "KAT_MPI_TIMEOUT=soon");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("KAT_MPI_TIMEOUT must be a number of seconds > 0, not 'soon'"))
      << r.output;
}

}  // namespace
}  // namespace kat
