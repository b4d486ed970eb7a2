// Whole-model finite-difference gradient checks for KAT and ViT, with and without dropout.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.h"
#include "heap_count.h"
#include "kat/error.h"
#include "kat/model.h"
#include "kat/optim.h"

namespace kat {
namespace {

ModelConfig tiny(Ffn ffn) {
  ModelConfig c;
  c.architecture = ffn == Ffn::Kan ? "kat_test" : "vit_test";
  c.img_size = 8, c.patch_size = 4, c.in_chans = 2;
  c.embed_dim = 16, c.depth = 2, c.num_heads = 2, c.mlp_ratio = 2.0;
  c.num_classes = 5, c.rational_groups = 4, c.ffn = ffn;
  c.mean = {0.5f, 0.5f}, c.std = {0.25f, 0.25f};
  return c;
}

void check_model_gradients(ModelConfig c, bool training) {
  VisionTransformer m(c);
  m.init(3);
  const int64_t B = 3;
  auto images = testing::randn(B * c.in_chans * c.img_size * c.img_size, 5);
  const int32_t labels[B] = {1, 4, 0};
  testing::expect_model_gradients(
      m.params(),
      [&] { return static_cast<double>(m.forward(images.data(), labels, B, training, 0.1f, 99)); },
      [&] { m.backward(); });
}

TEST(ModelGradients, Kat) { check_model_gradients(tiny(Ffn::Kan), false); }
TEST(ModelGradients, Vit) { check_model_gradients(tiny(Ffn::Mlp), false); }
TEST(ModelGradients, KatWithDropoutAndDropPath) {
  ModelConfig c = tiny(Ffn::Kan);
  c.drop_rate = 0.2f, c.drop_path_rate = 0.3f;
  check_model_gradients(c, true);
}

TEST(ModelGradients, KatWithLocalAndLinearMixers) {
  ModelConfig c = tiny(Ffn::Kan);
  c.mixer = Mixer::Local, c.window = 3;
  check_model_gradients(c, false);
  c.mixer = Mixer::Linear, c.window = 0;
  check_model_gradients(c, false);
}

TEST(ModelGradients, VitWithDeltaAndSsmMixers) {
  ModelConfig c = tiny(Ffn::Mlp);
  c.mixer = Mixer::Delta;
  check_model_gradients(c, false);
  c.mixer = Mixer::Ssm;
  check_model_gradients(c, false);
}

TEST(ModelGradients, KatWithGlaAndCombinerMixers) {
  ModelConfig c = tiny(Ffn::Kan);
  c.mixer = Mixer::Gla;
  check_model_gradients(c, false);
  c.mixer = Mixer::Combiner, c.window = 2;  // spans of 2 tokens, so summaries are in play
  check_model_gradients(c, false);
}

TEST(ModelGradients, KatWithAveragePooling) {
  ModelConfig c = tiny(Ffn::Kan);
  c.global_pool = "avg";
  check_model_gradients(c, false);
}

TEST(Model, AveragePoolingUsesFcNormAsTimmDoes) {
  ModelConfig c = tiny(Ffn::Kan);
  c.global_pool = "avg";
  VisionTransformer m(c);
  EXPECT_GE(m.params().find("fc_norm.weight"), 0);
  EXPECT_LT(m.params().find("norm.weight"), 0);
  c.global_pool = "max";
  EXPECT_THROW(VisionTransformer{c}, Error);
}

TEST(Model, ParameterNamesAreTimms) {
  VisionTransformer m(tiny(Ffn::Kan));
  const Params& p = m.params();
  for (const char* name :
       {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
        "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight", "blocks.1.attn.proj.bias",
        "blocks.1.mlp.act1.weight_numerator", "blocks.1.mlp.act2.weight_denominator",
        "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.bias", "norm.weight", "head.bias"})
    EXPECT_GE(p.find(name), 0) << name;
  EXPECT_EQ(p.specs()[p.find("pos_embed")].shape, (std::vector<int64_t>{1, 5, 16}));
  EXPECT_EQ(p.specs()[p.find("blocks.0.mlp.act1.weight_denominator")].shape,
            (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(p.specs()[p.find("patch_embed.proj.weight")].shape,
            (std::vector<int64_t>{16, 2, 4, 4}));
}

TEST(Model, VariancePreservingInitIsApplied) {
  ModelConfig c = tiny(Ffn::Kan);
  c.embed_dim = 64, c.num_heads = 4, c.mlp_ratio = 4.0;
  VisionTransformer m(c);
  m.init(1);
  auto std_of = [&](const char* name) {
    const int i = m.params().find(name);
    const float* v = m.params().value(i);
    double s = 0;
    for (int64_t k = 0; k < m.params().specs()[i].size; k++) s += double(v[k]) * v[k];
    return std::sqrt(s / m.params().specs()[i].size);
  };
  // fc1 after the identity rational: 1/sqrt(64); fc2 after swish: sqrt(2.818/256).
  EXPECT_NEAR(std_of("blocks.0.mlp.fc1.weight"), 0.125, 0.01);
  EXPECT_NEAR(std_of("blocks.0.mlp.fc2.weight"), std::sqrt(2.8178 / 256), 0.01);
  EXPECT_NEAR(std_of("blocks.0.attn.qkv.weight"), 0.02, 0.003);
}

TEST(Model, BadConfigsAreErrors) {
  ModelConfig c = tiny(Ffn::Kan);
  c.rational_groups = 3;  // 16 channels do not split into 3 groups
  EXPECT_THROW(VisionTransformer m(c), Error);
  c = tiny(Ffn::Kan);
  c.patch_size = 3;
  EXPECT_THROW(VisionTransformer m(c), Error);
  c = tiny(Ffn::Mlp);
  c.num_heads = 3;
  EXPECT_THROW(VisionTransformer m(c), Error);
}

// Memory is planned once per shape: after the first step at a batch size, a whole training step
// (forward with dropout and drop-path, backward, clipping, AdamW) makes no heap allocation, nor
// does a step at a smaller batch.
TEST(Model, TrainingStepAllocatesNothingOnceMemoryIsPlanned) {
  ModelConfig c = tiny(Ffn::Kan);
  c.drop_rate = 0.1f, c.drop_path_rate = 0.1f;
  VisionTransformer m(c);
  m.init(1);
  AdamW opt(m.params(), AdamWConfig{});
  const int64_t B = 4;
  const auto images = testing::randn(B * c.in_chans * c.img_size * c.img_size, 5);
  const int32_t labels[B] = {1, 4, 0, 2};
  auto step = [&](int64_t batch, uint64_t seed) {
    m.params().zero_grad();
    m.forward(images.data(), labels, batch, true, 0.1f, seed);
    m.backward();
    clip_grad_norm(m.params(), 1.0f);
    opt.step(1e-3f);
  };
  step(B, 0);
  const int64_t before = testing::heap_allocations();
  step(B, 1);
  step(B - 1, 2);
  m.forward(images.data(), nullptr, B, false);
  EXPECT_EQ(testing::heap_allocations() - before, 0);
}

}  // namespace
}  // namespace kat
