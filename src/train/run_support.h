// What every training loop shares: run directories, the progress line, Ctrl-C, clocks.
#pragma once

#include <csignal>
#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

namespace kat {

double now_seconds();
std::string format_duration(double seconds);  // "3:07", "1:02:45"

// Seconds of training over every invocation of a run. A resumed run goes on from the seconds its
// checkpoint saved (trainer_state.json's "time_s"; 0 for a checkpoint from before it was saved),
// so metrics.jsonl's time_s never runs backwards and a report's "s of training" counts all of it.
class RunClock {
 public:
  explicit RunClock(const nlohmann::json& trainer_state);  // null for a new run
  double seconds() const { return earlier_ + now_seconds() - start_; }

 private:
  double earlier_, start_;
};

// runs/<architecture>-<YYYYmmdd-HHMMSS>
std::string default_run_dir(const std::string& architecture);
// Called by every rank of a new run: once all have started (loaded their data and model), rank 0
// creates the run directory, refusing one that already holds a run unless `overwrite` (then its
// last/, best/ and metrics.jsonl are removed), and checks that it is writable. A rank that fails
// before then ends the job with nothing written.
void prepare_run_dir(const std::string& dir, bool overwrite);

// --resume: reads CKPT/trainer_state.json (CKPT a checkpoint directory or its model.safetensors)
// and hands its saved "options" to `restore`, which applies them (a malformed file is an error
// naming it). Returns the state with "resume_dir" set to the checkpoint directory.
nlohmann::json read_trainer_state(const std::string& checkpoint,
                                  const std::function<void(const nlohmann::json&)>& restore);

// Data parallel (kat/distributed.h): the per-rank share of a global batch, which the ranks must
// divide evenly, and how a run's start line states it ("64" or "64 (2 ranks x 32)").
int64_t rank_batch(int64_t global_batch);
std::string batch_text(int64_t global_batch);

// Where a rank's progress goes: `log` on rank 0, nowhere on the others.
std::ostream& root_log(std::ostream& log);

// metrics.jsonl of a run, one JSON object per line, appended by rank 0 alone.
class MetricsLog {
 public:
  explicit MetricsLog(const std::string& run_dir);
  void write(const nlohmann::json& record);

 private:
  std::unique_ptr<std::ofstream> out_;
};

// Ctrl-C (SIGINT) or SIGTERM while training: the loop finishes its step, saves last/ and says how
// to resume. The same signal a second time ends the process at once (after a checkpoint being
// written), during the final save and test evaluation too.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
  static bool interrupted();
};

// While one lives (a checkpoint is being written), a second Ctrl-C or SIGTERM waits for it to end.
class SavingCheckpoint {
 public:
  SavingCheckpoint();
  ~SavingCheckpoint();
  SavingCheckpoint(const SavingCheckpoint&) = delete;
  SavingCheckpoint& operator=(const SavingCheckpoint&) = delete;
};

// Progress on a terminal: one line redrawn in place behind a bar; elsewhere plain log lines.
class Progress {
 public:
  Progress(std::ostream& log, bool bar) : log_(log), bar_(bar) {}
  void step(int64_t step, int64_t total, const std::string& line);
  void message(const std::string& text);

 private:
  std::ostream& log_;
  bool bar_;
};

}  // namespace kat
