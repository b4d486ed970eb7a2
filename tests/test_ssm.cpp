// The ssm mixer against Mamba-2's state-space model written out in its quadratic ("SSD") form in
// double, from the block's own qkv and parameters: the block runs it through the gated-linear-
// attention scan, so this checks the mapping (dt, A, D, which of q, k, v plays C, B, x) as well as
// the scan.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gradcheck.h"
#include "kat/params.h"
#include "kat/rng.h"
#include "nn/buffer_plan.h"
#include "nn/transformer_block.h"

namespace kat {
namespace {

// y_i = tau sum_j w_ij (q_i . (dt_j k_j)) v_j + D v_i per head, w_ij = exp(A (dt_{min+1} + ... +
// dt_max)) over j <= i (causal) or every j (the symmetric bidirectional form).
std::vector<double> ssd_reference(const float* qkv, const std::vector<double>& dt,
                                  const float* a_log, const float* skip, int64_t B, int64_t T,
                                  int64_t C, int64_t H, bool causal) {
  const int64_t hd = C / H;
  const double tau = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> y(B * T * C, 0.0);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const double a = -std::exp(static_cast<double>(a_log[h]));
      for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < (causal ? i + 1 : T); j++) {
          double sum = 0;  // dt over (min(i, j), max(i, j)]
          for (int64_t s = std::min(i, j) + 1; s <= std::max(i, j); s++)
            sum += dt[(b * T + s) * H + h];
          const float* qi = qkv + (b * T + i) * 3 * C + h * hd;
          const float* kj = qkv + (b * T + j) * 3 * C + C + h * hd;
          double score = 0;
          for (int64_t c = 0; c < hd; c++) score += static_cast<double>(qi[c]) * kj[c];
          const double w = std::exp(a * sum) * tau * score * dt[(b * T + j) * H + h];
          for (int64_t c = 0; c < hd; c++) y[(b * T + i) * C + h * hd + c] += w * kj[C + c];
        }
      for (int64_t r = b * T; r < (b + 1) * T; r++)
        for (int64_t c = h * hd; c < (h + 1) * hd; c++)
          y[r * C + c] += skip[h] * qkv[r * 3 * C + 2 * C + c];
    }
  return y;
}

TEST(Ssm, BlockMixerIsMamba2StateSpaceModel) {
  for (bool causal : {true, false}) {
    BlockShape s;
    s.dim = 8, s.hidden = 16, s.heads = 2, s.ffn = Ffn::Mlp, s.mixer = Mixer::Ssm,
    s.causal = causal;
    Params p;
    TransformerBlock block(p, "blocks.0.", kTimmBlockNames, s);
    p.allocate();
    Rng rng(3);
    block.init(p, rng, BlockInitStd{}, true, "gelu");
    const auto wide = testing::randn(s.heads * s.dim, 4, 0.5f);  // steps that differ per token
    std::copy(wide.begin(), wide.end(), p.value(block.dt_w));
    const int64_t B = 2, T = 21, R = B * T, C = s.dim, H = s.heads;  // T > 16: two scan chunks
    const auto x = testing::randn(R * C, 5);
    BufferPlan take;
    BlockActs a;
    block.plan_acts(take, a, R, B, false);
    FloatBuffer buf;
    std::vector<float> scratch(block.mixer_scratch_floats(B, T));
    take.allocate(buf);
    block.forward(p, x.data(), a, scratch.data(), B, T, Rope{});
    std::vector<double> dt(R * H);  // softplus(dt_proj ln1 + dt_bias), in double
    for (int64_t r = 0; r < R; r++)
      for (int64_t h = 0; h < H; h++) {
        double z = p.value(block.dt_b)[h];
        for (int64_t c = 0; c < C; c++)
          z += static_cast<double>(p.value(block.dt_w)[h * C + c]) * a.ln1[r * C + c];
        dt[r * H + h] = std::log1p(std::exp(z));
      }
    const auto ref =
        ssd_reference(a.qkv, dt, p.value(block.a_log), p.value(block.skip_d), B, T, C, H, causal);
    for (int64_t i = 0; i < R * C; i++)
      ASSERT_NEAR(a.atty[i], ref[i], 1e-4 * (1 + std::fabs(ref[i])))
          << (causal ? "causal " : "") << i;
  }
}

}  // namespace
}  // namespace kat
