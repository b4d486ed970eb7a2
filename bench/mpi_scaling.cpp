// Data-parallel scaling of a training step from 1 to N ranks (one thread each), kat under mpirun
// against PyTorch's DistributedDataParallel (gloo), run in one go.
//
//   build/mpi_scaling [--config kat_fmnist] [--batch 64] [--ranks 2] [--steps 30] [--warmup 5]
//                     [--runs 3] [--bucket FLOATS] [--no-overlap] [--no-torch]
//
// Weak scaling, as data-parallel training is used: the batch per rank stays fixed, so N ranks
// train on N times the images per step. Each run launches this program as `mpirun -np 1` and
// `mpirun -np N` workers on loopback; a worker times `steps` steps (forward, cross-entropy,
// backward with the bucketed gradient all-reduce, clipping, AdamW) on synthetic images after
// `warmup` steps, and reports the job's images/s and the share of rank 0's step spent in the
// all-reduce (starting buckets during backward, then waiting for them, which includes waiting
// for a slower rank), and the time of the exchange alone when all ranks arrive together. Then
// tools/torch_peer.py does the same with 1 process and with N DDP processes. Prints per run and the
// medians: images/s at 1 and N ranks and the speedup N / 1 for kat and PyTorch, and for kat the
// milliseconds of rank 0's step outside the all-reduce at 1 and N ranks (ranks sharing a machine
// share its memory bandwidth and caches: what that costs shows there, apart from the exchange).
// --no-overlap starts every bucket after backward (to measure what overlapping buys).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "flags.h"
#include "kat/config.h"
#include "kat/distributed.h"
#include "kat/error.h"
#include "kat/model.h"
#include "kat/optim.h"
#include "kat/parallel.h"
#include "kat/rng.h"
#include "peer.h"

namespace {

using namespace kat;

struct Options {
  std::string config = "kat_fmnist";
  int batch = 64, ranks = 2, steps = 30, warmup = 5, runs = 3;
  int64_t bucket = 0;  // floats per all-reduce bucket; 0: GradientSync's default
  bool overlap = true, torch = true, worker = false;
};

Options parse(int argc, char** argv) {
  Options o;
  bench::Flags("mpi_scaling")
      .add("--config", o.config)
      .add("--batch", o.batch)
      .add("--ranks", o.ranks)
      .add("--steps", o.steps)
      .add("--warmup", o.warmup)
      .add("--runs", o.runs)
      .add("--bucket", o.bucket)
      .add("--no-overlap", o.overlap, false)
      .add("--no-torch", o.torch, false)
      .add("--worker", o.worker, true)
      .parse(argc, argv, 1);
  check(o.batch > 0 && o.ranks > 1 && o.steps > 0 && o.runs > 0,
        "--batch, --steps and --runs must be positive and --ranks at least 2");
  return o;
}

// One rank of the job: times the steps and prints {"images_per_s", "allreduce_share"} on rank 0.
int worker(const Options& o) {
  set_num_threads(1);
  const ModelConfig c = resolve_config(o.config);
  VisionTransformer model(c);
  model.init(0);
  AdamW opt(model.params(), AdamWConfig{});
  dist::GradientSync sync = o.bucket > 0 ? dist::GradientSync(model.params(), o.bucket)
                                         : dist::GradientSync(model.params());
  const int64_t per = static_cast<int64_t>(c.in_chans) * c.img_size * c.img_size;
  std::vector<float> images(o.batch * per);
  std::vector<int32_t> labels(o.batch);
  Rng rng = Rng::derive(1, 0, static_cast<uint64_t>(dist::rank()));
  for (float& x : images) x = rng.normal();
  for (int32_t& y : labels) y = static_cast<int32_t>(rng.below(c.num_classes));
  auto step = [&] {
    model.params().zero_grad();
    model.forward(images.data(), labels.data(), o.batch, true, 0.1f, 0);
    if (o.overlap) sync.overlap_next_backward();
    model.backward();
    double loss = 0;
    sync.finish(&loss, 1, 0);
    clip_grad_norm(model.params(), 1.0f);
    opt.step(1e-3f);
  };
  for (int i = 0; i < o.warmup; i++) step();
  const double sync0 = sync.seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < o.steps; i++) step();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // The exchange alone: every rank ready at once (after a barrier), no compute to wait for.
  double token = 0, exchange = 0;
  for (int i = 0; i < 20; i++) {
    dist::sum(&token, 1, "barrier");
    const double before = sync.seconds();
    sync.finish(&token, 1, 0);
    exchange += sync.seconds() - before;
  }
  if (dist::root())
    std::printf(
        "{\"images_per_s\": %.3f, \"allreduce_share\": %.5f, \"compute_ms\": %.3f, "
        "\"exchange_ms\": %.4f, \"params\": %lld}\n",
        static_cast<double>(o.batch) * dist::size() * o.steps / s, (sync.seconds() - sync0) / s,
        1e3 * (s - (sync.seconds() - sync0)) / o.steps, 1e3 * exchange / 20,
        static_cast<long long>(model.params().total()));
  return 0;
}

nlohmann::json launch(const Options& o, int ranks, const std::string& self) {
  std::string cmd = "env OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo mpirun ";
  if (::geteuid() == 0) cmd += "--allow-run-as-root ";
  cmd += "--oversubscribe -np " + std::to_string(ranks) + " " + self + " --worker --config " +
         o.config + " --batch " + std::to_string(o.batch) + " --steps " + std::to_string(o.steps) +
         " --warmup " + std::to_string(o.warmup) + (o.overlap ? "" : " --no-overlap");
  return bench::run_json_command(cmd, "the mpirun job failed (openmpi-bin installed?)");
}

double torch_images_per_s(const Options& o, int ranks) {
  return bench::run_torch_peer("train --arch " + o.config + " --batch " + std::to_string(o.batch) +
                               " --threads 1 --steps " + std::to_string(o.steps) + " --warmup " +
                               std::to_string(o.warmup) + " --ranks " + std::to_string(ranks))
      .at("images_per_s")
      .get<double>();
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (o.worker) {
    dist::init(&argc, &argv);
    const int status = worker(o);
    dist::finalize();
    return status;
  }
  check(dist::built_with_mpi(), "this build has no MPI (Debian: libopenmpi-dev; then rebuild)");
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  check(n > 0, "cannot find this program's path");
  self[n] = '\0';
  const int N = o.ranks;
  std::printf(
      "data-parallel weak scaling, %s, batch %d per rank, 1 thread per rank, %d timed "
      "steps, all-reduce %s backward\n",
      o.config.c_str(), o.batch, o.steps, o.overlap ? "overlapped with" : "after");
  std::printf("%4s %12s %12s %8s %10s %11s %11s %12s %12s %8s\n", "run", "kat 1 img/s",
              ("kat " + std::to_string(N) + " img/s").c_str(), "speedup", "allreduce", "compute 1",
              ("compute " + std::to_string(N)).c_str(), "torch 1",
              ("torch " + std::to_string(N)).c_str(), "speedup");
  std::vector<double> k1, kn, ks, share, c1, cn, ex, t1, tn, ts;
  int64_t params = 0;
  for (int r = 0; r < o.runs; r++) {
    const nlohmann::json one = launch(o, 1, self), many = launch(o, N, self);
    k1.push_back(one.at("images_per_s").get<double>());
    c1.push_back(one.at("compute_ms").get<double>());
    kn.push_back(many.at("images_per_s").get<double>());
    cn.push_back(many.at("compute_ms").get<double>());
    ex.push_back(many.at("exchange_ms").get<double>());
    share.push_back(many.at("allreduce_share").get<double>());
    ks.push_back(kn.back() / k1.back());
    params = one.at("params").get<int64_t>();
    std::printf("%4d %12.1f %12.1f %7.2fx %9.1f%% %8.1f ms %8.1f ms", r + 1, k1.back(), kn.back(),
                ks.back(), 100 * share.back(), c1.back(), cn.back());
    if (o.torch) {
      t1.push_back(torch_images_per_s(o, 1));
      tn.push_back(torch_images_per_s(o, N));
      ts.push_back(tn.back() / t1.back());
      std::printf(" %12.1f %12.1f %7.2fx", t1.back(), tn.back(), ts.back());
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  std::printf(
      "kat   median: %.1f -> %.1f img/s, speedup %.2fx; all-reduce of %lld gradients: "
      "%.1f%% of the step (%.3f ms when no rank waits for another); step outside it %.1f -> "
      "%.1f ms\n",
      bench::median(k1), bench::median(kn), bench::median(ks), static_cast<long long>(params),
      100 * bench::median(share), bench::median(ex), bench::median(c1), bench::median(cn));
  if (o.torch)
    std::printf("torch median: %.1f -> %.1f img/s, speedup %.2fx\n", bench::median(t1),
                bench::median(tn), bench::median(ts));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return kat::bench::run_main(argc, argv, "mpi_scaling", run); }
