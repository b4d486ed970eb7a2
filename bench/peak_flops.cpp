// This CPU's peak float32 FLOP/s, measured with a tight FMA loop, against the GEMMs of KAT-T.
//
//   build/peak_flops [--threads N]
//
// The peak loop keeps 12 independent 64-byte vectors of fused multiply-adds in flight per thread
// (enough to cover FMA latency on current x86 cores); the GEMMs are KAT-T/16's largest at batch 32
// (197 tokens): qkv, fc1 and fc2, forward (x W^T) and the two backward products.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kat/kernels.h"
#include "kat/parallel.h"
#include "kat/rng.h"

namespace {

using Clock = std::chrono::steady_clock;
typedef float v16 __attribute__((vector_size(64)));
double g_checksum = 0;  // printed, so the FMA results are used

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// FLOP/s of `iters` rounds of 12 vector FMAs on every thread.
double fma_peak(int64_t iters) {
  constexpr int kChains = 12;
  std::vector<float> sink(static_cast<size_t>(kat::num_threads()) * 16);
  const auto t0 = Clock::now();
#pragma omp parallel
  {
    v16 acc[kChains];
    for (int i = 0; i < kChains; i++) acc[i] = v16{} + 1.0f + 0.001f * i;
    v16 a = v16{} + 0.999999f, b = v16{} + 1e-7f;
    for (int64_t it = 0; it < iters; it++) {
      for (int i = 0; i < kChains; i++) acc[i] = acc[i] * a + b;
      asm volatile("" : "+x"(a));  // keep the multiplier opaque so the loop is not folded
    }
    v16 s = acc[0];
    for (int i = 1; i < kChains; i++) s += acc[i];
    std::memcpy(&sink[omp_get_thread_num() * 16], &s, sizeof s);
  }
  const double t = seconds_since(t0);
  g_checksum += sink[0];
  return 2.0 * 16 * kChains * iters * kat::num_threads() / t;
}

double best_of(int runs, const std::function<double()>& f) {
  double best = 0;
  for (int i = 0; i < runs; i++) best = std::max(best, f());
  return best;
}

// GFLOP/s of C[M,N] = op(A) op(B), best of several runs.
double gemm_rate(bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
  std::vector<float> A(M * K), B(K * N), C(M * N);
  kat::Rng rng(1);
  for (float& x : A) x = rng.normal();
  for (float& x : B) x = rng.normal();
  return best_of(5, [&] {
    const auto t0 = Clock::now();
    kat::gemm(ta, tb, M, N, K, 1.0f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.0f, C.data(), N);
    return 2.0 * M * N * K / seconds_since(t0);
  });
}

}  // namespace

int main(int argc, char** argv) {
  kat::use_short_openmp_spin(argv);
  int threads = 0;
  for (int i = 1; i < argc; i++)
    if (std::string(argv[i]) == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
  kat::set_num_threads(threads);
  std::printf("threads: %d\n", kat::num_threads());
  const double peak = best_of(5, [] { return fma_peak(20'000'000); });
  std::printf("peak (FMA loop): %.1f GFLOP/s (checksum %g)\n", peak / 1e9, g_checksum);
  const int64_t R = 32 * 197, d = 192, hid = 768;
  struct Shape {
    const char* name;
    bool ta, tb;
    int64_t M, N, K;
  };
  const Shape shapes[] = {
      {"qkv  forward  [6304,192]x[192,576]", false, true, R, 3 * d, d},
      {"fc1  forward  [6304,192]x[192,768]", false, true, R, hid, d},
      {"fc2  forward  [6304,768]x[768,192]", false, true, R, d, hid},
      {"fc1  dx       [6304,768]x[768,192]", false, false, R, d, hid},
      {"fc1  dW       [768,6304]x[6304,192]", true, false, hid, d, R},
  };
  for (const Shape& s : shapes) {
    const double rate = gemm_rate(s.ta, s.tb, s.M, s.N, s.K);
    std::printf("%-40s %7.1f GFLOP/s  %5.1f%% of peak\n", s.name, rate / 1e9, 100 * rate / peak);
  }
  return 0;
}
