// GR-KAN and GELU forward + backward in kat against PyTorch with autograd, and against each other.
//
//   build/activation_vs_torch [--rows 25216] [--channels 768] [--groups 8] [--threads 2]
//                             [--runs 5] [--no-torch]
//
// The default tensor is KAT-T's feed-forward activation, [128 * 197, 768]. kat is timed in this
// process (median of --runs), PyTorch by tools/torch_peer.py op (the rational as composed tensor
// ops, as upstream's PyTorch path computes it). Prints the medians and the ratios.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "flags.h"
#include "kat/error.h"
#include "kat/kernels.h"
#include "kat/parallel.h"
#include "kat/rng.h"
#include "peer.h"

namespace {

using namespace kat;
using Clock = std::chrono::steady_clock;

struct Options {
  int64_t rows = 128 * 197, channels = 768;
  int groups = 8, threads = 2, runs = 5;
  bool torch = true;
};

// Median milliseconds of `runs` calls of f after one warm-up call.
template <class F>
double time_ms(int runs, F&& f) {
  f();
  std::vector<double> ms;
  for (int i = 0; i < runs; i++) {
    const auto t0 = Clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return bench::median(ms);
}

double torch_ms(const std::string& op, const Options& o) {
  return bench::run_torch_peer(
             "op --op " + op + " --shape " + std::to_string(o.rows) + "," +
             std::to_string(o.channels) + " --groups " + std::to_string(o.groups) + " --threads " +
             std::to_string(o.threads) + " --steps " + std::to_string(o.runs) + " --warmup 1")
      .at("ms_median")
      .get<double>();
}

int run(int argc, char** argv) {
  Options o;
  bench::Flags("activation_vs_torch")
      .add("--rows", o.rows)
      .add("--channels", o.channels)
      .add("--groups", o.groups)
      .add("--threads", o.threads)
      .add("--runs", o.runs)
      .add("--no-torch", o.torch, false)
      .parse(argc, argv, 1);
  set_num_threads(o.threads);
  const int64_t n = o.rows * o.channels;
  std::vector<float> x(n), dy(n), y(n), dx(n);
  Rng rng(1);
  for (float& v : x) v = rng.normal();
  for (float& v : dy) v = rng.normal();
  const float num[6] = {0.0f, 0.5f, 0.3f, 0.05f, -0.01f, 0.001f};
  std::vector<float> den(4 * o.groups), dnum(6), dden(4 * o.groups);
  for (float& v : den) v = 0.3f * rng.normal();
  const double kan = time_ms(o.runs, [&] {
    rational_forward(y.data(), x.data(), num, den.data(), o.rows, o.channels, o.groups);
    rational_backward(dx.data(), dnum.data(), dden.data(), dy.data(), x.data(), num, den.data(),
                      o.rows, o.channels, o.groups, false);
  });
  const double gelu = time_ms(o.runs, [&] {
    gelu_forward(y.data(), x.data(), n);
    gelu_backward(dx.data(), dy.data(), x.data(), n, false);
  });
  std::printf("forward + backward on [%lld, %lld], %d groups, %d threads, median of %d\n",
              static_cast<long long>(o.rows), static_cast<long long>(o.channels), o.groups,
              o.threads, o.runs);
  std::printf("kat GR-KAN %9.2f ms\nkat GELU   %9.2f ms\nGR-KAN / GELU in kat: %.2fx\n", kan, gelu,
              kan / gelu);
  if (o.torch) {
    const double tk = torch_ms("rational", o), tg = torch_ms("gelu", o);
    std::printf("torch GR-KAN %9.2f ms (kat %.1fx faster)\n", tk, tk / kan);
    std::printf("torch GELU   %9.2f ms (kat %.1fx faster)\n", tg, tg / gelu);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return kat::bench::run_main(argc, argv, "activation_vs_torch", run);
}
