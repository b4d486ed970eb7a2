// What every training loop shares: run directories, the progress line, Ctrl-C, clocks.
#pragma once

#include <csignal>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

namespace kat {

double now_seconds();
std::string format_duration(double seconds);  // "3:07", "1:02:45"

// runs/<architecture>-<YYYYmmdd-HHMMSS>
std::string default_run_dir(const std::string& architecture);
// Creates the run directory, refusing one that already holds a run unless `overwrite` (then its
// last/, best/ and metrics.jsonl are removed), and checks that it is writable.
void prepare_run_dir(const std::string& dir, bool overwrite);

// --resume: reads CKPT/trainer_state.json (CKPT a checkpoint directory or its model.safetensors)
// and hands its saved "options" to `restore`, which applies them (a malformed file is an error
// naming it). Returns the state with "resume_dir" set to the checkpoint directory.
nlohmann::json read_trainer_state(const std::string& checkpoint,
                                  const std::function<void(const nlohmann::json&)>& restore);

// Ctrl-C while training: the loop finishes its step, saves last/ and says how to resume.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
  static bool interrupted();
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
