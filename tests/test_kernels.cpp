// Every kernel against finite differences of its own forward, and the rational against its plain
// double-precision reference.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "kat/buffer.h"
#include "kat/error.h"
#include "kat/grkan.h"
#include "kat/kernels.h"
#include "kat/parallel.h"
#include "kernels/cpu/vec_math.h"

namespace kat {
namespace {

using testing::dot;
using testing::expect_gradient;
using testing::randn;

TEST(Linear, ForwardMatchesLoops) {
  const int64_t R = 5, I = 7, O = 3;
  auto x = randn(R * I, 1), w = randn(O * I, 2), b = randn(O, 3);
  std::vector<float> y(R * O);
  linear_forward(y.data(), x.data(), w.data(), b.data(), R, I, O);
  for (int64_t r = 0; r < R; r++)
    for (int64_t o = 0; o < O; o++) {
      double s = b[o];
      for (int64_t i = 0; i < I; i++) s += x[r * I + i] * w[o * I + i];
      EXPECT_NEAR(y[r * O + o], s, 1e-5);
    }
}

TEST(Linear, Gradients) {
  const int64_t R = 6, I = 5, O = 4;
  auto x = randn(R * I, 1), w = randn(O * I, 2), b = randn(O, 3), wy = randn(R * O, 4);
  std::vector<float> y(R * O), dx(R * I, 0), dw(O * I, 0), db(O, 0);
  auto loss = [&] {
    linear_forward(y.data(), x.data(), w.data(), b.data(), R, I, O);
    return dot(wy, y.data());
  };
  linear_backward(dx.data(), dw.data(), db.data(), wy.data(), x.data(), w.data(), R, I, O);
  expect_gradient(loss, x, dx, "dx");
  expect_gradient(loss, w, dw, "dw");
  expect_gradient(loss, b, db, "db");
}

// got[m, n] against c0(m, n) + sum_k a(m, k) b(k, n), summed in double. A float sum is off by a
// few ulps of the sum of its terms' magnitudes; a wrong index is off by about the sum itself.
template <class C0, class A, class B>
void expect_product(const char* what, const float* got, int64_t M, int64_t N, int64_t K, C0 c0, A a,
                    B b) {
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      double sum = c0(m, n), magnitude = std::fabs(sum);
      for (int64_t k = 0; k < K; k++) {
        const double term = double(a(m, k)) * b(k, n);
        sum += term, magnitude += std::fabs(term);
      }
      ASSERT_NEAR(got[m * N + n], sum, 1e-5 * magnitude + 1e-6)
          << what << "[" << m << ", " << n << "]";
    }
}

// Linear layers with both widths a multiple of 8 up to 256 and at least 96 rows take kat's own
// narrow kernel instead of OpenBLAS: every part of it (rows not a multiple of the 6-row tile, an
// 8-column tail, threads' row spans longer than one 256-deep pass, the widest layer) against plain
// sums, and the shapes just outside it, which stay with OpenBLAS.
TEST(Linear, NarrowAndBlasShapesMatchLoops) {
  struct Shape {
    int64_t R, I, O;
  };
  for (const Shape s :
       {Shape{101, 32, 96}, Shape{200, 24, 40}, Shape{97, 128, 8}, Shape{1200, 32, 96},
        Shape{100, 256, 256}, Shape{95, 32, 32}, Shape{120, 264, 32}, Shape{120, 32, 12}}) {
    const int64_t R = s.R, I = s.I, O = s.O;
    SCOPED_TRACE(::testing::Message() << "R " << R << " I " << I << " O " << O);
    auto x = randn(R * I, 1), w = randn(O * I, 2), b = randn(O, 3), dy = randn(R * O, 4);
    std::vector<float> y(R * O), dx0 = randn(R * I, 5), dw0 = randn(O * I, 6), db0 = randn(O, 7);
    std::vector<float> dx = dx0, dw = dw0, db = db0, dx_over(R * I, 0.0f), dw_over = dw0;
    linear_forward(y.data(), x.data(), w.data(), b.data(), R, I, O);
    linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), R, I, O);
    linear_backward(dx_over.data(), dw_over.data(), nullptr, dy.data(), x.data(), w.data(), R, I, O,
                    false);
    auto x_rk = [&](int64_t r, int64_t k) { return x[r * I + k]; };
    auto w_ok = [&](int64_t o, int64_t k) { return w[o * I + k]; };
    auto w_ki = [&](int64_t k, int64_t i) { return w[k * I + i]; };
    auto dy_rk = [&](int64_t r, int64_t k) { return dy[r * O + k]; };
    auto dy_ko = [&](int64_t k, int64_t o) { return dy[k * O + o]; };
    auto dw0_oi = [&](int64_t o, int64_t i) { return dw0[o * I + i]; };
    auto zero = [](int64_t, int64_t) { return 0.0f; };
    auto one = [](int64_t, int64_t) { return 1.0f; };
    expect_product(
        "y", y.data(), R, O, I, [&](int64_t, int64_t o) { return b[o]; }, x_rk,
        [&](int64_t k, int64_t o) { return w_ok(o, k); });
    expect_product(
        "dx", dx.data(), R, I, O, [&](int64_t r, int64_t i) { return dx0[r * I + i]; }, dy_rk,
        w_ki);
    expect_product("dx, overwritten", dx_over.data(), R, I, O, zero, dy_rk, w_ki);
    expect_product(
        "db", db.data(), 1, O, R, [&](int64_t, int64_t o) { return db0[o]; }, one, dy_ko);
    for (const auto* got : {&dw, &dw_over})
      expect_product(
          "dw", got->data(), O, I, R, dw0_oi, [&](int64_t o, int64_t k) { return dy_ko(k, o); },
          x_rk);
  }
}

// kat's results do not depend on its thread count: the narrow kernel splits rows over threads for
// y and dx, and sums dw in a fixed number of spans whatever the threads.
TEST(Linear, NarrowKernelGivesTheSameSumsOnAnyThreadCount) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
    GTEST_SKIP() << "this CPU has no AVX2 + FMA: its linear layers run on OpenBLAS";
  const int64_t R = 3000, I = 32, O = 96;
  const auto x = randn(R * I, 1), w = randn(O * I, 2), dy = randn(R * O, 3);
  auto run = [&](int threads) {
    set_num_threads(threads);
    std::vector<float> y(R * O), dx(R * I), dw(O * I, 0.0f);
    linear_forward(y.data(), x.data(), w.data(), nullptr, R, I, O);
    linear_backward(dx.data(), dw.data(), nullptr, dy.data(), x.data(), w.data(), R, I, O, false);
    y.insert(y.end(), dx.begin(), dx.end());
    y.insert(y.end(), dw.begin(), dw.end());
    return y;
  };
  const int before = num_threads();
  const auto one = run(1), three = run(3);
  set_num_threads(before);
  ASSERT_EQ(one.size(), three.size());
  for (size_t k = 0; k < one.size(); k++) ASSERT_EQ(one[k], three[k]) << k;
}

TEST(LayerNorm, Gradients) {
  const int64_t R = 4, C = 12;
  auto x = randn(R * C, 1, 2.0f), w = randn(C, 2), b = randn(C, 3), wy = randn(R * C, 4);
  std::vector<float> y(R * C), mean(R), rstd(R), dx(R * C, 0), dw(C, 0), db(C, 0);
  auto loss = [&] {
    layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), R, C,
                      1e-6f);
    return dot(wy, y.data());
  };
  loss();
  layernorm_backward(dx.data(), dw.data(), db.data(), wy.data(), x.data(), mean.data(), rstd.data(),
                     w.data(), R, C);
  expect_gradient(loss, x, dx, "dx");
  expect_gradient(loss, w, dw, "dw");
  expect_gradient(loss, b, db, "db");
}

TEST(Gelu, ValuesAndGradient) {
  auto x = randn(50, 1, 3.0f), wy = randn(50, 2);
  std::vector<float> y(50), dx(50, 0);
  gelu_forward(y.data(), x.data(), 50);
  for (int i = 0; i < 50; i++) EXPECT_NEAR(y[i], activation("gelu", x[i]), 1e-6);
  auto loss = [&] {
    gelu_forward(y.data(), x.data(), 50);
    return dot(wy, y.data());
  };
  gelu_backward(dx.data(), wy.data(), x.data(), 50);
  expect_gradient(loss, x, dx, "dx", 1e-3f);
}

// Rational inputs that hit the edge cases: exact zeros, negatives, and large |x|.
std::vector<float> rational_inputs(int64_t n, uint64_t seed) {
  auto x = randn(n, seed, 2.0f);
  for (int64_t i = 0; i < n; i += 7) x[i] = 0.0f;
  for (int64_t i = 3; i < n; i += 11) x[i] = -6.5f;
  for (int64_t i = 5; i < n; i += 13) x[i] = 8.0f;
  return x;
}

// C = 24 in 4 groups takes the kernel's any-group-size path; C = 96 in 2 groups (48 channels, three
// 16-float vectors a group) takes the vector-register path.
struct RationalCase {
  int64_t R = 9, C = 24;
  int groups = 4;
  std::vector<float> x, num, den, dy;
  explicit RationalCase(int64_t channels = 24, int groups_ = 4) : C(channels), groups(groups_) {
    x = rational_inputs(R * C, 1);
    const RationalCoefs k = rational_init("swish");
    num.assign(k.num.begin(), k.num.end());
    auto noise = randn(6 + 4 * groups, 2, 0.05f);
    for (int i = 0; i < 6; i++) num[i] += noise[i];
    for (int g = 0; g < groups; g++)
      for (int i = 0; i < 4; i++)
        den.push_back(static_cast<float>(k.den[i]) + noise[6 + g * 4 + i]);
    den[1] = -0.3f;  // negative b: the kernel uses |b|, the gradient carries sign(b)
    dy = randn(R * C, 3);
  }
};

class RationalPaths : public ::testing::TestWithParam<std::pair<int64_t, int>> {};
INSTANTIATE_TEST_SUITE_P(GroupSizes, RationalPaths,
                         ::testing::Values(std::make_pair(int64_t{24}, 4),
                                           std::make_pair(int64_t{96}, 2)));

TEST_P(RationalPaths, MatchesDoubleReference) {
  RationalCase t(GetParam().first, GetParam().second);
  const int64_t n = t.R * t.C;
  std::vector<float> y(n), dx(n, 0), dnum(6, 0), dden(4 * t.groups, 0);
  rational_forward(y.data(), t.x.data(), t.num.data(), t.den.data(), t.R, t.C, t.groups);
  rational_backward(dx.data(), dnum.data(), dden.data(), t.dy.data(), t.x.data(), t.num.data(),
                    t.den.data(), t.R, t.C, t.groups);
  auto to_d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  auto xd = to_d(t.x), nd = to_d(t.num), dd = to_d(t.den), dyd = to_d(t.dy);
  std::vector<double> yr(n), dxr(n, 0), dnr(6, 0), ddr(4 * t.groups, 0);
  rational_forward_ref(yr.data(), xd.data(), nd.data(), dd.data(), t.R, t.C, t.groups);
  rational_backward_ref(dxr.data(), dnr.data(), ddr.data(), dyd.data(), xd.data(), nd.data(),
                        dd.data(), t.R, t.C, t.groups);
  for (int64_t i = 0; i < n; i++) {
    EXPECT_NEAR(y[i], yr[i], 1e-5 * (1 + std::fabs(yr[i]))) << i;
    EXPECT_NEAR(dx[i], dxr[i], 1e-5 * (1 + std::fabs(dxr[i]))) << i;
  }
  for (int i = 0; i < 6; i++) EXPECT_NEAR(dnum[i], dnr[i], 1e-4 * (1 + std::fabs(dnr[i]))) << i;
  for (int i = 0; i < 4 * t.groups; i++)
    EXPECT_NEAR(dden[i], ddr[i], 1e-4 * (1 + std::fabs(ddr[i]))) << i;
}

TEST_P(RationalPaths, FiniteDifferenceGradients) {
  RationalCase t(GetParam().first, GetParam().second);
  const int64_t n = t.R * t.C;
  std::vector<float> y(n), dx(n, 0), dnum(6, 0), dden(4 * t.groups, 0);
  auto loss = [&] {
    rational_forward(y.data(), t.x.data(), t.num.data(), t.den.data(), t.R, t.C, t.groups);
    return dot(t.dy, y.data());
  };
  rational_backward(dx.data(), dnum.data(), dden.data(), t.dy.data(), t.x.data(), t.num.data(),
                    t.den.data(), t.R, t.C, t.groups);
  // Away from x = 0, where |x| has a kink (the kernel takes sign(0) = +1 there).
  std::vector<float> x_nonzero = t.x;
  for (auto& v : x_nonzero)
    if (v == 0.0f) v = 0.5f;
  t.x = x_nonzero;
  std::fill(dx.begin(), dx.end(), 0.0f);
  std::fill(dnum.begin(), dnum.end(), 0.0f);
  std::fill(dden.begin(), dden.end(), 0.0f);
  rational_backward(dx.data(), dnum.data(), dden.data(), t.dy.data(), t.x.data(), t.num.data(),
                    t.den.data(), t.R, t.C, t.groups);
  expect_gradient(loss, t.x, dx, "dx", 1e-3f, 2e-3, 2e-2, 1000);
  expect_gradient(loss, t.num, dnum, "dnum", 1e-3f, 1e-2, 1e-2);
  expect_gradient(loss, t.den, dden, "dden", 1e-3f, 1e-2, 1e-2);
}

TEST(Rational, DerivativeAtZeroUsesSignPlusOne) {
  // dF/dx(0) = P'(0)/Q(0) - P(0) Q'(0)/Q(0)^2 with Q'(0) = +|b0|.
  const float num[6] = {0.5f, 1.0f, 0, 0, 0, 0}, den[4] = {-2.0f, 0, 0, 0};
  const float x = 0.0f, dy = 1.0f;
  float y, dx = 0, dnum[6] = {}, dden[4] = {};
  rational_forward(&y, &x, num, den, 1, 1, 1);
  rational_backward(&dx, dnum, dden, &dy, &x, num, den, 1, 1, 1);
  EXPECT_FLOAT_EQ(y, 0.5f);
  EXPECT_FLOAT_EQ(dx, 1.0f - 0.5f * 2.0f);
}

TEST(Rational, GroupsMustDivideChannels) {
  float x[10] = {}, y[10];
  const float num[6] = {}, den[12] = {};
  EXPECT_THROW(rational_forward(y, x, num, den, 1, 10, 3), Error);
}

TEST(Rational, LargeTensorCoefficientGradientsStayAccurate) {
  // 25M-ish elements would take long in the double reference; 2M with all-equal terms still
  // exposes float accumulation drift (a float running sum would be off by > 1e-3 here).
  const int64_t R = 2048, C = 1024;
  const int groups = 8;
  std::vector<float> x(R * C), dy(R * C, 1.0f), dx(R * C, 0);
  Rng rng(7);
  for (auto& v : x) v = rng.normal();
  const RationalCoefs k = rational_init("swish");
  std::vector<float> num(k.num.begin(), k.num.end()), den;
  for (int g = 0; g < groups; g++) den.insert(den.end(), k.den.begin(), k.den.end());
  std::vector<float> dnum(6, 0), dden(4 * groups, 0);
  rational_backward(dx.data(), dnum.data(), dden.data(), dy.data(), x.data(), num.data(),
                    den.data(), R, C, groups);
  std::vector<double> xd(x.begin(), x.end()), dyd(dy.begin(), dy.end()), dxr(R * C, 0);
  std::vector<double> nd(num.begin(), num.end()), dd(den.begin(), den.end()), dnr(6, 0),
      ddr(4 * groups, 0);
  rational_backward_ref(dxr.data(), dnr.data(), ddr.data(), dyd.data(), xd.data(), nd.data(),
                        dd.data(), R, C, groups);
  for (int i = 0; i < 6; i++) EXPECT_NEAR(dnum[i], dnr[i], 1e-5 * std::fabs(dnr[i])) << i;
  for (int i = 0; i < 4 * groups; i++) EXPECT_NEAR(dden[i], ddr[i], 1e-5 * std::fabs(ddr[i])) << i;
}

// The tiled kernel against the whole-matrix double reference, bidirectional and causal, at lengths
// around the tile sizes (one block, several, a ragged last block) and with tiny tiles that force
// the online softmax through many key blocks.
struct AttentionCase {
  int64_t T;
  bool causal;
  AttentionTiles tiles;
  int64_t window = 0;
};

class AttentionVsReference : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(AttentionVsReference, ForwardAndBackward) {
  const auto [T, causal, tiles, window] = GetParam();
  const AttentionMask mask(causal, window);
  const int64_t B = 2, C = 16, H = 2;
  const auto qkv = randn(B * T * 3 * C, 1, 1.5f), dout = randn(B * T * C, 2);
  std::vector<float> out(B * T * C), lse(B * H * T), dqkv(qkv.size(), 0.5f);
  std::vector<float> scratch(attention_scratch_floats(tiles));
  attention_forward(out.data(), lse.data(), scratch.data(), qkv.data(), B, T, C, H, mask, tiles);
  attention_backward(dqkv.data(), scratch.data(), dout.data(), out.data(), qkv.data(), lse.data(),
                     B, T, C, H, mask, true, tiles);
  std::vector<double> qd(qkv.begin(), qkv.end()), dod(dout.begin(), dout.end());
  std::vector<double> out_ref(out.size()), dqkv_ref(qkv.size(), 0.5);
  attention_forward_ref(out_ref.data(), qd.data(), B, T, C, H, mask);
  attention_backward_ref(dqkv_ref.data(), dod.data(), qd.data(), B, T, C, H, mask);
  for (size_t i = 0; i < out.size(); i++) ASSERT_NEAR(out[i], out_ref[i], 2e-5) << "out " << i;
  for (size_t i = 0; i < dqkv.size(); i++) ASSERT_NEAR(dqkv[i], dqkv_ref[i], 5e-5) << "dqkv " << i;
}

INSTANTIATE_TEST_SUITE_P(
    Lengths, AttentionVsReference,
    ::testing::Values(AttentionCase{1, false, {}}, AttentionCase{1, true, {}},
                      AttentionCase{70, false, {}}, AttentionCase{70, true, {}},
                      AttentionCase{197, false, {}}, AttentionCase{600, false, {}},
                      AttentionCase{600, true, {}}, AttentionCase{13, false, {3, 4}},
                      AttentionCase{13, true, {3, 4}}, AttentionCase{40, true, {8, 16}},
                      AttentionCase{70, true, {}, 16}, AttentionCase{70, false, {}, 15},
                      AttentionCase{600, true, {}, 100}, AttentionCase{600, false, {64, 128}, 90},
                      AttentionCase{13, false, {3, 4}, 5}, AttentionCase{13, true, {3, 4}, 4}),
    [](const ::testing::TestParamInfo<AttentionCase>& info) {
      const AttentionCase& c = info.param;
      return "T" + std::to_string(c.T) + (c.causal ? "_causal" : "") + "_tiles" +
             std::to_string(c.tiles.q) + "x" + std::to_string(c.tiles.k) +
             (c.window ? "_window" + std::to_string(c.window) : "");
    });

TEST(Attention, GradientsThroughManyTiles) {
  const int64_t B = 2, T = 11, C = 8, H = 2;
  for (AttentionMask mask : {AttentionMask(false), AttentionMask(true), AttentionMask(false, 4),
                             AttentionMask(true, 3)}) {
    const AttentionTiles tiles{3, 4};  // 11 is a multiple of neither
    auto qkv = randn(B * T * 3 * C, 1), wy = randn(B * T * C, 2);
    std::vector<float> out(B * T * C), lse(B * H * T), dqkv(qkv.size(), 0);
    std::vector<float> scratch(attention_scratch_floats(tiles));
    auto loss = [&] {
      attention_forward(out.data(), lse.data(), scratch.data(), qkv.data(), B, T, C, H, mask,
                        tiles);
      return dot(wy, out.data());
    };
    loss();
    attention_backward(dqkv.data(), scratch.data(), wy.data(), out.data(), qkv.data(), lse.data(),
                       B, T, C, H, mask, true, tiles);
    const std::string what = std::string("dqkv") + (mask.causal ? " causal" : "") +
                             (mask.window ? " window " + std::to_string(mask.window) : "");
    expect_gradient(loss, qkv, dqkv, what.c_str(), 1e-2f, 2e-3, 2e-2, 1000);
  }
}

// Scores far beyond exp's float range: the online softmax must keep every output a convex
// combination of the values (here all ones) across key blocks, and lse finite.
TEST(Attention, LargeScoresStayFinite) {
  const int64_t B = 1, T = 50, C = 4, H = 1;
  auto qkv = randn(B * T * 3 * C, 5, 60.0f);
  for (int64_t t = 0; t < T; t++)
    for (int64_t d = 0; d < C; d++) qkv[t * 3 * C + 2 * C + d] = 1.0f;
  const AttentionTiles tiles{8, 8};
  std::vector<float> out(B * T * C), lse(T), scratch(attention_scratch_floats(tiles));
  for (bool causal : {false, true}) {
    attention_forward(out.data(), lse.data(), scratch.data(), qkv.data(), B, T, C, H, causal,
                      tiles);
    for (float o : out) ASSERT_NEAR(o, 1.0f, 1e-5f);
    for (float l : lse) ASSERT_TRUE(std::isfinite(l));
  }
}

// Linear attention: the chunked fast path against the per-query double reference (forward), and
// its backward against central differences of that reference in double.
class LinearAttentionVsReference : public ::testing::TestWithParam<std::tuple<int64_t, bool>> {};

TEST_P(LinearAttentionVsReference, ForwardAndBackward) {
  const auto [T, causal] = GetParam();
  const int64_t B = 2, C = 8, H = 2;
  const auto qkv = randn(B * T * 3 * C, 3), dout = randn(B * T * C, 4);
  std::vector<float> out(B * T * C), dqkv(qkv.size(), 0.25f);
  std::vector<float> scratch(linear_attention_scratch_floats(B, T, C, H));
  std::vector<float> saved(linear_attention_saved_floats(B, T, C, H, causal));
  linear_attention_forward(out.data(), saved.data(), scratch.data(), qkv.data(), B, T, C, H,
                           causal);
  linear_attention_backward(dqkv.data(), scratch.data(), dout.data(), out.data(), saved.data(),
                            qkv.data(), B, T, C, H, causal, true);
  std::vector<double> qd(qkv.begin(), qkv.end()), ref(out.size());
  linear_attention_forward_ref(ref.data(), qd.data(), B, T, C, H, causal);
  for (size_t i = 0; i < out.size(); i++)
    ASSERT_NEAR(out[i], ref[i], 2e-5 * (1 + std::fabs(ref[i]))) << "out " << i;
  auto loss = [&] {
    linear_attention_forward_ref(ref.data(), qd.data(), B, T, C, H, causal);
    double l = 0;
    for (size_t i = 0; i < ref.size(); i++) l += dout[i] * ref[i];
    return l;
  };
  testing::expect_reference_gradient(loss, qd, dqkv, 0.25, "dqkv");  // dqkv started at 0.25
}

INSTANTIATE_TEST_SUITE_P(Lengths, LinearAttentionVsReference,
                         ::testing::Combine(::testing::Values(1, 5, 64, 100, 150),
                                            ::testing::Bool()));

// Past one block of 1024 rows the kernel carries its sums from block to block: 2200 rows are two
// full blocks and a partial one. The forward against the reference; the backward along one random
// direction U of every input at once: <dqkv, U> against the central difference of the reference
// loss.
TEST(LinearAttention, SequencesLongerThanABlock) {
  const int64_t B = 1, T = 2200, C = 8, H = 2;
  for (bool causal : {false, true}) {
    const auto qkv = randn(B * T * 3 * C, 7), dout = randn(B * T * C, 8), U = randn(qkv.size(), 9);
    std::vector<float> out(B * T * C), dqkv(qkv.size());
    std::vector<float> scratch(linear_attention_scratch_floats(B, T, C, H));
    std::vector<float> saved(linear_attention_saved_floats(B, T, C, H, causal));
    linear_attention_forward(out.data(), saved.data(), scratch.data(), qkv.data(), B, T, C, H,
                             causal);
    linear_attention_backward(dqkv.data(), scratch.data(), dout.data(), out.data(), saved.data(),
                              qkv.data(), B, T, C, H, causal, false);
    std::vector<double> qd(qkv.begin(), qkv.end()), ref(out.size());
    linear_attention_forward_ref(ref.data(), qd.data(), B, T, C, H, causal);
    for (size_t i = 0; i < out.size(); i++)
      ASSERT_NEAR(out[i], ref[i], 2e-5 * (1 + std::fabs(ref[i]))) << "out " << i;
    auto loss_at = [&](double eps) {
      std::vector<double> x(qd.size());
      for (size_t i = 0; i < x.size(); i++) x[i] = qd[i] + eps * U[i];
      linear_attention_forward_ref(ref.data(), x.data(), B, T, C, H, causal);
      double l = 0;
      for (size_t i = 0; i < ref.size(); i++) l += dout[i] * ref[i];
      return l;
    };
    double analytic = 0;
    for (size_t i = 0; i < U.size(); i++) analytic += static_cast<double>(dqkv[i]) * U[i];
    testing::expect_directional_derivative(loss_at, analytic, causal ? "causal" : "bidirectional");
  }
}

// Gradients of 16 MiB and more are streamed past the cache (stores.h) when they overwrite: the
// same values as adding them to zeros, which takes the plain path.
TEST(LinearAttention, StreamedGradientsMatchAddedOnes) {
  const int64_t B = 1, T = 6000, C = 256, H = 4;  // dqkv: 17.6 MiB
  const auto qkv = randn(B * T * 3 * C, 10), dout = randn(B * T * C, 11);
  for (bool causal : {false, true}) {
    std::vector<float> out(B * T * C), added(qkv.size(), 0.0f);
    FloatBuffer streamed(qkv.size(), 1.0f);  // 64-byte aligned, as the models' buffers
    std::vector<float> scratch(linear_attention_scratch_floats(B, T, C, H));
    std::vector<float> saved(linear_attention_saved_floats(B, T, C, H, causal));
    linear_attention_forward(out.data(), saved.data(), scratch.data(), qkv.data(), B, T, C, H,
                             causal);
    linear_attention_backward(streamed.data(), scratch.data(), dout.data(), out.data(),
                              saved.data(), qkv.data(), B, T, C, H, causal, false);
    linear_attention_backward(added.data(), scratch.data(), dout.data(), out.data(), saved.data(),
                              qkv.data(), B, T, C, H, causal, true);
    for (size_t i = 0; i < added.size(); i++)
      ASSERT_EQ(streamed[i], added[i]) << (causal ? "causal " : "bidirectional ") << i;
  }
}

// Linear attention and GLA take whole batch rows per thread when the batch has at least as many
// rows as threads (kat/parallel.h: batch_lanes), else share each row's heads among the threads:
// the outputs and gradients are the same to the bit on 1 thread, 3 (3 lanes of 5 rows) and 8.
TEST(BatchLanes, LinearAttentionAndGlaGiveTheSameValuesHoweverTheyAreSplit) {
  const int64_t B = 5, T = 70, C = 8, H = 2;
  const auto qkv = randn(B * T * 3 * C, 12), dout = randn(B * T * C, 13);
  std::vector<float> g = randn(B * T * C, 14);
  for (float& v : g) v = -0.5f * std::fabs(v);  // log decays <= 0
  const int restore = num_threads();
  for (bool causal : {false, true}) {
    std::vector<std::vector<float>> first;
    for (int threads : {1, 3, 8}) {
      set_num_threads(threads);
      ASSERT_EQ(batch_lanes(B), threads == 3 ? 3 : 1);
      std::vector<float> out(B * T * C), dqkv(qkv.size()), gla_out(B * T * C), gla_dqkv(qkv.size()),
          dg(g.size());
      std::vector<float> scratch(
          std::max(linear_attention_scratch_floats(B, T, C, H), gla_scratch_floats(B, T, C, H)));
      std::vector<float> saved(linear_attention_saved_floats(B, T, C, H, causal));
      linear_attention_forward(out.data(), saved.data(), scratch.data(), qkv.data(), B, T, C, H,
                               causal);
      linear_attention_backward(dqkv.data(), scratch.data(), dout.data(), out.data(), saved.data(),
                                qkv.data(), B, T, C, H, causal, false);
      gla_forward(gla_out.data(), scratch.data(), qkv.data(), g.data(), B, T, C, H, causal);
      gla_backward(gla_dqkv.data(), dg.data(), scratch.data(), dout.data(), qkv.data(), g.data(), B,
                   T, C, H, causal, false);
      const std::vector<std::vector<float>> now = {out, dqkv, gla_out, gla_dqkv, dg};
      if (first.empty()) first = now;
      for (size_t k = 0; k < now.size(); k++)
        for (size_t i = 0; i < now[k].size(); i++)
          ASSERT_EQ(now[k][i], first[k][i])
              << "result " << k << " at " << i << ", " << threads << " threads, causal " << causal;
    }
  }
  set_num_threads(restore);
}

TEST(SoftmaxXent, LossAndGradient) {
  const int64_t B = 3, V = 5;
  auto z = randn(B * V, 1, 2.0f);
  const int32_t labels[3] = {0, 4, 2};
  std::vector<float> losses(B), probs(B * V), dz(B * V, 0);
  const float eps = 0.1f;
  auto loss = [&] {
    softmax_xent_forward(losses.data(), probs.data(), z.data(), labels, B, V, eps);
    double s = 0;
    for (float l : losses) s += l;
    return s / B;
  };
  loss();
  // Direct definition: -(1-eps) log p_y - eps/V sum log p_j.
  for (int64_t b = 0; b < B; b++) {
    double expect = 0;
    for (int64_t j = 0; j < V; j++) {
      const double lp = std::log(probs[b * V + j]);
      expect -= (j == labels[b] ? 1 - eps : 0) * lp + eps / V * lp;
    }
    EXPECT_NEAR(losses[b], expect, 1e-5);
  }
  softmax_xent_backward(dz.data(), probs.data(), labels, B, V, eps, 1.0f / B);
  expect_gradient(loss, z, dz, "dlogits", 1e-2f, 1e-4, 1e-2);
}

}  // namespace
}  // namespace kat

namespace kat {
namespace {

TEST(VecMath, ExpApproxIsWithinItsStatedError) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.00137f) {
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(exp_approx(x) - exact) / exact);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(exp_approx(0.0f), 1.0f);
  EXPECT_GT(exp_approx(-1000.0f), 0.0f);  // clamped: tiny, never 0 or NaN
  EXPECT_LT(exp_approx(-1000.0f), 1e-37f);
}

}  // namespace
}  // namespace kat

namespace kat {
namespace {

TEST(VecMath, ErfApproxIsWithinItsStatedError) {
  double worst = 0;
  for (float x = -6.0f; x <= 6.0f; x += 0.000731f)
    worst = std::max(worst, std::fabs(erf_approx(x) - std::erf(static_cast<double>(x))));
  EXPECT_LT(worst, 1e-6);
}

// Overwriting (accumulate = false) must give exactly what accumulating into zeros gives, whatever
// the buffer held before: here NaN, which any read of the old contents would spread.
TEST(Backward, OverwriteModeEqualsAccumulatingIntoZeros) {
  const int64_t R = 6, C = 16, O = 8, T = 3, H = 2, B = 2;
  const auto x = testing::randn(R * C, 1), dy = testing::randn(R * C, 2);
  const auto w = testing::randn(O * C, 3), dyo = testing::randn(R * O, 4);
  const auto num = testing::randn(6, 5, 0.3f), den = testing::randn(4 * 4, 6, 0.3f);
  const float nan = std::nanf("");
  auto both = [&](const char* what, int64_t n, const std::function<void(float*, bool)>& run) {
    std::vector<float> acc(n, 0.0f), over(n, nan);
    run(acc.data(), true);
    run(over.data(), false);
    for (int64_t i = 0; i < n; i++) ASSERT_EQ(acc[i], over[i]) << what << "[" << i << "]";
  };
  std::vector<float> dw(O * C), dnum(6), dden(16), dden_wide(8);
  both("linear", R * C, [&](float* dx, bool a) {
    linear_backward(dx, dw.data(), nullptr, dyo.data(), x.data(), w.data(), R, C, O, a);
  });
  const int64_t Rn = 96;  // enough rows for the narrow kernel
  const auto x_n = testing::randn(Rn * C, 11), dyo_n = testing::randn(Rn * O, 12);
  both("linear, narrow kernel", Rn * C, [&](float* dx, bool a) {
    linear_backward(dx, dw.data(), nullptr, dyo_n.data(), x_n.data(), w.data(), Rn, C, O, a);
  });
  both("gelu", R * C, [&](float* dx, bool a) { gelu_backward(dx, dy.data(), x.data(), R * C, a); });
  both("rational", R * C, [&](float* dx, bool a) {
    rational_backward(dx, dnum.data(), dden.data(), dy.data(), x.data(), num.data(), den.data(), R,
                      C, 4, a);
  });
  const auto x_wide = testing::randn(R * 32, 9), dy_wide = testing::randn(R * 32, 10);
  both("rational, groups of 16", R * 32, [&](float* dx, bool a) {  // the vector-register path
    rational_backward(dx, dnum.data(), dden_wide.data(), dy_wide.data(), x_wide.data(), num.data(),
                      den.data(), R, 32, 2, a);
  });
  const auto qkv = testing::randn(B * T * 3 * C, 7), dout = testing::randn(B * T * C, 8);
  std::vector<float> lse(B * H * T), out(B * T * C), scratch(attention_scratch_floats());
  attention_forward(out.data(), lse.data(), scratch.data(), qkv.data(), B, T, C, H);
  both("attention", B * T * 3 * C, [&](float* dqkv, bool a) {
    attention_backward(dqkv, scratch.data(), dout.data(), out.data(), qkv.data(), lse.data(), B, T,
                       C, H, false, a);
  });
}

}  // namespace
}  // namespace kat
