// Byte-level language models, kat against PyTorch (tools/torch_peer.py, same model and threads):
//
//   build/lm_vs_torch train    [--config kat_lm] [--batch 16] [--context 256] [--steps 10]
//                              [--warmup 2] [--runs 5] [--threads 2] [--no-torch]
//   build/lm_vs_torch generate [--config kat_lm] [--contexts 256,1024] [--prompt 16] [--runs 5]
//                              [--threads 2] [--no-torch]
//   build/lm_vs_torch memory   [--config kat_lm] [--contexts 1024,2048,4096,8192] [--steps 2]
//                              [--threads 2]
//
// train: tokens/s of whole training steps (forward, cross-entropy, backward, clipping, AdamW).
// generate: greedy tokens/s with the KV cache from a random prompt until the sequence reaches each
// context (prompt processing excluded on both sides). memory: peak resident memory of a process
// running training steps at batch 1 for each context (kat only; each in a fresh child process).
// Runs alternate kat and PyTorch; the medians, their spread and the ratios are printed.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "flags.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/lm.h"
#include "kat/lm_trainer.h"
#include "kat/optim.h"
#include "kat/parallel.h"
#include "kat/rng.h"
#include "peer.h"

namespace {

using namespace kat;

struct Options {
  std::string mode, config = "kat_lm";
  int batch = 16, context = 256, steps = 10, warmup = 2, runs = 5, threads = 2, prompt = 16;
  std::vector<int> contexts;
  bool torch = true, child = false;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<int32_t> random_tokens(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng.below(256));
  return t;
}

// Runs `steps` training steps after `warmup`; returns tokens/s of the timed ones.
double train_tokens_per_s(CausalLM& model, int B, int T, int warmup, int steps) {
  AdamW opt(model.params(), AdamWConfig{});
  const auto in = random_tokens(B * T, 1), out = random_tokens(B * T, 2);
  auto step = [&] {
    model.params().zero_grad();
    model.forward(in.data(), out.data(), B, T);
    model.backward();
    clip_grad_norm(model.params(), 1.0f);
    opt.step(1e-3f);
  };
  for (int i = 0; i < warmup; i++) step();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; i++) step();
  return static_cast<double>(B) * T * steps / seconds_since(t0);
}

// Greedy generation from a random prompt until the sequence holds `context` tokens.
double generate_tokens_per_s(CausalLM& model, int prompt, int context) {
  const auto p = random_tokens(prompt, 3);
  const float* z = model.prefill(p.data(), prompt);
  const int64_t V = model.config().vocab_size;
  const auto t0 = std::chrono::steady_clock::now();
  for (int n = prompt; n < context; n++)
    z = model.decode(static_cast<int32_t>(std::max_element(z, z + V) - z));
  return (context - prompt) / seconds_since(t0);
}

LmConfig with_context(LmConfig c, int context) {
  c.context = context;
  return c;
}

std::string write_config(const LmConfig& c) {
  const std::string path =
      "/tmp/kat-lm-bench-" + std::to_string(::getpid()) + "-" + std::to_string(c.context) + ".json";
  write_file_atomic(path, lm_config_to_json(c));
  return path;
}

void summary(const char* what, const std::vector<double>& v, const char* unit) {
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  std::printf("  %-28s median %10.2f%s (min %.2f, max %.2f)\n", what, bench::median(v), unit, *lo,
              *hi);
}

int run_train(const Options& o) {
  const LmConfig c = with_context(resolve_lm_config(o.config), o.context);
  const std::string path = write_config(c);
  std::printf("training tokens/s, %s, batch %d x context %d, %d threads, %d timed steps per run\n",
              c.architecture.c_str(), o.batch, o.context, o.threads, o.steps);
  std::vector<double> ks, ts, rs;
  for (int r = 0; r < o.runs; r++) {
    CausalLM model(c);
    model.init(0);
    ks.push_back(train_tokens_per_s(model, o.batch, o.context, o.warmup, o.steps));
    std::printf("run %d: kat %.0f tok/s", r + 1, ks.back());
    if (o.torch) {
      std::ostringstream args;
      args << "lm-train --config-json " << path << " --batch " << o.batch << " --context "
           << o.context << " --threads " << o.threads << " --steps " << o.steps << " --warmup "
           << o.warmup;
      ts.push_back(bench::run_torch_peer(args.str()).at("tokens_per_s").get<double>());
      rs.push_back(ks.back() / ts.back());
      std::printf(", torch %.0f tok/s, ratio %.2fx", ts.back(), rs.back());
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  std::remove(path.c_str());
  summary("kat", ks, " tok/s");
  if (o.torch) summary("torch", ts, " tok/s"), summary("ratio kat/torch", rs, "x");
  return 0;
}

int run_generate(const Options& o) {
  const int longest = *std::max_element(o.contexts.begin(), o.contexts.end());
  const LmConfig c = with_context(resolve_lm_config(o.config), longest);
  const std::string path = write_config(c);
  std::printf("greedy generation with the KV cache, %s, prompt %d, %d threads\n",
              c.architecture.c_str(), o.prompt, o.threads);
  CausalLM model(c);
  model.init(0);
  for (int context : o.contexts) {
    std::vector<double> ks, ts, rs;
    for (int r = 0; r < o.runs; r++) {
      ks.push_back(generate_tokens_per_s(model, o.prompt, context));
      std::printf("context %d run %d: kat %.0f tok/s", context, r + 1, ks.back());
      if (o.torch) {
        std::ostringstream args;
        args << "lm-generate --config-json " << path << " --context " << context << " --prompt "
             << o.prompt << " --threads " << o.threads << " --runs 1";
        ts.push_back(bench::run_torch_peer(args.str()).at("tokens_per_s").get<double>());
        rs.push_back(ks.back() / ts.back());
        std::printf(", torch %.0f tok/s, ratio %.2fx", ts.back(), rs.back());
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    std::printf("context %d:\n", context);
    summary("kat", ks, " tok/s");
    if (o.torch) summary("torch", ts, " tok/s"), summary("ratio kat/torch", rs, "x");
  }
  std::remove(path.c_str());
  return 0;
}

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

// --child: training steps at batch 1 and o.context in this fresh process; one JSON line.
int run_child(const Options& o) {
  const LmConfig c = with_context(resolve_lm_config(o.config), o.context);
  CausalLM model(c);
  model.init(0);
  const double tok_s = train_tokens_per_s(model, 1, o.context, 0, o.steps);
  std::printf("{\"peak_rss_mb\": %.1f, \"activation_bytes\": %lld, \"tokens_per_s\": %.1f}\n",
              peak_rss_mib(), static_cast<long long>(model.activation_bytes()), tok_s);
  return 0;
}

int run_memory(const Options& o) {
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  std::printf("peak resident memory of a training step at batch 1, %s, %d threads\n",
              o.config.c_str(), o.threads);
  std::printf("%8s %12s %16s %12s %10s\n", "context", "peak MiB", "activations MiB", "tok/s",
              "MiB / 1K");
  for (int context : o.contexts) {
    const auto j = bench::run_json_command("'" + exe + "' memory --child --config " + o.config +
                                               " --context " + std::to_string(context) +
                                               " --steps " + std::to_string(o.steps) +
                                               " --threads " + std::to_string(o.threads),
                                           "the kat child process failed");
    const double peak = j.at("peak_rss_mb").get<double>();
    const double acts = j.at("activation_bytes").get<double>() / (1024.0 * 1024.0);
    std::printf("%8d %12.1f %16.1f %12.0f %10.1f\n", context, peak, acts,
                j.at("tokens_per_s").get<double>(), acts / (context / 1024.0));
    std::fflush(stdout);
  }
  return 0;
}

Options parse(int argc, char** argv) {
  Options o;
  check(argc >= 2,
        "usage: lm_vs_torch train|generate|memory [options] (see the top of "
        "bench/lm_vs_torch.cpp)");
  o.mode = argv[1];
  bench::Flags("lm_vs_torch")
      .add("--config", o.config)
      .add("--batch", o.batch)
      .add("--context", o.context)
      .add("--contexts", o.contexts)
      .add("--steps", o.steps)
      .add("--warmup", o.warmup)
      .add("--runs", o.runs)
      .add("--threads", o.threads)
      .add("--prompt", o.prompt)
      .add("--no-torch", o.torch, false)
      .add("--child", o.child, true)
      .parse(argc, argv, 2);
  if (o.contexts.empty())
    o.contexts =
        o.mode == "memory" ? std::vector<int>{1024, 2048, 4096, 8192} : std::vector<int>{256, 1024};
  return o;
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  set_num_threads(o.threads);
  if (o.child) return run_child(o);
  if (o.mode == "train") return run_train(o);
  if (o.mode == "generate") return run_generate(o);
  if (o.mode == "memory") return run_memory(o);
  fail("unknown mode '", o.mode, "' (train, generate or memory)");
}

}  // namespace

int main(int argc, char** argv) { return kat::bench::run_main(argc, argv, "lm_vs_torch", run); }
