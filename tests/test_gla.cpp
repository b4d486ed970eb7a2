// Gated linear attention: the chunked kernel against its plain double-precision reference
// (forward), its backward against central differences of that reference, decoding against the
// forward, and extreme gates (very negative, none at all) on a long sequence.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "gradcheck.h"
#include "kat/kernels.h"

namespace kat {
namespace {

using testing::randn;

// Log decays as a GLA gate makes them, logsigmoid of N(0, 2^2) logits, in (-inf, 0); with spike >
// 0 every spike-th one is -30, so some chunks' prefix sums go far below what exp(-b) survives.
std::vector<float> gates(int64_t n, uint64_t seed, int64_t spike = 0) {
  auto g = randn(n, seed, 2.0f);
  for (float& x : g) x = -std::log1p(std::exp(-x));
  if (spike > 0)
    for (int64_t i = 0; i < n; i += spike) g[i] = -30.0f;
  return g;
}

std::vector<double> to_double(const std::vector<float>& x) { return {x.begin(), x.end()}; }

// Lengths around the chunk of 16 (one row, part of a chunk, exactly one, one and a row, several,
// a ragged last chunk), causal and bidirectional, with and without gates of -30.
class GlaVsReference : public ::testing::TestWithParam<std::tuple<int64_t, bool, bool>> {};

TEST_P(GlaVsReference, Forward) {
  const auto [T, causal, spikes] = GetParam();
  const int64_t B = 2, C = 8, H = 2;
  const auto qkv = randn(B * T * 3 * C, 1), g = gates(B * T * C, 2, spikes ? 7 : 0);
  std::vector<float> out(B * T * C), scratch(gla_scratch_floats(B, T, C, H));
  gla_forward(out.data(), scratch.data(), qkv.data(), g.data(), B, T, C, H, causal);
  std::vector<double> ref(out.size());
  gla_forward_ref(ref.data(), to_double(qkv).data(), to_double(g).data(), B, T, C, H, causal);
  for (size_t i = 0; i < out.size(); i++)
    ASSERT_NEAR(out[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << "out " << i;
}

INSTANTIATE_TEST_SUITE_P(Lengths, GlaVsReference,
                         ::testing::Combine(::testing::Values(1, 5, 16, 17, 64, 150),
                                            ::testing::Bool(), ::testing::Bool()),
                         [](const auto& info) {
                           return "T" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_causal" : "") +
                                  (std::get<2>(info.param) ? "_spikes" : "");
                         });

// dqkv and dg against central differences of the double reference's loss sum(out * R). The
// gradients start at 0.25 and -0.5 and the kernel accumulates onto them.
class GlaGradients : public ::testing::TestWithParam<std::tuple<int64_t, bool>> {};

TEST_P(GlaGradients, MatchFiniteDifferencesOfReference) {
  const auto [T, causal] = GetParam();
  const int64_t B = 2, C = 8, H = 2;
  const auto qkv = randn(B * T * 3 * C, 3), g = gates(B * T * C, 4, 11), R = randn(B * T * C, 5);
  std::vector<float> dqkv(qkv.size(), 0.25f), dg(g.size(), -0.5f);
  std::vector<float> scratch(gla_scratch_floats(B, T, C, H));
  gla_backward(dqkv.data(), dg.data(), scratch.data(), R.data(), qkv.data(), g.data(), B, T, C, H,
               causal, true);
  auto qd = to_double(qkv), gd = to_double(g);
  std::vector<double> ref(B * T * C);
  auto loss = [&] {
    gla_forward_ref(ref.data(), qd.data(), gd.data(), B, T, C, H, causal);
    double l = 0;
    for (size_t i = 0; i < ref.size(); i++) l += R[i] * ref[i];
    return l;
  };
  testing::expect_reference_gradient(loss, qd, dqkv, 0.25, "dqkv");
  testing::expect_reference_gradient(loss, gd, dg, -0.5, "dg");
}

INSTANTIATE_TEST_SUITE_P(Lengths, GlaGradients,
                         ::testing::Combine(::testing::Values(1, 7, 17, 40), ::testing::Bool()),
                         [](const auto& info) {
                           return "T" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_causal" : "");
                         });

// Past one block of 256 rows the kernel carries S, dS and the gate-gradient sums from block to
// block: 600 rows are two full blocks and a partial one, scanned in time order and reversed, with
// gates mild enough (about -0.01) that the first block still reaches the last. The forward
// against the reference at every row; the backward along one random direction (Uq of qkv, Ug of
// g) at once: <dqkv, Uq> + <dg, Ug> against the central difference of the reference loss.
TEST(Gla, SequencesLongerThanABlock) {
  const int64_t T = 600, C = 8, H = 2;
  const auto qkv = randn(T * 3 * C, 21), dout = randn(T * C, 22);
  const auto Uq = randn(qkv.size(), 23), Ug = randn(T * C, 24);
  auto g = gates(T * C, 25);
  for (float& x : g) x *= 0.01f;
  for (bool causal : {false, true}) {
    std::vector<float> out(T * C), dqkv(qkv.size()), dg(g.size());
    std::vector<float> scratch(gla_scratch_floats(1, T, C, H));
    gla_forward(out.data(), scratch.data(), qkv.data(), g.data(), 1, T, C, H, causal);
    gla_backward(dqkv.data(), dg.data(), scratch.data(), dout.data(), qkv.data(), g.data(), 1, T, C,
                 H, causal, false);
    const auto qd = to_double(qkv), gd = to_double(g);
    std::vector<double> ref(out.size());
    gla_forward_ref(ref.data(), qd.data(), gd.data(), 1, T, C, H, causal);
    for (size_t i = 0; i < out.size(); i++)
      ASSERT_NEAR(out[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << "out " << i;
    auto loss_at = [&](double eps) {
      std::vector<double> x(qd), y(gd);
      for (size_t i = 0; i < x.size(); i++) x[i] += eps * Uq[i];
      for (size_t i = 0; i < y.size(); i++) y[i] += eps * Ug[i];
      gla_forward_ref(ref.data(), x.data(), y.data(), 1, T, C, H, causal);
      double l = 0;
      for (size_t i = 0; i < ref.size(); i++) l += dout[i] * ref[i];
      return l;
    };
    double analytic = 0;
    for (size_t i = 0; i < Uq.size(); i++) analytic += static_cast<double>(dqkv[i]) * Uq[i];
    for (size_t i = 0; i < Ug.size(); i++) analytic += static_cast<double>(dg[i]) * Ug[i];
    testing::expect_directional_derivative(loss_at, analytic, causal ? "causal" : "bidirectional");
  }
}

// Generation one token at a time reproduces the causal forward at every position.
TEST(Gla, DecodeMatchesCausalForward) {
  const int64_t B = 2, T = 40, C = 8, H = 2, hd = C / H;
  const auto qkv = randn(B * T * 3 * C, 6), g = gates(B * T * C, 7);
  std::vector<float> out(B * T * C), scratch(gla_scratch_floats(B, T, C, H));
  gla_forward(out.data(), scratch.data(), qkv.data(), g.data(), B, T, C, H, true);
  std::vector<float> state(H * hd * hd), step(C);
  for (int64_t b = 0; b < B; b++) {
    std::fill(state.begin(), state.end(), 0.0f);
    for (int64_t t = 0; t < T; t++) {
      const float* row = qkv.data() + (b * T + t) * 3 * C;
      gla_decode(step.data(), state.data(), row, row + C, row + 2 * C, g.data() + (b * T + t) * C,
                 C, H);
      for (int64_t c = 0; c < C; c++) {
        const float want = out[(b * T + t) * C + c];
        ASSERT_NEAR(step[c], want, 1e-5 * (1 + std::fabs(want))) << "b " << b << " t " << t;
      }
    }
  }
}

// 4096 tokens with a gate of -40 on every step (a chunk's prefix sums reach -640: exp(-b) would
// overflow) or of 0 (no decay: the state only grows). Outputs and gradients stay finite, and the
// outputs match the reference: on the first 200 tokens (which see only those tokens when causal,
// and nothing beyond a weight of e^-40 otherwise) and, without decay, everywhere the closed form
// o_i = tau q_i sum_j k_j^T v_j applies (every query bidirectional, the last one causal).
class GlaLongSequence : public ::testing::TestWithParam<std::tuple<float, bool>> {};

TEST_P(GlaLongSequence, StaysFiniteAndMatchesReference) {
  const auto [gate, causal] = GetParam();
  const int64_t T = 4096, P = 200, C = 8, H = 2, hd = C / H;
  const auto qkv = randn(T * 3 * C, 8), dout = randn(T * C, 9);
  const std::vector<float> g(T * C, gate);
  std::vector<float> out(T * C), dqkv(qkv.size()), dg(g.size());
  std::vector<float> scratch(gla_scratch_floats(1, T, C, H));
  gla_forward(out.data(), scratch.data(), qkv.data(), g.data(), 1, T, C, H, causal);
  gla_backward(dqkv.data(), dg.data(), scratch.data(), dout.data(), qkv.data(), g.data(), 1, T, C,
               H, causal, false);
  for (float x : out) ASSERT_TRUE(std::isfinite(x));
  for (float x : dqkv) ASSERT_TRUE(std::isfinite(x));
  for (float x : dg) ASSERT_TRUE(std::isfinite(x));

  const std::vector<double> qd(qkv.begin(), qkv.begin() + P * 3 * C),
      gd(g.begin(), g.begin() + P * C);
  std::vector<double> ref(P * C);
  gla_forward_ref(ref.data(), qd.data(), gd.data(), 1, P, C, H, causal);
  if (causal || gate < 0) {
    for (int64_t i = 0; i < P * C; i++)
      ASSERT_NEAR(out[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << "out " << i;
  }
  if (gate < 0) return;
  const double tau = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int64_t h = 0; h < H; h++) {
    std::vector<double> S(hd * hd, 0.0);
    for (int64_t j = 0; j < T; j++)
      for (int64_t c = 0; c < hd; c++)
        for (int64_t e = 0; e < hd; e++)
          S[c * hd + e] +=
              double(qkv[j * 3 * C + C + h * hd + c]) * qkv[j * 3 * C + 2 * C + h * hd + e];
    for (int64_t i = causal ? T - 1 : 0; i < T; i++)
      for (int64_t e = 0; e < hd; e++) {
        double want = 0;
        for (int64_t c = 0; c < hd; c++) want += tau * qkv[i * 3 * C + h * hd + c] * S[c * hd + e];
        ASSERT_NEAR(out[i * C + h * hd + e], want, 1e-4 * (1 + std::fabs(want)))
            << "row " << i << " head " << h;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Gates, GlaLongSequence,
                         ::testing::Combine(::testing::Values(-40.0f, 0.0f), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) < 0 ? "decay40" : "nodecay") +
                                  (std::get<1>(info.param) ? "_causal" : "");
                         });

// accumulate = false ignores what the buffers held (NaN here); accumulate = true adds onto it.
TEST(Gla, BackwardWritesOrAdds) {
  const int64_t B = 2, T = 37, C = 8, H = 2;
  const auto qkv = randn(B * T * 3 * C, 10), g = gates(B * T * C, 11), dout = randn(B * T * C, 12);
  std::vector<float> scratch(gla_scratch_floats(B, T, C, H));
  for (bool causal : {false, true}) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> dqkv(qkv.size(), nan), dg(g.size(), nan);
    gla_backward(dqkv.data(), dg.data(), scratch.data(), dout.data(), qkv.data(), g.data(), B, T, C,
                 H, causal, false);
    const auto dqkv0 = randn(qkv.size(), 13), dg0 = randn(g.size(), 14);
    auto dqkv_sum = dqkv0, dg_sum = dg0;
    gla_backward(dqkv_sum.data(), dg_sum.data(), scratch.data(), dout.data(), qkv.data(), g.data(),
                 B, T, C, H, causal, true);
    for (size_t i = 0; i < dqkv.size(); i++)
      ASSERT_NEAR(dqkv_sum[i], dqkv0[i] + dqkv[i], 1e-5 * (1 + std::fabs(dqkv[i]))) << "dqkv " << i;
    for (size_t i = 0; i < dg.size(); i++)
      ASSERT_NEAR(dg_sum[i], dg0[i] + dg[i], 1e-5 * (1 + std::fabs(dg[i]))) << "dg " << i;
  }
}

}  // namespace
}  // namespace kat
