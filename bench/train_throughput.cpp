// Training throughput of kat against PyTorch, same model, batch and threads, run in one go.
//
//   build/train_throughput [--config kat_fmnist] [--batch 128] [--threads 2] [--steps 20]
//                          [--warmup 3] [--runs 5] [--no-torch] [--baseline vit_fmnist]
//
// Each run times `steps` training steps (forward, label-smoothed cross-entropy, backward, gradient
// clipping, AdamW) of kat in this process, then the same of tools/torch_peer.py (Debian's
// python3-torch) on the same config.json; runs alternate so drift hits both alike. Prints images/s
// per run, the medians with their spread, and the ratio kat / PyTorch of the medians.
// --baseline NAME also times kat on a second config in each run (the ViT of the same backbone, for
// issue #3's "KAT step <= 1.10x ViT step") and prints the step-time ratio config / baseline.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "flags.h"
#include "kat/config.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/model.h"
#include "kat/optim.h"
#include "kat/parallel.h"
#include "kat/rng.h"
#include "peer.h"

namespace {

using namespace kat;

struct Options {
  std::string config = "kat_fmnist", baseline;
  int batch = 128, threads = 2, steps = 20, warmup = 3, runs = 5;
  bool torch = true;
};

// Images per second of `steps` kat training steps after `warmup` untimed ones.
double kat_images_per_s(const ModelConfig& c, const Options& o) {
  VisionTransformer model(c);
  model.init(0);
  AdamW opt(model.params(), AdamWConfig{});
  const int64_t per = static_cast<int64_t>(c.in_chans) * c.img_size * c.img_size;
  std::vector<float> images(o.batch * per);
  std::vector<int32_t> labels(o.batch);
  Rng rng(1);
  for (float& x : images) x = rng.normal();
  for (int32_t& y : labels) y = static_cast<int32_t>(rng.below(c.num_classes));
  auto step = [&] {
    model.params().zero_grad();
    model.forward(images.data(), labels.data(), o.batch, true, 0.1f, 0);
    model.backward();
    clip_grad_norm(model.params(), 1.0f);
    opt.step(1e-3f);
  };
  for (int i = 0; i < o.warmup; i++) step();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < o.steps; i++) step();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return o.batch * o.steps / s;
}

double torch_images_per_s(const std::string& config_path, const Options& o) {
  return bench::run_torch_peer("train --config-json " + config_path + " --batch " +
                               std::to_string(o.batch) + " --threads " + std::to_string(o.threads) +
                               " --steps " + std::to_string(o.steps) + " --warmup " +
                               std::to_string(o.warmup))
      .at("images_per_s")
      .get<double>();
}

Options parse(int argc, char** argv) {
  Options o;
  bench::Flags("train_throughput")
      .add("--config", o.config)
      .add("--baseline", o.baseline)
      .add("--batch", o.batch)
      .add("--threads", o.threads)
      .add("--steps", o.steps)
      .add("--warmup", o.warmup)
      .add("--runs", o.runs)
      .add("--no-torch", o.torch, false)
      .parse(argc, argv, 1);
  return o;
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  set_num_threads(o.threads);
  const ModelConfig c = resolve_config(o.config);
  const std::string config_path = "/tmp/kat-bench-config-" + std::to_string(::getpid()) + ".json";
  write_file_atomic(config_path, config_to_json(c));
  std::printf("training throughput, %s, batch %d, %d threads, %d timed steps per run\n",
              c.architecture.c_str(), o.batch, o.threads, o.steps);
  std::printf("%4s %14s %14s %8s", "run", "kat img/s", "torch img/s", "ratio");
  if (!o.baseline.empty()) std::printf(" %16s %10s", "baseline img/s", "step ratio");
  std::printf("\n");
  const ModelConfig base = o.baseline.empty() ? c : resolve_config(o.baseline);
  std::vector<double> ks, ts, rs, bs, srs;
  for (int r = 0; r < o.runs; r++) {
    ks.push_back(kat_images_per_s(c, o));
    std::printf("%4d %14.1f", r + 1, ks.back());
    if (o.torch) {
      ts.push_back(torch_images_per_s(config_path, o));
      rs.push_back(ks.back() / ts.back());
      std::printf(" %14.1f %7.2fx", ts.back(), rs.back());
    } else {
      std::printf(" %14s %8s", "-", "-");
    }
    if (!o.baseline.empty()) {
      bs.push_back(kat_images_per_s(base, o));
      srs.push_back(bs.back() / ks.back());  // step time of config / step time of baseline
      std::printf(" %16.1f %9.3fx", bs.back(), srs.back());
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  std::remove(config_path.c_str());
  auto summary = [](const char* what, const std::vector<double>& v, const char* unit) {
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    std::printf("%s median %.3g%s (min %.3g, max %.3g)\n", what, bench::median(v), unit, *lo, *hi);
  };
  summary("kat   ", ks, " img/s");
  if (o.torch) {
    summary("torch ", ts, " img/s");
    summary("ratio kat/torch:", rs, "x");
  }
  if (!o.baseline.empty()) {
    summary(("kat " + base.architecture).c_str(), bs, " img/s");
    summary(("step time " + c.architecture + " / " + base.architecture + ":").c_str(), srs, "x");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return kat::bench::run_main(argc, argv, "train_throughput", run);
}
