// Time and peak memory of one token mixer's forward + backward as the sequence grows:
//
//   build/mixer_scaling [--lengths 1024,2048,4096,8192,16384] [--dim 256] [--heads 4]
//                       [--window 256] [--causal] [--runs 3] [--threads 2] [--svg FILE]
//                       [--mixers softmax,local,linear,gla,combiner,delta]
//
// Batch 1, every mixer (softmax: exact tiled attention; local: softmax over a sliding window;
// linear: elu+1 linear attention; gla: gated linear attention, the gates given; combiner:
// Combiner-Fixed with spans of ceil(sqrt(L)); delta: DeltaNet, the write strengths given), each
// length in a fresh child process so its peak
// resident memory (ru_maxrss) is its own. Prints the median time of `runs` forward + backward
// passes (more, up to 200, until they add up to half a second, since short passes are noisy here),
// the peak, the time ratio to the shortest length, and writes a log-log plot of the times (--svg).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "flags.h"
#include "kat/buffer.h"
#include "kat/config.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/kernels.h"
#include "kat/parallel.h"
#include "kat/plot.h"
#include "kat/rng.h"
#include "peer.h"

namespace {

using namespace kat;

struct Options {
  std::vector<int64_t> lengths{1024, 2048, 4096, 8192, 16384};
  int64_t dim = 256, heads = 4, window = 256, length = 0;
  int runs = 3, threads = 2;
  bool causal = false, child = false;
  std::string mixer, svg;
  std::vector<std::string> mixers{"softmax", "local", "linear", "gla", "combiner", "delta"};
};

// --child: `runs` forward + backward passes of one mixer at one length; one JSON line.
int run_child(const Options& o) {
  const int64_t T = o.length, C = o.dim, H = o.heads;
  const Mixer m = parse_mixer(o.mixer);
  Rng rng(1);
  // FloatBuffer as the models' activations: large ones on transparent huge pages (kat/buffer.h)
  FloatBuffer qkv(T * 3 * C), dout(T * C), out(T * C), dqkv(T * 3 * C);
  // what the forward keeps: softmax, combiner the log-sum-exps, linear its denominators and states
  FloatBuffer lse(m == Mixer::Linear ? linear_attention_saved_floats(1, T, C, H, o.causal) : H * T);
  for (float& x : qkv) x = rng.normal();
  for (float& x : dout) x = rng.normal();
  FloatBuffer g, dg;  // gla's log decays, drawn around its init (logsigmoid(z) / 16)
  if (m == Mixer::Gla) {
    g.resize(T * C), dg.resize(T * C);
    for (float& x : g) x = -std::log1p(std::exp(-rng.normal())) / 16.0f;
  }
  FloatBuffer beta, dbeta;  // delta's write strengths, sigmoid of N(0, 1)
  if (m == Mixer::Delta) {
    beta.resize(T * H), dbeta.resize(T * H);
    for (float& x : beta) x = 1.0f / (1.0f + std::exp(-rng.normal()));
  }
  const int64_t span = mixer_window(m, 0, T);
  int64_t scratch_floats = attention_scratch_floats();
  if (m == Mixer::Linear) scratch_floats = linear_attention_scratch_floats(1, T, C, H);
  if (m == Mixer::Gla) scratch_floats = gla_scratch_floats(1, T, C, H);
  if (m == Mixer::Combiner) scratch_floats = combiner_scratch_floats(T, C, H, span);
  if (m == Mixer::Delta) scratch_floats = delta_scratch_floats(T, C, H);
  FloatBuffer scratch(scratch_floats);
  const AttentionMask mask(o.causal, m == Mixer::Local ? o.window : 0);
  std::vector<double> times;  // at least `runs` passes and half a second: short ones are noisy
  double total_ms = 0;
  for (int r = 0; r < o.runs || (total_ms < 500 && r < 200); r++) {
    const auto t0 = std::chrono::steady_clock::now();
    if (m == Mixer::Linear) {
      linear_attention_forward(out.data(), lse.data(), scratch.data(), qkv.data(), 1, T, C, H,
                               o.causal);
      linear_attention_backward(dqkv.data(), scratch.data(), dout.data(), out.data(), lse.data(),
                                qkv.data(), 1, T, C, H, o.causal, false);
    } else if (m == Mixer::Gla) {
      gla_forward(out.data(), scratch.data(), qkv.data(), g.data(), 1, T, C, H, o.causal);
      gla_backward(dqkv.data(), dg.data(), scratch.data(), dout.data(), qkv.data(), g.data(), 1, T,
                   C, H, o.causal, false);
    } else if (m == Mixer::Delta) {
      delta_forward(out.data(), scratch.data(), qkv.data(), beta.data(), 1, T, C, H, o.causal);
      delta_backward(dqkv.data(), dbeta.data(), scratch.data(), dout.data(), qkv.data(),
                     beta.data(), 1, T, C, H, o.causal, false);
    } else if (m == Mixer::Combiner) {
      combiner_forward(out.data(), lse.data(), scratch.data(), qkv.data(), 1, T, C, H, span,
                       o.causal);
      combiner_backward(dqkv.data(), scratch.data(), dout.data(), out.data(), qkv.data(),
                        lse.data(), 1, T, C, H, span, o.causal, false);
    } else {
      attention_forward(out.data(), lse.data(), scratch.data(), qkv.data(), 1, T, C, H, mask);
      attention_backward(dqkv.data(), scratch.data(), dout.data(), out.data(), qkv.data(),
                         lse.data(), 1, T, C, H, mask, false);
    }
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() *
                    1e3);
    total_ms += times.back();
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("{\"ms\": %.3f, \"peak_rss_mb\": %.1f}\n", bench::median(times),
              ru.ru_maxrss / 1024.0);
  return 0;
}

Options parse(int argc, char** argv) {
  Options o;
  bench::Flags("mixer_scaling")
      .add("--lengths", o.lengths)
      .add("--dim", o.dim)
      .add("--heads", o.heads)
      .add("--window", o.window)
      .add("--runs", o.runs)
      .add("--threads", o.threads)
      .add("--causal", o.causal, true)
      .add("--svg", o.svg)
      .add("--child", o.child, true)
      .add("--mixer", o.mixer)
      .add("--length", o.length)
      .add("--mixers", o.mixers)
      .parse(argc, argv, 1);
  check(o.dim % o.heads == 0, "--dim must be divisible by --heads");
  return o;
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  set_num_threads(o.threads);
  if (o.child) return run_child(o);
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  std::printf(
      "token mixers, forward + backward, batch 1, d %lld, %lld heads, %s, %d threads, "
      "median of %d\n",
      static_cast<long long>(o.dim), static_cast<long long>(o.heads),
      o.causal ? "causal" : "bidirectional", o.threads, o.runs);
  std::printf("%-8s %8s %12s %12s %12s\n", "mixer", "L", "ms", "peak MiB", "time / L0");
  std::vector<Series> series;
  for (const std::string& name : o.mixers) {
    const Mixer m = parse_mixer(name);
    Series s;
    s.name = mixer_name(m);
    if (m == Mixer::Local) s.name += " (W " + std::to_string(o.window) + ")";
    for (int64_t L : o.lengths) {
      std::ostringstream cmd;
      cmd << "'" << exe << "' --child --mixer " << mixer_name(m) << " --length " << L << " --dim "
          << o.dim << " --heads " << o.heads << " --window " << o.window << " --runs " << o.runs
          << " --threads " << o.threads << (o.causal ? " --causal" : "");
      const auto j = bench::run_json_command(cmd.str(), "the child process failed");
      const double ms = j.at("ms").get<double>();
      s.x.push_back(static_cast<double>(L)), s.y.push_back(ms);
      std::printf("%-8s %8lld %12.2f %12.1f %11.1fx\n", mixer_name(m), static_cast<long long>(L),
                  ms, j.at("peak_rss_mb").get<double>(), ms / s.y.front());
      std::fflush(stdout);
    }
    series.push_back(s);
  }
  if (!o.svg.empty()) {
    PlotOptions p;
    p.title = std::string("token mixers, forward + backward (") +
              (o.causal ? "causal" : "bidirectional") + ", d " + std::to_string(o.dim) + ")";
    p.x_label = "sequence length L", p.y_label = "milliseconds";
    p.log_x = p.log_y = true;
    write_file_atomic(o.svg, svg_line_plot(series, p));
    std::printf("wrote %s\n", o.svg.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return kat::bench::run_main(argc, argv, "mixer_scaling", run); }
