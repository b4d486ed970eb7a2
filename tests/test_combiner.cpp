// Combiner-Fixed attention: the span-tiled kernel against its double reference (forward), against
// full softmax attention when one span covers the sequence, its backward against central
// differences of the double reference, and step-by-step decoding against the causal forward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gradcheck.h"
#include "heap_count.h"
#include "kat/kernels.h"

namespace kat {
namespace {

using testing::randn;

constexpr int64_t B = 2, C = 8, H = 2;

struct Forward {
  std::vector<float> out, lse, scratch;
};

Forward forward(const std::vector<float>& qkv, int64_t b, int64_t T, int64_t span, bool causal) {
  Forward run{std::vector<float>(b * T * C), std::vector<float>(b * T * H),
              std::vector<float>(combiner_scratch_floats(T, C, H, span))};
  combiner_forward(run.out.data(), run.lse.data(), run.scratch.data(), qkv.data(), b, T, C, H, span,
                   causal);
  return run;
}

std::vector<double> to_double(const std::vector<float>& x) { return {x.begin(), x.end()}; }

class CombinerVsReference : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, bool>> {};

TEST_P(CombinerVsReference, Forward) {
  const auto [T, span, causal] = GetParam();
  const auto qkv = randn(B * T * 3 * C, 1);
  const Forward run = forward(qkv, B, T, span, causal);
  std::vector<double> ref(run.out.size());
  combiner_forward_ref(ref.data(), to_double(qkv).data(), B, T, C, H, span, causal);
  for (size_t i = 0; i < ref.size(); i++)
    ASSERT_NEAR(run.out[i], ref[i], 1e-4 * std::max(1.0, std::fabs(ref[i]))) << "out " << i;
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<int64_t, int64_t, bool>>& info) {
  const auto [T, span, causal] = info.param;
  return "T" + std::to_string(T) + "_span" + std::to_string(span) + (causal ? "_causal" : "");
}

INSTANTIATE_TEST_SUITE_P(LengthsAndSpans, CombinerVsReference,
                         ::testing::Combine(::testing::Values(1, 5, 16, 17, 40, 100),
                                            ::testing::Values(1, 4, 7, 16), ::testing::Bool()),
                         case_name);

// One span covering the sequence leaves no summaries: exactly full softmax attention, forward
// (float kernel and double reference) and backward (against attention's own reference).
TEST(Combiner, OneSpanIsFullAttention) {
  for (bool causal : {false, true})
    for (int64_t T : {1, 9, 30})
      for (int64_t span : {T, T + 5}) {
        const auto qkv = randn(B * T * 3 * C, 2), dout = randn(B * T * C, 3);
        const Forward run = forward(qkv, B, T, span, causal);
        const std::vector<double> qd = to_double(qkv), dod = to_double(dout);
        std::vector<double> full(run.out.size()), ref(run.out.size());
        attention_forward_ref(full.data(), qd.data(), B, T, C, H, AttentionMask(causal));
        combiner_forward_ref(ref.data(), qd.data(), B, T, C, H, span, causal);
        for (size_t i = 0; i < full.size(); i++) {
          ASSERT_NEAR(ref[i], full[i], 1e-12) << "reference " << i;
          ASSERT_NEAR(run.out[i], full[i], 2e-5) << "out " << i;
        }
        std::vector<float> dqkv(qkv.size(), 0.0f);
        std::vector<double> dref(qkv.size(), 0.0);
        combiner_backward(dqkv.data(), std::vector<float>(run.scratch).data(), dout.data(),
                          run.out.data(), qkv.data(), run.lse.data(), B, T, C, H, span, causal);
        attention_backward_ref(dref.data(), dod.data(), qd.data(), B, T, C, H,
                               AttentionMask(causal));
        for (size_t i = 0; i < dref.size(); i++)
          ASSERT_NEAR(dqkv[i], dref[i], 5e-5) << "dqkv " << i;
      }
}

// The backward (written, not accumulated) against central differences of the double reference of
// loss = sum(out * R), every input. Continuous random keys leave no tie in any max-pool, and a
// step of 1e-6 moves no argmax.
TEST(Combiner, BackwardMatchesFiniteDifferences) {
  for (bool causal : {false, true})
    for (auto [T, span] : {std::pair<int64_t, int64_t>{13, 4}, {7, 3}}) {
      const auto qkv = randn(B * T * 3 * C, 4), R = randn(B * T * C, 5);
      const Forward run = forward(qkv, B, T, span, causal);
      std::vector<float> dqkv(qkv.size(), std::nanf("")), scratch(run.scratch);
      combiner_backward(dqkv.data(), scratch.data(), R.data(), run.out.data(), qkv.data(),
                        run.lse.data(), B, T, C, H, span, causal, false);
      std::vector<double> qd = to_double(qkv), out(run.out.size());
      auto loss = [&] {
        combiner_forward_ref(out.data(), qd.data(), B, T, C, H, span, causal);
        double l = 0;
        for (size_t i = 0; i < out.size(); i++) l += R[i] * out[i];
        return l;
      };
      for (size_t i = 0; i < qd.size(); i++) {
        const double keep = qd[i], eps = 1e-6;
        qd[i] = keep + eps;
        const double up = loss();
        qd[i] = keep - eps;
        const double down = loss();
        qd[i] = keep;
        const double numeric = (up - down) / (2 * eps);
        ASSERT_NEAR(dqkv[i], numeric, 1e-4 + 1e-3 * std::fabs(numeric))
            << "dqkv " << i << (causal ? " causal" : "") << " T " << T << " span " << span;
      }
    }
}

// A generator's loop: the rows of the current span kept in a buffer, each span summarised once it
// is complete, one query decoded per position; every step matches the causal forward.
TEST(Combiner, DecodeMatchesCausalForward) {
  const int64_t T = 50, span = 7;
  const auto qkv = randn(T * 3 * C, 6);
  const Forward run = forward(qkv, 1, T, span, true);
  std::vector<float> k(span * C), v(span * C), ksum, vsum, out(C), scratch(T);
  for (int64_t pos = 0; pos < T; pos++) {
    const float* row = qkv.data() + pos * 3 * C;
    const int64_t own = pos % span, spans = pos / span;
    std::copy(row + C, row + 2 * C, k.begin() + own * C);
    std::copy(row + 2 * C, row + 3 * C, v.begin() + own * C);
    combiner_decode(out.data(), scratch.data(), row, k.data(), v.data(), own + 1, ksum.data(),
                    vsum.data(), spans, span, C, H);
    for (int64_t c = 0; c < C; c++)
      ASSERT_NEAR(out[c], run.out[pos * C + c], 1e-5) << "position " << pos << " channel " << c;
    if (own == span - 1) {  // the span is complete: summarise it
      ksum.resize((spans + 1) * C);
      vsum.resize((spans + 1) * C);
      combiner_summarize(ksum.data() + spans * C, vsum.data() + spans * C, k.data(), v.data(), span,
                         C);
    }
  }
}

// accumulate = true adds onto what dqkv holds; false overwrites it (NaN in, finite out); neither
// allocates.
TEST(Combiner, AccumulateAddsOntoExistingGradient) {
  const int64_t T = 23, span = 5;
  for (bool causal : {false, true}) {
    const auto qkv = randn(B * T * 3 * C, 7), dout = randn(B * T * C, 8),
               before = randn(B * T * 3 * C, 9);
    Forward run = forward(qkv, B, T, span, causal);
    std::vector<float> written(qkv.size(), std::nanf("")), added(before);
    const int64_t allocations = testing::heap_allocations();
    combiner_forward(run.out.data(), run.lse.data(), run.scratch.data(), qkv.data(), B, T, C, H,
                     span, causal);
    combiner_backward(written.data(), run.scratch.data(), dout.data(), run.out.data(), qkv.data(),
                      run.lse.data(), B, T, C, H, span, causal, false);
    combiner_backward(added.data(), run.scratch.data(), dout.data(), run.out.data(), qkv.data(),
                      run.lse.data(), B, T, C, H, span, causal, true);
    EXPECT_EQ(testing::heap_allocations() - allocations, 0);
    for (size_t i = 0; i < qkv.size(); i++) {
      ASSERT_TRUE(std::isfinite(written[i])) << i;
      ASSERT_NEAR(added[i], before[i] + written[i], 1e-5 * (1 + std::fabs(added[i]))) << i;
    }
  }
}

// Logits far beyond exp's float range: every output stays a convex combination of the values
// (all ones, so every summary's value is one too) and lse finite.
TEST(Combiner, LargeScoresStayFinite) {
  const int64_t T = 50, span = 8, Cs = 4, Hs = 1;
  auto qkv = randn(T * 3 * Cs, 10, 60.0f);
  for (int64_t t = 0; t < T; t++)
    for (int64_t d = 0; d < Cs; d++) qkv[t * 3 * Cs + 2 * Cs + d] = 1.0f;
  std::vector<float> out(T * Cs), lse(T * Hs), scratch(combiner_scratch_floats(T, Cs, Hs, span));
  for (bool causal : {false, true}) {
    combiner_forward(out.data(), lse.data(), scratch.data(), qkv.data(), 1, T, Cs, Hs, span,
                     causal);
    for (float o : out) ASSERT_NEAR(o, 1.0f, 1e-5f);
    for (float l : lse) ASSERT_TRUE(std::isfinite(l));
  }
}

// Logits spread over hundreds: the row maximum must be taken over the visible entries only (a
// hidden later key or the own span's summary above them all would underflow every exponential).
TEST(Combiner, LargeScoresMatchReference) {
  const int64_t T = 40;
  auto qkv = randn(B * T * 3 * C, 11, 30.0f);
  for (int64_t t = 0; t < B * T; t++)
    for (int64_t d = 0; d < C; d++) qkv[t * 3 * C + 2 * C + d] /= 30.0f;  // values N(0, 1)
  for (bool causal : {false, true})
    for (int64_t span : {3, 8}) {
      const Forward run = forward(qkv, B, T, span, causal);
      std::vector<double> ref(run.out.size());
      combiner_forward_ref(ref.data(), to_double(qkv).data(), B, T, C, H, span, causal);
      for (size_t i = 0; i < ref.size(); i++)
        ASSERT_NEAR(run.out[i], ref[i], 2e-3 * (1 + std::fabs(ref[i])))
            << "out " << i << (causal ? " causal" : "") << " span " << span;
    }
}

}  // namespace
}  // namespace kat
