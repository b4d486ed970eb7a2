// Running the `kat` binary from tests, and scratch directories.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "kat/error.h"
#include "kat/files.h"

namespace kat::testing {

struct RunResult {
  int status;
  std::string output;  // stdout and stderr together
};

// Runs a shell command (its stderr redirected by the caller) and collects what it prints.
inline RunResult run_command(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  RunResult r{-1, ""};
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// `env`: assignments put before the command, e.g. "PATH=/nowhere".
inline RunResult run_kat(const std::string& args, const std::string& env = "") {
  return run_command((env.empty() ? "" : "env " + env + " ") + std::string(KAT_BINARY_PATH) + " " +
                     args + " 2>&1");
}

// Starts the training command `kat ARGS`, whose run goes to `run_dir`, sends it `signal` ("INT" as
// Ctrl-C does, "TERM" as `kill` does) once its metrics.jsonl holds a training step and, `twice`,
// the same signal again once it says it saved last/; returns what it printed and how it exited
// (128 + the signal's number when one ended it). A kat still running 120 s after its start is
// killed (137). The signals go to kat itself: GNU timeout forwards only the first.
inline RunResult signal_kat(const std::string& args, const std::string& run_dir,
                            const std::string& signal, bool twice = false) {
  const std::string log = run_dir + ".log";
  const auto wait_for = [](const std::string& text, const std::string& file) {
    return "i=0; while [ $i -lt 1000 ] && ! grep -qs '" + text + "' " + file +
           "; do sleep 0.1; i=$((i + 1)); done; ";
  };
  std::string script = std::string(KAT_BINARY_PATH) + " " + args + " >" + log +
                       " 2>&1 & pid=$!; (i=0; while [ $i -lt 1200 ] && kill -0 $pid; do sleep 0.1; "
                       "i=$((i + 1)); done; kill -KILL $pid) >/dev/null 2>&1 & " +
                       wait_for("\"kind\":\"step\"", run_dir + "/metrics.jsonl") + "kill -" +
                       signal + " $pid; ";
  if (twice) script += wait_for("interrupted: saved", log) + "kill -" + signal + " $pid; ";
  return run_command(script + "wait $pid; s=$?; cat " + log + "; exit $s");
}

// A training run stopped by `signal` finished its step, saved last/ there and said how to resume
// it; returns the step it saved.
inline int64_t expect_stopped_and_saved(const RunResult& r, const std::string& run_dir,
                                        int64_t steps) {
  using ::testing::HasSubstr;
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("interrupted: saved " + run_dir + "/last at step ")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--resume " + run_dir + "/last")) << r.output;
  if (!std::filesystem::exists(run_dir + "/last/trainer_state.json")) {
    ADD_FAILURE() << "no " << run_dir << "/last/trainer_state.json\n" << r.output;
    return 0;
  }
  const auto state = nlohmann::json::parse(read_text_file(run_dir + "/last/trainer_state.json"));
  const int64_t step = state.at("step").get<int64_t>();
  EXPECT_GT(step, 0);
  EXPECT_LT(step, steps);
  return step;
}

// The message of the kat::Error that f throws, or "<no error>".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// The config of a tiny byte-level LM (2 layers of 32, GR-KAN, RoPE) for CLI tests.
constexpr const char* kTinyLmConfig = R"({
  "architecture": "kat_lm_cli_test", "model_type": "kat-lm", "vocab_size": 257,
  "n_positions": 32, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_inner": 64,
  "tie_word_embeddings": true,
  "kat": {"ffn": "kan", "rational_groups": 4, "positions": "rope"}
})";

// The output holds exactly one "kat: error:" line, it mentions `what`, and the exit is non-zero.
inline void expect_one_line_error(const RunResult& r, const std::string& what) {
  using ::testing::HasSubstr;
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("kat: error: ")) << r.output;
  EXPECT_THAT(r.output, HasSubstr(what)) << r.output;
  const size_t at = r.output.find("kat: error: ");
  if (at != std::string::npos) {
    const std::string rest = r.output.substr(at);
    EXPECT_LE(std::count(rest.begin(), rest.end(), '\n'), 1) << "multi-line error:\n" << r.output;
  }
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("terminate called"))) << r.output;
}

// The seconds of training a checkpoint's trainer_state.json records (-1 when it records none).
inline double seconds_trained(const std::string& checkpoint) {
  const auto state = nlohmann::json::parse(read_text_file(checkpoint + "/trainer_state.json"));
  return state.value("time_s", -1.0);
}

// A resumed run's clock goes on from its checkpoint: metrics.jsonl's time_s never runs backwards,
// and the run's last/ records more seconds than `before`, those of the checkpoint it resumed.
inline void expect_clock_goes_on(const std::string& run_dir, double before) {
  EXPECT_GT(before, 0) << "the checkpoint records no seconds of training";
  std::istringstream lines(read_text_file(run_dir + "/metrics.jsonl"));
  double last = 0;
  for (std::string line; std::getline(lines, line);) {
    const auto record = nlohmann::json::parse(line);
    if (!record.contains("time_s")) continue;
    const double t = record["time_s"].get<double>();
    EXPECT_GE(t, last) << "time_s runs backwards at " << line;
    last = t;
  }
  EXPECT_GT(seconds_trained(run_dir + "/last"), before);
}

// A fresh directory under the system temp dir, removed when the object goes.
class TempDir {
 public:
  explicit TempDir(const std::string& name) {
    path_ = std::filesystem::temp_directory_path() /
            ("kat-test-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& s) const { return (path_ / s).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace kat::testing
