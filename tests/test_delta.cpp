// DeltaNet: the chunked kernel against its token-by-token double-precision reference (forward),
// its backward against central differences of that reference, decoding against the forward, and
// write strengths near 1 on a long sequence.
#include <gtest/gtest.h>

#include <algorithm>
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

// Write strengths as a DeltaNet layer makes them: sigmoid(N(0, 1) + shift) in (0, 1).
std::vector<float> strengths(int64_t n, uint64_t seed, float shift = 0.0f) {
  auto beta = randn(n, seed);
  for (float& x : beta) x = 1.0f / (1.0f + std::exp(-(x + shift)));
  return beta;
}

std::vector<double> to_double(const std::vector<float>& x) { return {x.begin(), x.end()}; }

// Lengths around the chunk of 32 and below it (one row, part of a chunk, 16 and 17 rows, exactly
// one chunk, one and a row, several with a ragged last one), causal and bidirectional.
class DeltaVsReference : public ::testing::TestWithParam<std::tuple<int64_t, bool>> {};

TEST_P(DeltaVsReference, Forward) {
  const auto [T, causal] = GetParam();
  const int64_t B = 2, C = 8, H = 2;
  const auto qkv = randn(B * T * 3 * C, 1), beta = strengths(B * T * H, 2);
  std::vector<float> out(B * T * C), scratch(delta_scratch_floats(T, C, H));
  delta_forward(out.data(), scratch.data(), qkv.data(), beta.data(), B, T, C, H, causal);
  std::vector<double> ref(out.size());
  delta_forward_ref(ref.data(), to_double(qkv).data(), to_double(beta).data(), B, T, C, H, causal);
  for (size_t i = 0; i < out.size(); i++)
    ASSERT_NEAR(out[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << "out " << i;
}

INSTANTIATE_TEST_SUITE_P(Lengths, DeltaVsReference,
                         ::testing::Combine(::testing::Values(1, 5, 16, 17, 32, 33, 40, 100),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return "T" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_causal" : "");
                         });

// dqkv and dbeta against central differences of the double reference's loss sum(out * R). The
// gradients start at 0.25 and -0.5 and the kernel accumulates onto them.
void expect_reference_gradients(const std::vector<float>& qkv, const std::vector<float>& beta,
                                int64_t B, int64_t T, int64_t C, int64_t H, bool causal) {
  const auto R = randn(B * T * C, 5);
  std::vector<float> dqkv(qkv.size(), 0.25f), dbeta(beta.size(), -0.5f);
  std::vector<float> scratch(delta_scratch_floats(T, C, H));
  delta_backward(dqkv.data(), dbeta.data(), scratch.data(), R.data(), qkv.data(), beta.data(), B, T,
                 C, H, causal, true);
  auto qd = to_double(qkv), bd = to_double(beta);
  std::vector<double> ref(B * T * C);
  auto loss = [&] {
    delta_forward_ref(ref.data(), qd.data(), bd.data(), B, T, C, H, causal);
    double l = 0;
    for (size_t i = 0; i < ref.size(); i++) l += R[i] * ref[i];
    return l;
  };
  testing::expect_reference_gradient(loss, qd, dqkv, 0.25, "dqkv");
  testing::expect_reference_gradient(loss, bd, dbeta, -0.5, "dbeta");
}

// Keys drawn from only 3 directions plus a little noise: within a chunk many keys nearly repeat,
// and with write strengths near 1 the WY system is close to its worst case.
void repeat_keys(std::vector<float>& qkv, int64_t rows, int64_t C, uint64_t seed) {
  const auto directions = randn(3 * C, seed), noise = randn(rows * C, seed + 1, 0.01f);
  for (int64_t t = 0; t < rows; t++)
    for (int64_t c = 0; c < C; c++)
      qkv[t * 3 * C + C + c] = directions[(t % 3) * C + c] + noise[t * C + c];
}

class DeltaGradients : public ::testing::TestWithParam<std::tuple<int64_t, bool>> {};

TEST_P(DeltaGradients, MatchFiniteDifferencesOfReference) {
  const auto [T, causal] = GetParam();
  const int64_t B = 2, C = 8, H = 2;
  expect_reference_gradients(randn(B * T * 3 * C, 3), strengths(B * T * H, 4), B, T, C, H, causal);
}

TEST(Delta, GradientsWithStrengthsNearOneAndRepeatedKeys) {
  const int64_t B = 2, T = 70, C = 8, H = 2;
  auto qkv = randn(B * T * 3 * C, 3);
  repeat_keys(qkv, B * T, C, 20);
  for (bool causal : {true, false})
    expect_reference_gradients(qkv, strengths(B * T * H, 4, 8.0f), B, T, C, H, causal);
}

INSTANTIATE_TEST_SUITE_P(Lengths, DeltaGradients,
                         ::testing::Combine(::testing::Values(1, 7, 40, 70), ::testing::Bool()),
                         [](const auto& info) {
                           return "T" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_causal" : "");
                         });

// Generation one token at a time reproduces the causal forward at every position.
TEST(Delta, DecodeMatchesCausalForward) {
  const int64_t B = 2, T = 70, C = 8, H = 2, hd = C / H;
  const auto qkv = randn(B * T * 3 * C, 6), beta = strengths(B * T * H, 7);
  std::vector<float> out(B * T * C), scratch(delta_scratch_floats(T, C, H));
  delta_forward(out.data(), scratch.data(), qkv.data(), beta.data(), B, T, C, H, true);
  std::vector<float> state(H * hd * hd), step(C);
  for (int64_t b = 0; b < B; b++) {
    std::fill(state.begin(), state.end(), 0.0f);
    for (int64_t t = 0; t < T; t++) {
      const float* row = qkv.data() + (b * T + t) * 3 * C;
      delta_decode(step.data(), state.data(), row, row + C, row + 2 * C,
                   beta.data() + (b * T + t) * H, C, H);
      for (int64_t c = 0; c < C; c++) {
        const float want = out[(b * T + t) * C + c];
        ASSERT_NEAR(step[c], want, 1e-5 * (1 + std::fabs(want))) << "b " << b << " t " << t;
      }
    }
  }
}

// accumulate = false ignores what the buffers held (NaN here); accumulate = true adds onto it.
TEST(Delta, BackwardWritesOrAdds) {
  const int64_t B = 2, T = 37, C = 8, H = 2;
  const auto qkv = randn(B * T * 3 * C, 10), beta = strengths(B * T * H, 11),
             dout = randn(B * T * C, 12);
  std::vector<float> scratch(delta_scratch_floats(T, C, H));
  for (bool causal : {false, true}) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> dqkv(qkv.size(), nan), dbeta(beta.size(), nan);
    delta_backward(dqkv.data(), dbeta.data(), scratch.data(), dout.data(), qkv.data(), beta.data(),
                   B, T, C, H, causal, false);
    const auto dqkv0 = randn(qkv.size(), 13), dbeta0 = randn(beta.size(), 14);
    auto dqkv_sum = dqkv0, dbeta_sum = dbeta0;
    delta_backward(dqkv_sum.data(), dbeta_sum.data(), scratch.data(), dout.data(), qkv.data(),
                   beta.data(), B, T, C, H, causal, true);
    for (size_t i = 0; i < dqkv.size(); i++)
      ASSERT_NEAR(dqkv_sum[i], dqkv0[i] + dqkv[i], 1e-5 * (1 + std::fabs(dqkv[i]))) << "dqkv " << i;
    for (size_t i = 0; i < dbeta.size(); i++)
      ASSERT_NEAR(dbeta_sum[i], dbeta0[i] + dbeta[i], 1e-5 * (1 + std::fabs(dbeta[i])))
          << "dbeta " << i;
  }
}

// 2000 tokens with every write strength near 1 (sigmoid(N(0, 1) + 8) > 0.99) and repeated keys.
// Outputs and gradients stay finite and the outputs match the reference on every token.
class DeltaLongSequence : public ::testing::TestWithParam<bool> {};

TEST_P(DeltaLongSequence, StaysFiniteAndMatchesReference) {
  const bool causal = GetParam();
  const int64_t T = 2000, C = 16, H = 2;
  auto qkv = randn(T * 3 * C, 8);
  repeat_keys(qkv, T, C, 9);
  const auto beta = strengths(T * H, 11, 8.0f), dout = randn(T * C, 12);
  std::vector<float> out(T * C), dqkv(qkv.size()), dbeta(beta.size());
  std::vector<float> scratch(delta_scratch_floats(T, C, H));
  delta_forward(out.data(), scratch.data(), qkv.data(), beta.data(), 1, T, C, H, causal);
  delta_backward(dqkv.data(), dbeta.data(), scratch.data(), dout.data(), qkv.data(), beta.data(), 1,
                 T, C, H, causal, false);
  for (float x : out) ASSERT_TRUE(std::isfinite(x));
  for (float x : dqkv) ASSERT_TRUE(std::isfinite(x));
  for (float x : dbeta) ASSERT_TRUE(std::isfinite(x));

  std::vector<double> ref(T * C);
  delta_forward_ref(ref.data(), to_double(qkv).data(), to_double(beta).data(), 1, T, C, H, causal);
  for (int64_t i = 0; i < T * C; i++)
    ASSERT_NEAR(out[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << "out " << i;
}

INSTANTIATE_TEST_SUITE_P(Directions, DeltaLongSequence, ::testing::Bool(), [](const auto& info) {
  return std::string(info.param ? "causal" : "bidirectional");
});

}  // namespace
}  // namespace kat
