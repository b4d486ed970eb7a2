// Google Benchmark micro-benchmarks of kat's CPU kernels at the shapes that matter: the GR-KAN
// against the GELU it replaces on a KAT-T feed-forward activation ([128, 197, 768], 8 groups),
// LayerNorm, attention of KAT-T and of the default 28x28 model, their linear layers and kat lra
// pathfinder's (kat's own narrow kernel against OpenBLAS, BM_LinearForwardBackward), the language
// model's kernels: causal attention, linear attention, RoPE, one decode step's attention over the
// KV cache, and the fused softmax cross-entropy over the byte vocabulary; linear attention and GLA
// at kat lra pathfinder's batch, one call against one call per row (BM_MixerBatchRows).
//
//   build/micro_kernels [--benchmark_filter=Rational] [--benchmark_repetitions=5]
//
// Threads: KAT_THREADS (default: all cores). Bytes/s count every tensor read or written once.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "kat/kernels.h"
#include "kat/parallel.h"
#include "kat/rng.h"

namespace {

using namespace kat;

std::vector<float> random_vector(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  Rng rng(seed);
  for (float& x : v) x = rng.normal() * scale;
  return v;
}

// The KAT-T feed-forward activation: batch 128, 197 tokens, hidden 768.
constexpr int64_t kRows = 128 * 197, kHidden = 768;
constexpr int kGroups = 8;

struct Activation {
  std::vector<float> x = random_vector(kRows * kHidden, 1), dy = random_vector(kRows * kHidden, 2);
  std::vector<float> y = std::vector<float>(kRows * kHidden),
                     dx = std::vector<float>(kRows * kHidden);
  std::vector<float> num = {0.0f, 0.5f, 0.3f, 0.05f, -0.01f, 0.001f};
  std::vector<float> den = random_vector(kGroups * kRationalDen, 3, 0.3f);
  std::vector<float> dnum = std::vector<float>(kRationalNum),
                     dden = std::vector<float>(kGroups * kRationalDen);
};

Activation& activation() {
  static Activation a;
  return a;
}

void set_bytes(benchmark::State& state, int tensors) {
  state.SetBytesProcessed(state.iterations() * tensors * kRows * kHidden * int64_t(sizeof(float)));
}

void BM_RationalForward(benchmark::State& state) {
  Activation& a = activation();
  for (auto _ : state)
    rational_forward(a.y.data(), a.x.data(), a.num.data(), a.den.data(), kRows, kHidden, kGroups);
  set_bytes(state, 2);
}

void BM_RationalForwardBackward(benchmark::State& state) {
  Activation& a = activation();
  for (auto _ : state) {
    rational_forward(a.y.data(), a.x.data(), a.num.data(), a.den.data(), kRows, kHidden, kGroups);
    rational_backward(a.dx.data(), a.dnum.data(), a.dden.data(), a.dy.data(), a.x.data(),
                      a.num.data(), a.den.data(), kRows, kHidden, kGroups, false);
  }
  set_bytes(state, 5);
}

void BM_GeluForward(benchmark::State& state) {
  Activation& a = activation();
  for (auto _ : state) gelu_forward(a.y.data(), a.x.data(), kRows * kHidden);
  set_bytes(state, 2);
}

void BM_GeluForwardBackward(benchmark::State& state) {
  Activation& a = activation();
  for (auto _ : state) {
    gelu_forward(a.y.data(), a.x.data(), kRows * kHidden);
    gelu_backward(a.dx.data(), a.dy.data(), a.x.data(), kRows * kHidden, false);
  }
  set_bytes(state, 5);
}

// LayerNorm, attention and linear layers: args are rows (B*T) and channels.
void BM_LayerNormForwardBackward(benchmark::State& state) {
  const int64_t R = state.range(0), C = state.range(1);
  const auto x = random_vector(R * C, 4), dy = random_vector(R * C, 5), w = random_vector(C, 6);
  std::vector<float> y(R * C), dx(R * C), mean(R), rstd(R), dw(C), db(C);
  for (auto _ : state) {
    layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), w.data(), R, C,
                      1e-6f);
    layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(),
                       rstd.data(), w.data(), R, C);
  }
}

// args: batch, tokens, channels, heads
void BM_AttentionForwardBackward(benchmark::State& state) {
  const int64_t B = state.range(0), T = state.range(1), C = state.range(2), H = state.range(3);
  const auto qkv = random_vector(B * T * 3 * C, 7), dout = random_vector(B * T * C, 8);
  std::vector<float> out(B * T * C), lse(B * H * T), dqkv(B * T * 3 * C);
  std::vector<float> scratch(attention_scratch_floats());
  for (auto _ : state) {
    attention_forward(out.data(), lse.data(), scratch.data(), qkv.data(), B, T, C, H);
    attention_backward(dqkv.data(), scratch.data(), dout.data(), out.data(), qkv.data(), lse.data(),
                       B, T, C, H, false, false);
  }
}

// args: rows, in, out, path. Without bias: the three products alone. Path 0 is kat's linear layer
// (its own kernel for narrow layers, src/kernels/cpu/linear.cpp), path 1 the same products through
// OpenBLAS alone, as every layer ran before.
void BM_LinearForwardBackward(benchmark::State& state) {
  const int64_t R = state.range(0), I = state.range(1), O = state.range(2);
  const bool blas = state.range(3) == 1;
  const auto x = random_vector(R * I, 9), w = random_vector(O * I, 10),
             dy = random_vector(R * O, 11);
  std::vector<float> y(R * O), dx(R * I), dw(O * I);
  for (auto _ : state) {
    if (blas) {
      gemm(false, true, R, O, I, 1.0f, x.data(), I, w.data(), I, 0.0f, y.data(), O);
      gemm(false, false, R, I, O, 1.0f, dy.data(), O, w.data(), I, 0.0f, dx.data(), I);
      gemm(true, false, O, I, R, 1.0f, dy.data(), O, x.data(), I, 1.0f, dw.data(), I);
    } else {
      linear_forward(y.data(), x.data(), w.data(), nullptr, R, I, O);
      linear_backward(dx.data(), dw.data(), nullptr, dy.data(), x.data(), w.data(), R, I, O, false);
    }
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(6.0 * R * I * O * state.iterations(), benchmark::Counter::kIsRate,
                         benchmark::Counter::kIs1000);
}

// args: tokens (batch 1 x 16 sequences of `tokens`), causal; kat_lm's width: d 256, 4 heads.
void BM_CausalAttentionForwardBackward(benchmark::State& state) {
  const int64_t B = 16, T = state.range(0), C = 256, H = 4;
  const auto qkv = random_vector(B * T * 3 * C, 12), dout = random_vector(B * T * C, 13);
  std::vector<float> out(B * T * C), lse(B * H * T), dqkv(B * T * 3 * C);
  std::vector<float> scratch(attention_scratch_floats());
  for (auto _ : state) {
    attention_forward(out.data(), lse.data(), scratch.data(), qkv.data(), B, T, C, H, true);
    attention_backward(dqkv.data(), scratch.data(), dout.data(), out.data(), qkv.data(), lse.data(),
                       B, T, C, H, true, false);
  }
}

// args: tokens, causal (0/1); batch 1, d 256, 4 heads.
void BM_LinearAttentionForwardBackward(benchmark::State& state) {
  const int64_t T = state.range(0), C = 256, H = 4;
  const bool causal = state.range(1) != 0;
  const auto qkv = random_vector(T * 3 * C, 14), dout = random_vector(T * C, 15);
  std::vector<float> out(T * C), dqkv(T * 3 * C);
  std::vector<float> scratch(linear_attention_scratch_floats(1, T, C, H));
  std::vector<float> saved(linear_attention_saved_floats(1, T, C, H, causal));
  for (auto _ : state) {
    linear_attention_forward(out.data(), saved.data(), scratch.data(), qkv.data(), 1, T, C, H,
                             causal);
    linear_attention_backward(dqkv.data(), scratch.data(), dout.data(), out.data(), saved.data(),
                              qkv.data(), 1, T, C, H, causal, false);
  }
}

// args: mixer (0 linear attention, 1 GLA), split (0: one call for the batch, which takes whole
// rows per thread when it has at least as many rows as threads; 1: one call per row, the threads
// sharing each row's heads, as every call did before batch lanes). Forward + backward at kat lra
// pathfinder's shape: batch 256, 1024 pixels, d 32, 2 heads, bidirectional.
void BM_MixerBatchRows(benchmark::State& state) {
  const int64_t B = 256, T = 1024, C = 32, H = 2;
  const bool gla = state.range(0) != 0, per_row = state.range(1) != 0;
  const auto qkv = random_vector(B * T * 3 * C, 17), dout = random_vector(B * T * C, 18);
  std::vector<float> gates = random_vector(B * T * C, 19, 0.1f);
  for (float& g : gates) g = -std::abs(g);  // log decays <= 0
  std::vector<float> out(B * T * C), dqkv(B * T * 3 * C), dg(B * T * C);
  std::vector<float> scratch(
      std::max(linear_attention_scratch_floats(B, T, C, H), gla_scratch_floats(B, T, C, H)));
  std::vector<float> saved(linear_attention_saved_floats(B, T, C, H, false));
  auto run = [&](int64_t b, int64_t rows) {  // rows [b, b + rows)
    const float *x = qkv.data() + b * T * 3 * C, *g = gates.data() + b * T * C,
                *dy = dout.data() + b * T * C;
    float *y = out.data() + b * T * C, *dx = dqkv.data() + b * T * 3 * C;
    if (gla) {
      gla_forward(y, scratch.data(), x, g, rows, T, C, H, false);
      gla_backward(dx, dg.data() + b * T * C, scratch.data(), dy, x, g, rows, T, C, H, false,
                   false);
      return;
    }
    float* s = saved.data() + b * linear_attention_saved_floats(1, T, C, H, false);
    linear_attention_forward(y, s, scratch.data(), x, rows, T, C, H, false);
    linear_attention_backward(dx, scratch.data(), dy, y, s, x, rows, T, C, H, false, false);
  };
  for (auto _ : state) {
    if (!per_row) run(0, B);
    for (int64_t b = 0; per_row && b < B; b++) run(b, 1);
  }
}

// RoPE forward + backward on a kat_lm training batch: 16 x 256 tokens, d 256, 4 heads.
void BM_RopeForwardBackward(benchmark::State& state) {
  const int64_t B = 16, T = 256, C = 256, H = 4, hd = C / H;
  auto qkv = random_vector(B * T * 3 * C, 16);
  std::vector<float> cos(T * hd / 2), sin(T * hd / 2);
  rope_tables(cos.data(), sin.data(), T, hd, 10000.0);
  for (auto _ : state) {
    rope_rotate(qkv.data(), cos.data(), sin.data(), B, T, C, H, 0, false);
    rope_rotate(qkv.data(), cos.data(), sin.data(), B, T, C, H, 0, true);
  }
}

// One generated token's attention over `n` cached keys and values, d 256, 4 heads.
void BM_AttentionDecode(benchmark::State& state) {
  const int64_t n = state.range(0), C = 256, H = 4;
  const auto q = random_vector(C, 17), k = random_vector(n * C, 18), v = random_vector(n * C, 19);
  std::vector<float> out(C), scratch(n);
  for (auto _ : state)
    attention_decode(out.data(), scratch.data(), q.data(), k.data(), v.data(), n, C, H);
}

// Softmax cross-entropy forward + backward over the byte vocabulary, 16 x 256 positions.
void BM_SoftmaxXentForwardBackward(benchmark::State& state) {
  const int64_t R = 16 * 256, V = 257;
  const auto logits = random_vector(R * V, 20);
  std::vector<int32_t> labels(R);
  for (int64_t i = 0; i < R; i++) labels[i] = static_cast<int32_t>((i * 37) % V);
  std::vector<float> losses(R), probs(R * V), dlogits(R * V);
  for (auto _ : state) {
    softmax_xent_forward(losses.data(), probs.data(), logits.data(), labels.data(), R, V, 0.0f);
    softmax_xent_backward(dlogits.data(), probs.data(), labels.data(), R, V, 0.0f, 1.0f / R);
  }
}

BENCHMARK(BM_RationalForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_RationalForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GeluForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GeluForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LayerNormForwardBackward)
    ->Args({128 * 50, 64})
    ->Args({32 * 197, 192})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_AttentionForwardBackward)
    ->Args({128, 50, 64, 4})
    ->Args({32, 197, 192, 3})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// The default 28x28 model's layers (qkv, proj, fc1, fc2), KAT-T's feed-forward, kat lra
// pathfinder's layers (2 x 32 model, a quarter of its batch of 256: qkv, fc1, fc2, proj) and a
// 256-wide layer, the widest that takes kat's own kernel; each through both paths.
void linear_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t path : {0, 1})
    for (auto [R, I, O] : {std::array<int64_t, 3>{128 * 50, 64, 192},
                           {128 * 50, 64, 64},
                           {128 * 50, 64, 256},
                           {128 * 50, 256, 64},
                           {32 * 197, 192, 768},
                           {64 * 1024, 32, 96},
                           {64 * 1024, 32, 64},
                           {64 * 1024, 64, 32},
                           {64 * 1024, 32, 32},
                           {16 * 1024, 256, 256}})
      b->Args({R, I, O, path});
}
BENCHMARK(BM_LinearForwardBackward)
    ->Apply(linear_shapes)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CausalAttentionForwardBackward)
    ->Arg(256)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_LinearAttentionForwardBackward)
    ->Args({4096, 0})
    ->Args({4096, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_MixerBatchRows)
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_RopeForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AttentionDecode)->Arg(256)->Arg(1024)->UseRealTime();
BENCHMARK(BM_SoftmaxXentForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  kat::use_short_openmp_spin(argv);
  const char* threads = std::getenv("KAT_THREADS");
  kat::set_num_threads(threads ? std::atoi(threads) : 0);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
