// Byte-level causal LMs: RoPE against its reference, whole-model finite-difference gradients,
// KV-cache decoding against a full recompute, configs and bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "cli.h"
#include "gradcheck.h"
#include "heap_count.h"
#include "kat/error.h"
#include "kat/kernels.h"
#include "kat/lm.h"
#include "kat/optim.h"

namespace kat {
namespace {

using testing::randn;

LmConfig tiny_lm(Ffn ffn, Positions positions, bool tied, Mixer mixer = Mixer::Softmax) {
  LmConfig c;
  c.mixer = mixer, c.window = mixer == Mixer::Local ? 5 : 0;  // combiner: span 4 = sqrt(16)
  c.architecture = ffn == Ffn::Kan ? "kat_lm_test" : "gpt_lm_test";
  c.context = 16, c.embed_dim = 16, c.depth = 2, c.num_heads = 2, c.hidden = 32;
  c.ffn = ffn, c.rational_groups = 4, c.positions = positions, c.tie_weights = tied;
  return c;
}

std::vector<int32_t> byte_tokens(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng.below(kByteVocab));
  return t;
}

TEST(Rope, MatchesReferenceAndInverts) {
  const int64_t B = 2, T = 5, C = 12, H = 2, pos0 = 3, hd = C / H;
  const double theta = 10000.0;
  std::vector<float> cos((pos0 + T) * hd / 2), sin(cos.size());
  rope_tables(cos.data(), sin.data(), pos0 + T, hd, theta);
  const auto x = randn(B * T * 3 * C, 1);
  std::vector<float> y = x;
  rope_rotate(y.data(), cos.data(), sin.data(), B, T, C, H, pos0, false);
  std::vector<double> ref(x.begin(), x.end());
  rope_rotate_ref(ref.data(), B, T, C, H, pos0, theta);
  for (size_t i = 0; i < y.size(); i++) ASSERT_NEAR(y[i], ref[i], 1e-5) << i;
  for (int64_t r = 0; r < B * T; r++)  // v is not rotated
    for (int64_t k = 2 * C; k < 3 * C; k++) ASSERT_EQ(y[r * 3 * C + k], x[r * 3 * C + k]);
  rope_rotate(y.data(), cos.data(), sin.data(), B, T, C, H, pos0, true);
  for (size_t i = 0; i < y.size(); i++) ASSERT_NEAR(y[i], x[i], 1e-5) << i;
}

// Axial 2D tables: the angles against their formula (the class token's row just before the first
// pixel), and what they are for: q.k of two rotated tokens depends only on their offset on the
// grid (dy, dx), wherever the pair sits, and a row down is not a step right.
TEST(Rope, AxialTablesSeeTwoDimensionalOffsets) {
  const int64_t W = 5, first = 1, n = first + 4 * W, hd = 8, half = hd / 2;
  const double theta = 100.0;
  std::vector<float> cos(n * half), sin(n * half);
  rope_tables_2d(cos.data(), sin.data(), n, hd, theta, W, first);
  for (int64_t r = 0; r < n; r++) {
    const int64_t t = r - first, y = t < 0 ? -1 : t / W, x = t < 0 ? W - 1 : t % W;
    for (int64_t i = 0; i < half; i++) {
      const double angle = static_cast<double>(i < 2 ? y : x) * std::pow(theta, -(i % 2) / 2.0);
      ASSERT_NEAR(cos[r * half + i], std::cos(angle), 1e-6) << r << " " << i;
      ASSERT_NEAR(sin[r * half + i], std::sin(angle), 1e-6) << r << " " << i;
    }
  }
  // One head (C = hd); a row of qkv holds q, k, v. dot(a, b): q of token a with k of token b.
  const auto q = randn(hd, 2), k = randn(hd, 3);
  auto dot = [&](int64_t y1, int64_t x1, int64_t y2, int64_t x2) {
    std::vector<float> qkv(2 * 3 * hd, 0.0f);
    std::copy(q.begin(), q.end(), qkv.begin());
    std::copy(k.begin(), k.end(), qkv.begin() + 3 * hd + hd);
    std::vector<float> one(3 * hd);
    for (int token = 0; token < 2; token++) {  // rotate each by its own table row
      std::copy(qkv.begin() + token * 3 * hd, qkv.begin() + (token + 1) * 3 * hd, one.begin());
      const int64_t r = first + (token == 0 ? y1 * W + x1 : y2 * W + x2);
      rope_rotate(one.data(), cos.data(), sin.data(), 1, 1, hd, 1, r, false);
      std::copy(one.begin(), one.end(), qkv.begin() + token * 3 * hd);
    }
    double s = 0;
    for (int64_t i = 0; i < hd; i++) s += double{qkv[i]} * qkv[3 * hd + hd + i];
    return s;
  };
  EXPECT_NEAR(dot(0, 1, 1, 1), dot(2, 3, 3, 3), 1e-5);            // a row down, anywhere
  EXPECT_NEAR(dot(0, 0, 1, 2), dot(2, 2, 3, 4), 1e-5);            // (1, 2)
  EXPECT_GT(std::fabs(dot(0, 0, 1, 0) - dot(0, 0, 0, 1)), 1e-3);  // down is not right
  // The next pixel in raster order across a row end is (1, -4) away, not a step right as in 1D.
  EXPECT_GT(std::fabs(dot(0, 4, 1, 0) - dot(0, 0, 0, 1)), 1e-3);
}

void check_lm_gradients(const LmConfig& c) {
  CausalLM m(c);
  m.init(3);
  const int64_t B = 2, T = 7;
  const auto tokens = byte_tokens(B * T, 5), targets = byte_tokens(B * T, 6);
  testing::expect_model_gradients(
      m.params(),
      [&] { return static_cast<double>(m.forward(tokens.data(), targets.data(), B, T)); },
      [&] { m.backward(); });
}

TEST(LmGradients, KanRopeTied) { check_lm_gradients(tiny_lm(Ffn::Kan, Positions::Rope, true)); }
TEST(LmGradients, MlpLearnedUntied) {
  check_lm_gradients(tiny_lm(Ffn::Mlp, Positions::Learned, false));
}

// Generation with the cache must give the logits a full forward over the whole sequence gives.
void check_cache_equals_recompute(const LmConfig& c, int64_t prompt = 3) {
  CausalLM m(c);
  m.init(4);
  const int64_t n = c.context;
  const auto tokens = byte_tokens(n, 9);
  m.forward(tokens.data(), nullptr, 1, n);
  const std::vector<float> full(m.logits(), m.logits() + n * c.vocab_size);
  CausalLM g(c);  // a second model with the same weights, so nothing is shared by accident
  g.params().values() = m.params().values();
  const float* z = g.prefill(tokens.data(), prompt);
  for (int64_t t = prompt - 1; t < n; t++) {
    for (int64_t v = 0; v < c.vocab_size; v++)
      ASSERT_NEAR(z[v], full[t * c.vocab_size + v], 1e-5) << "position " << t << " logit " << v;
    if (t + 1 < n) z = g.decode(tokens[t + 1]);
  }
  EXPECT_EQ(g.cached(), n);
  EXPECT_THROW(g.decode(1), Error);  // the context is full
}

TEST(LmDecode, KvCacheEqualsFullRecomputeWithRope) {
  check_cache_equals_recompute(tiny_lm(Ffn::Kan, Positions::Rope, true));
}
TEST(LmDecode, KvCacheEqualsFullRecomputeWithLearnedPositions) {
  check_cache_equals_recompute(tiny_lm(Ffn::Mlp, Positions::Learned, false));
}
TEST(LmDecode, LocalMixerWindowEqualsFullRecompute) {
  check_cache_equals_recompute(tiny_lm(Ffn::Kan, Positions::Rope, true, Mixer::Local));
}
TEST(LmDecode, LinearMixerRecurrentStateEqualsFullRecompute) {
  check_cache_equals_recompute(tiny_lm(Ffn::Kan, Positions::Rope, true, Mixer::Linear));
}
TEST(LmDecode, GlaRecurrentStateEqualsFullRecompute) {
  check_cache_equals_recompute(tiny_lm(Ffn::Kan, Positions::Rope, true, Mixer::Gla));
}
TEST(LmDecode, CombinerSpansAndSummariesEqualFullRecompute) {
  // The prompt completes span 0 (prefill summarises it); decoding completes spans 1, 2.
  check_cache_equals_recompute(tiny_lm(Ffn::Mlp, Positions::Learned, false, Mixer::Combiner), 6);
}
TEST(LmDecode, DeltaRuleStateEqualsFullRecompute) {
  check_cache_equals_recompute(tiny_lm(Ffn::Kan, Positions::Learned, false, Mixer::Delta));
}
TEST(LmDecode, SsmStateEqualsFullRecompute) {
  check_cache_equals_recompute(tiny_lm(Ffn::Mlp, Positions::Rope, true, Mixer::Ssm));
}
TEST(LmGradients, DeltaAndSsmMixers) {
  check_lm_gradients(tiny_lm(Ffn::Kan, Positions::Rope, true, Mixer::Delta));
  check_lm_gradients(tiny_lm(Ffn::Kan, Positions::Learned, false, Mixer::Ssm));
}
TEST(LmGradients, GlaAndCombinerMixers) {
  check_lm_gradients(tiny_lm(Ffn::Mlp, Positions::Learned, false, Mixer::Gla));
  check_lm_gradients(tiny_lm(Ffn::Kan, Positions::Rope, true, Mixer::Combiner));
}
TEST(LmGradients, LocalAndLinearMixers) {
  check_lm_gradients(tiny_lm(Ffn::Kan, Positions::Rope, true, Mixer::Local));
  check_lm_gradients(tiny_lm(Ffn::Mlp, Positions::Learned, false, Mixer::Linear));
}

TEST(Lm, ParameterNamesAreGpt2s) {
  CausalLM kan(tiny_lm(Ffn::Kan, Positions::Rope, true));
  for (const char* name :
       {"wte.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.weight", "h.1.attn.c_proj.bias",
        "h.0.ln_2.bias", "h.0.mlp.act1.weight_numerator", "h.1.mlp.act2.weight_denominator",
        "h.0.mlp.c_fc.weight", "h.1.mlp.c_proj.weight", "ln_f.weight"})
    EXPECT_GE(kan.params().find(name), 0) << name;
  EXPECT_LT(kan.params().find("wpe.weight"), 0);
  EXPECT_LT(kan.params().find("lm_head.weight"), 0);
  const Params& p = kan.params();
  EXPECT_EQ(p.specs()[p.find("h.0.attn.c_attn.weight")].shape, (std::vector<int64_t>{48, 16}));
  EXPECT_EQ(p.specs()[p.find("h.0.mlp.c_fc.weight")].shape, (std::vector<int64_t>{32, 16}));
  CausalLM gpt(tiny_lm(Ffn::Mlp, Positions::Learned, false));
  EXPECT_EQ(gpt.params().specs()[gpt.params().find("wpe.weight")].shape,
            (std::vector<int64_t>{16, 16}));
  EXPECT_GE(gpt.params().find("lm_head.weight"), 0);
  EXPECT_LT(gpt.params().find("h.0.mlp.act1.weight_numerator"), 0);
}

TEST(Lm, ConfigRoundTripsThroughJson) {
  for (const LmConfig& c :
       {tiny_lm(Ffn::Kan, Positions::Rope, true), tiny_lm(Ffn::Mlp, Positions::Learned, false)}) {
    const LmConfig back = lm_config_from_json(lm_config_to_json(c), "test");
    EXPECT_EQ(lm_config_to_json(back), lm_config_to_json(c));
    EXPECT_TRUE(is_lm_config_json(lm_config_to_json(c)));
  }
  EXPECT_FALSE(is_lm_config_json("{\"architecture\": \"kat_fmnist\"}"));
}

TEST(Lm, BadConfigsAndInputsAreErrors) {
  LmConfig c = tiny_lm(Ffn::Kan, Positions::Rope, true);
  c.rational_groups = 3;
  EXPECT_THROW(CausalLM{c}, Error);
  c = tiny_lm(Ffn::Kan, Positions::Rope, true);
  c.vocab_size = 300;
  EXPECT_THROW(CausalLM{c}, Error);
  c = tiny_lm(Ffn::Kan, Positions::Rope, true);
  c.num_heads = c.embed_dim;  // heads of one channel: nothing to rotate in pairs
  EXPECT_NE(testing::error_of([&] { CausalLM{c}; }).find("even head size, not 1"),
            std::string::npos);
  c = tiny_lm(Ffn::Kan, Positions::Rope, true);
  c.rope_theta = -1;
  EXPECT_NE(testing::error_of([&] { CausalLM{c}; }).find("rope_theta must be positive"),
            std::string::npos);
  c.positions = Positions::Learned;  // theta is not used without rotary positions
  EXPECT_NO_THROW(CausalLM{c});
  const std::string good = lm_config_to_json(tiny_lm(Ffn::Kan, Positions::Rope, true));
  std::string typo = good;
  typo.replace(typo.find("n_layer"), 7, "n_layers");
  EXPECT_THROW(lm_config_from_json(typo, "typo.json"), Error);
  std::string bad_pos = good;
  bad_pos.replace(bad_pos.find("\"rope\""), 6, "\"alibi\"");
  EXPECT_THROW(lm_config_from_json(bad_pos, "pos.json"), Error);

  CausalLM m(tiny_lm(Ffn::Kan, Positions::Rope, true));
  m.init(1);
  const auto long_seq = byte_tokens(17, 1);
  EXPECT_THROW(m.forward(long_seq.data(), nullptr, 1, 17), Error);  // longer than the context
  const int32_t bad_token[2] = {5, 257};
  EXPECT_THROW(m.forward(bad_token, nullptr, 1, 2), Error);
  EXPECT_THROW(m.prefill(long_seq.data(), 17), Error);
  EXPECT_THROW(m.decode(3), Error);  // no prefill yet
}

TEST(Lm, TrainingStepAllocatesNothingOnceMemoryIsPlanned) {
  CausalLM m(tiny_lm(Ffn::Kan, Positions::Rope, true));
  m.init(1);
  AdamW opt(m.params(), AdamWConfig{});
  const auto tokens = byte_tokens(2 * 16, 2), targets = byte_tokens(2 * 16, 3);
  auto step = [&](int64_t T) {
    m.params().zero_grad();
    m.forward(tokens.data(), targets.data(), 2, T);
    m.backward();
    clip_grad_norm(m.params(), 1.0f);
    opt.step(1e-3f);
  };
  step(16);
  const int64_t before = testing::heap_allocations();
  step(16);
  step(9);
  EXPECT_EQ(testing::heap_allocations() - before, 0);
}

}  // namespace
}  // namespace kat
