#include "train/run_support.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "kat/checkpoint.h"
#include "kat/distributed.h"
#include "kat/error.h"
#include "kat/files.h"

namespace kat {
namespace fs = std::filesystem;

namespace {
// A signal asks the training loop to stop after its step. The same signal again (Ctrl-C twice, or
// a scheduler's second SIGTERM) ends the process at once, at the default action, as a program
// without a handler would; a checkpoint being written is finished first, so last/ and best/ hold
// one step's files. The other signal (mpirun's SIGTERM after a Ctrl-C) only asks again.
volatile std::sig_atomic_t g_seen_int = 0, g_seen_term = 0;  // each signal asked once
volatile std::sig_atomic_t g_saving = 0;                     // a checkpoint is being written
volatile std::sig_atomic_t g_again = 0;  // the signal that came again while it was

void end_by(int signal) {
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

void on_interrupt(int signal) {
  volatile std::sig_atomic_t& seen = signal == SIGINT ? g_seen_int : g_seen_term;
  if (!seen) {
    seen = 1;
  } else if (g_saving) {
    g_again = signal;
  } else {
    end_by(signal);
  }
}
}  // namespace

double now_seconds() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

std::string format_duration(double s) {
  const int64_t t = static_cast<int64_t>(s + 0.5);
  std::ostringstream o;
  if (t >= 3600)
    o << t / 3600 << ":" << std::setw(2) << std::setfill('0') << (t / 60) % 60;
  else
    o << t / 60;
  o << ":" << std::setw(2) << std::setfill('0') << t % 60;
  return o.str();
}

RunClock::RunClock(const nlohmann::json& trainer_state)
    : earlier_(trainer_state.is_object() ? trainer_state.value("time_s", 0.0) : 0.0),
      start_(now_seconds()) {}

std::string default_run_dir(const std::string& arch) {
  const std::time_t t = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&t));
  return "runs/" + arch + "-" + stamp;
}

void prepare_run_dir(const std::string& dir, bool overwrite) {
  dist::barrier("start of the run");
  if (!dist::root()) return;
  std::error_code ec;
  // A run stopped before its first logged step (Ctrl-C while a large dataset was generated) left
  // config.json and an empty metrics.jsonl: nothing to lose, so the same command starts again.
  const auto size = fs::file_size(dir + "/metrics.jsonl", ec);
  if ((!ec && size > 0) || fs::exists(dir + "/last", ec)) {
    check(overwrite, dir, ": already holds a training run (use --overwrite to replace it, or ",
          "--resume ", dir, "/last to continue it)");
    fs::remove_all(dir + "/last", ec);
    fs::remove_all(dir + "/best", ec);
    fs::remove(dir + "/metrics.jsonl", ec);
  }
  fs::create_directories(dir, ec);
  check(!ec, dir, ": cannot create the run directory: ", ec.message());
  const std::string probe = dir + "/.write-test";
  std::ofstream f(probe);
  check(f.good(), dir, ": the run directory is not writable");
  f.close();
  fs::remove(probe, ec);
}

nlohmann::json read_trainer_state(const std::string& checkpoint,
                                  const std::function<void(const nlohmann::json&)>& restore) {
  const std::string dir = checkpoint_dir(checkpoint);
  const std::string path = dir + "/trainer_state.json";
  check(file_exists(path), dir, ": no trainer_state.json: not a training checkpoint");
  try {
    nlohmann::json state = nlohmann::json::parse(read_text_file(path));
    restore(state.at("options"));
    state.at("step").get<int64_t>();
    if (state.contains("time_s")) state["time_s"].get<double>();
    // The run goes on in the directory that holds the checkpoint, not the one it was saved in:
    // a run directory that was moved or copied continues where it is now.
    fs::path at = fs::path(dir).lexically_normal();
    if (!at.has_filename()) at = at.parent_path();  // "RUN/last/": the parent of last, not of ""
    const std::string parent = at.parent_path().string();
    state["run_dir"] = parent.empty() ? "." : parent;
    state["resume_dir"] = dir;
    return state;
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": unreadable trainer state (", e.what(), ")");
  }
}

int64_t rank_batch(int64_t global_batch) {
  const int n = dist::size();
  check(global_batch % n == 0, "a batch of ", global_batch, " does not split evenly over ", n,
        " ranks: run with a number of ranks that divides it");
  return global_batch / n;
}

std::string batch_text(int64_t global_batch) {
  const int n = dist::size();
  if (n == 1) return std::to_string(global_batch);
  return std::to_string(global_batch) + " (" + std::to_string(n) + " ranks x " +
         std::to_string(global_batch / n) + ")";
}

std::ostream& root_log(std::ostream& log) {
  static std::ostream nowhere(nullptr);  // a stream without a buffer drops what it is given
  return dist::root() ? log : nowhere;
}

MetricsLog::MetricsLog(const std::string& run_dir) {
  if (!dist::root()) return;
  out_ = std::make_unique<std::ofstream>(run_dir + "/metrics.jsonl", std::ios::app);
  check(out_->good(), run_dir, "/metrics.jsonl: cannot open for writing");
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!out_) return;
  *out_ << record.dump() << "\n";
  out_->flush();
}

// SIGTERM stops the run as SIGINT does: it is how `kill`, job schedulers (Slurm at a job's time
// limit, Kubernetes) and mpirun (forwarding Ctrl-C to the ranks) ask a process to stop.
InterruptGuard::InterruptGuard() {
  g_seen_int = 0;
  g_seen_term = 0;
  g_saving = 0;
  g_again = 0;
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
}
InterruptGuard::~InterruptGuard() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}
bool InterruptGuard::interrupted() { return g_seen_int != 0 || g_seen_term != 0; }

SavingCheckpoint::SavingCheckpoint() { g_saving = 1; }
SavingCheckpoint::~SavingCheckpoint() {
  g_saving = 0;
  if (g_again) end_by(g_again);
}

void Progress::step(int64_t step, int64_t total, const std::string& line) {
  if (bar_) {
    const int width = 24, filled = static_cast<int>(width * step / std::max<int64_t>(1, total));
    log_ << "\r[" << std::string(filled, '=') << std::string(width - filled, ' ') << "] " << line
         << "   " << std::flush;
  } else {
    log_ << line << "\n" << std::flush;
  }
}

void Progress::message(const std::string& text) {
  if (bar_) log_ << "\r\033[K";
  log_ << text << "\n" << std::flush;
}

}  // namespace kat
