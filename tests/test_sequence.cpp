// The LRA sequence classifier: finite-difference gradients with each mixer, names, config round
// trip, checkpoints, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "cli.h"
#include "gradcheck.h"
#include "kat/checkpoint.h"
#include "kat/error.h"
#include "kat/sequence.h"

namespace kat {
namespace {

SequenceConfig tiny_seq(Ffn ffn, Mixer mixer) {
  SequenceConfig c;
  c.architecture = "kat_seq_test";
  c.vocab_size = 18, c.max_len = 12, c.num_classes = 4;
  c.embed_dim = 16, c.depth = 2, c.num_heads = 2, c.hidden = 32, c.rational_groups = 4;
  c.ffn = ffn, c.mixer = mixer, c.window = mixer == Mixer::Local ? 3 : 0;
  return c;
}

void check_sequence_gradients(const SequenceConfig& c) {
  SequenceClassifier m(c);
  m.init(2);
  const int64_t B = 3, T = 9;
  std::vector<int32_t> tokens(B * T);
  for (int64_t i = 0; i < B * T; i++) tokens[i] = static_cast<int32_t>((i * 7 + 3) % 18);
  const int32_t labels[B] = {0, 3, 1};
  testing::expect_model_gradients(
      m.params(), [&] { return static_cast<double>(m.forward(tokens.data(), labels, B, T, 0.5f)); },
      [&] { m.backward(); });
}

TEST(SequenceGradients, KanSoftmax) {
  check_sequence_gradients(tiny_seq(Ffn::Kan, Mixer::Softmax));
}
TEST(SequenceGradients, MlpLocal) { check_sequence_gradients(tiny_seq(Ffn::Mlp, Mixer::Local)); }
TEST(SequenceGradients, KanLinear) { check_sequence_gradients(tiny_seq(Ffn::Kan, Mixer::Linear)); }
TEST(SequenceGradients, KanDelta) { check_sequence_gradients(tiny_seq(Ffn::Kan, Mixer::Delta)); }
TEST(SequenceGradients, MlpSsm) { check_sequence_gradients(tiny_seq(Ffn::Mlp, Mixer::Ssm)); }
TEST(SequenceGradients, KanSoftmaxClassToken) {
  SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Softmax);
  c.global_pool = "token";  // cls_token + pos_embed row 0, read at the end
  check_sequence_gradients(c);
  c.global_pool = "max";
  EXPECT_THROW(SequenceClassifier{c}, Error);
}
TEST(SequenceGradients, KanSoftmaxRotary) {
  SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Softmax);
  c.positions = "rope";  // q, k rotated in every block; no pos_embed
  check_sequence_gradients(c);
  EXPECT_LT(SequenceClassifier(c).params().find("pos_embed"), 0);
  c.positions = "learned+rope", c.global_pool = "token";
  check_sequence_gradients(c);
  EXPECT_GE(SequenceClassifier(c).params().find("pos_embed"), 0);
  c.num_heads = 16;  // head size 1: no pairs to rotate
  EXPECT_THROW(SequenceClassifier{c}, Error);
  c.num_heads = 2, c.positions = "alibi";
  EXPECT_THROW(SequenceClassifier{c}, Error);
}
// Rotary positions by row and column of a 3-wide grid (9 tokens: a 3 x 3 image), with mean pooling
// and with a class token (which sits just before the first pixel).
TEST(SequenceGradients, KanSoftmaxRotary2d) {
  SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Softmax);
  c.embed_dim = 16, c.num_heads = 2, c.positions = "rope2d", c.grid_width = 3;  // head size 8
  check_sequence_gradients(c);
  EXPECT_LT(SequenceClassifier(c).params().find("pos_embed"), 0);
  const SequenceConfig back = sequence_config_from_json(sequence_config_to_json(c), "t");
  EXPECT_EQ(back.positions, "rope2d");
  EXPECT_EQ(back.grid_width, 3);
  c.positions = "learned+rope2d", c.global_pool = "token";
  check_sequence_gradients(c);
  EXPECT_GE(SequenceClassifier(c).params().find("pos_embed"), 0);
  c.num_heads = 4;  // head size 4: one pair per axis
  check_sequence_gradients(c);
  c.num_heads = 8;  // head size 2: no pair for one of the axes
  EXPECT_NE(testing::error_of([&] { SequenceClassifier{c}; }).find("multiple of 4"),
            std::string::npos);
  c.num_heads = 2, c.grid_width = 0;
  EXPECT_NE(testing::error_of([&] { SequenceClassifier{c}; }).find("needs grid_width"),
            std::string::npos);
}
// sincos2d: pos_embed starts as MAE's 2D sine-cosine table over a 3-wide grid and is learned like
// "learned". Rows at the same 2D offset have the same dot product, rows in one image row share
// their row channels, and the table has the normal init's scale; the config round trip keeps it.
TEST(SequenceGradients, KanLinearSincos2dPositions) {
  SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Linear);
  c.positions = "sincos2d", c.grid_width = 3, c.max_len = 9;
  check_sequence_gradients(c);
  SequenceClassifier m(c);
  m.init(5);
  const int p = m.params().find("pos_embed");
  ASSERT_GE(p, 0);
  const float* pos = m.params().value(p);
  const int64_t d = c.embed_dim;
  auto dot = [&](int64_t a, int64_t b) {
    double s = 0;
    for (int64_t k = 0; k < d; k++) s += static_cast<double>(pos[a * d + k]) * pos[b * d + k];
    return s;
  };
  EXPECT_NEAR(dot(0, 4), dot(4, 8), 1e-9);  // (dy, dx) = (1, 1) from pixels (0, 0) and (1, 1)
  EXPECT_NEAR(dot(1, 3), dot(2, 4), 1e-9);  // (1, -1)
  EXPECT_GT(dot(0, 1), dot(0, 2) + 1e-6);   // the next pixel is nearer than the one after
  // Channels [0, d/4) and [d/2, 3d/4) are the row's: pixel 1 shares them with pixel 2 (row y =
  // 0), and the others, the column's, with pixel 7 (column x = 1).
  for (int64_t k = 0; k < d; k++) {
    const int64_t same = k % (d / 2) < d / 4 ? 2 : 7;
    EXPECT_EQ(pos[1 * d + k], pos[same * d + k]) << k;
  }
  double squares = 0;
  for (int64_t k = 0; k < 9 * d; k++) squares += static_cast<double>(pos[k]) * pos[k];
  EXPECT_NEAR(std::sqrt(squares / (9 * d)), 0.02, 1e-6);
  SequenceClassifier other(c);  // the table, not noise: any seed starts from it
  other.init(6);
  EXPECT_EQ(other.params().value(p)[5], pos[5]);
  const SequenceConfig back = sequence_config_from_json(sequence_config_to_json(c), "t");
  EXPECT_EQ(back.positions, "sincos2d");
  EXPECT_EQ(back.grid_width, 3);
  EXPECT_FALSE(back.rotary());
  c.global_pool = "token";  // a class token's row: the grid cell before the first pixel
  check_sequence_gradients(c);
  c.embed_dim = 18, c.num_heads = 2, c.hidden = 36, c.rational_groups = 2;
  EXPECT_NE(testing::error_of([&] { SequenceClassifier{c}; }).find("multiple of 4"),
            std::string::npos);
  c.embed_dim = 16, c.hidden = 32, c.rational_groups = 4, c.grid_width = 0;
  EXPECT_NE(testing::error_of([&] { SequenceClassifier{c}; }).find("needs grid_width"),
            std::string::npos);
}
// An end token after the last token (no pos_embed row of its own): with mean pooling it is one of
// the rows averaged, with a class token and rope it is what the class token finds the end by.
TEST(SequenceGradients, KanSoftmaxEndToken) {
  SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Softmax);
  c.end_token = true;
  check_sequence_gradients(c);
  c.positions = "rope", c.global_pool = "token";
  check_sequence_gradients(c);
  const SequenceConfig back = sequence_config_from_json(sequence_config_to_json(c), "t");
  EXPECT_TRUE(back.end_token);
  SequenceClassifier m(back);
  const int e = m.params().find("end_token");
  ASSERT_GE(e, 0);
  EXPECT_EQ(m.params().specs()[e].size, c.embed_dim);
  EXPECT_EQ(sequence_config_to_json(tiny_seq(Ffn::Kan, Mixer::Softmax)).find("end_token"),
            std::string::npos);  // configs without it read and write as before
}
TEST(SequenceGradients, MlpLinearEndToken) {
  SequenceConfig c = tiny_seq(Ffn::Mlp, Mixer::Linear);
  c.end_token = true, c.positions = "learned+rope";
  check_sequence_gradients(c);
}
// Without pos_embed, rotary positions are the model's only sense of order: swapping two tokens
// changes its output (mean pooling over position-free attention would not see the swap).
TEST(Sequence, RotaryPositionsSeeOrder) {
  SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Softmax);
  c.positions = "rope";
  EXPECT_EQ(sequence_config_from_json(sequence_config_to_json(c), "t").positions, "rope");
  EXPECT_NE(sequence_config_to_json(c).find("\"layernorm_eps\": 1e-06"), std::string::npos)
      << sequence_config_to_json(c);  // the float's shortest decimal form
  SequenceClassifier m(c);
  m.init(3);
  const std::vector<int32_t> a{1, 2, 3, 4, 5, 6}, b{2, 1, 3, 4, 5, 6};
  std::vector<float> la(c.num_classes);
  m.forward(a.data(), nullptr, 1, 6);
  std::copy(m.logits(), m.logits() + c.num_classes, la.begin());
  m.forward(b.data(), nullptr, 1, 6);
  double diff = 0;
  for (int k = 0; k < c.num_classes; k++)
    diff = std::max(diff, double(std::fabs(la[k] - m.logits()[k])));
  EXPECT_GT(diff, 1e-6);
}
TEST(SequenceGradients, MlpGla) { check_sequence_gradients(tiny_seq(Ffn::Mlp, Mixer::Gla)); }
TEST(SequenceGradients, KanCombiner) {
  check_sequence_gradients(tiny_seq(Ffn::Kan, Mixer::Combiner));  // span sqrt(12) -> 4
}

TEST(Sequence, NamesConfigAndCheckpointRoundTrip) {
  const SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Local);
  SequenceClassifier m(c);
  m.init(1);
  for (const char* name : {"embed.weight", "pos_embed", "blocks.0.attn.qkv.weight",
                           "blocks.1.mlp.act2.weight_denominator", "norm.weight", "head.bias"})
    EXPECT_GE(m.params().find(name), 0) << name;
  EXPECT_EQ(sequence_config_to_json(sequence_config_from_json(sequence_config_to_json(c), "t")),
            sequence_config_to_json(c));
  testing::TempDir dir("seq-ckpt");
  save_sequence_model(dir / "ckpt", m);
  auto back = load_sequence_model(dir / "ckpt");
  EXPECT_EQ(back->params().values(), m.params().values());
  const std::vector<int32_t> tokens{1, 2, 3, 4, 5};
  m.forward(tokens.data(), nullptr, 1, 5);
  back->forward(tokens.data(), nullptr, 1, 5);
  for (int k = 0; k < c.num_classes; k++) EXPECT_EQ(m.logits()[k], back->logits()[k]);
}

// Self-pretraining: the masked-token loss and its gradients, with mean pooling and learned
// positions, and with a class token, an end token and rotary positions (the hidden rows then sit
// one row in).
void check_masked_gradients(SequenceConfig c) {
  c.masked_head = true;
  SequenceClassifier m(c);
  m.init(4);
  const int64_t B = 3, T = 9;
  std::vector<int32_t> tokens(B * T);
  std::vector<uint8_t> mask(B * T);
  for (int64_t i = 0; i < B * T; i++)
    tokens[i] = static_cast<int32_t>((i * 5 + 2) % 18), mask[i] = (i * 7) % 3 == 0;
  testing::expect_model_gradients(
      m.params(),
      [&] { return static_cast<double>(m.forward_masked(tokens.data(), mask.data(), B, T, 0.5f)); },
      [&] { m.backward(); });
}
TEST(SequenceGradients, MaskedTokensKanLinear) {
  check_masked_gradients(tiny_seq(Ffn::Kan, Mixer::Linear));
}
TEST(SequenceGradients, MaskedTokensMlpSoftmaxClassAndEndTokens) {
  SequenceConfig c = tiny_seq(Ffn::Mlp, Mixer::Softmax);
  c.global_pool = "token", c.end_token = true, c.positions = "learned+rope";
  check_masked_gradients(c);
}

// A hidden token's value reaches the loss only as the target: its prediction is the same whatever
// it was, while a visible token's value changes the predictions.
TEST(Sequence, MaskedTokensAreHiddenFromTheModel) {
  SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Softmax);
  c.masked_head = true;
  SequenceClassifier m(c);
  m.init(5);
  std::vector<int32_t> tokens{3, 1, 4, 1, 5, 9, 2, 6};
  const std::vector<uint8_t> mask{0, 1, 0, 0, 1, 0, 0, 0};
  const int64_t V = c.vocab_size;
  auto predictions = [&] {
    m.forward_masked(tokens.data(), mask.data(), 1, 8);
    EXPECT_EQ(m.masked_count(), 2);
    return std::vector<float>(m.masked_logits(), m.masked_logits() + 2 * V);
  };
  const std::vector<float> first = predictions();
  const float loss = m.forward_masked(tokens.data(), mask.data(), 1, 8);
  tokens[1] = 7;  // hidden
  EXPECT_EQ(predictions(), first);
  EXPECT_NE(m.forward_masked(tokens.data(), mask.data(), 1, 8), loss);  // another target
  tokens[2] = 8;                                                        // visible
  EXPECT_NE(predictions(), first);
  // Nothing hidden: no loss, and the backward adds nothing to the head.
  const std::vector<uint8_t> none(8, 0);
  m.params().zero_grad();
  EXPECT_EQ(m.forward_masked(tokens.data(), none.data(), 1, 8), 0.0f);
  EXPECT_EQ(m.masked_count(), 0);
  m.backward();
  const int head = m.params().find("mlm_head.weight");
  ASSERT_GE(head, 0);
  const float* g = m.params().grad(head);
  EXPECT_TRUE(std::all_of(g, g + V * c.embed_dim, [](float x) { return x == 0.0f; }));
  // The classifier's forward and backward still work on a model with the head.
  const int32_t label = 2;
  EXPECT_GT(m.forward(tokens.data(), &label, 1, 8), 0.0f);
  m.backward();
}

// The masked loss is a mean over sequences (of each one's mean over its hidden tokens), so a batch
// split over calls (or ranks) with loss_scale = its share has the same loss and gradients, however
// many tokens each part hides.
TEST(Sequence, MaskedLossIsTheSameHoweverTheBatchSplits) {
  SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Linear);
  c.masked_head = true;
  SequenceClassifier m(c);
  m.init(8);
  const int64_t B = 3, T = 6;
  const std::vector<int32_t> tokens{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 0};
  const std::vector<uint8_t> mask{1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1, 0};
  m.params().zero_grad();
  const float whole = m.forward_masked(tokens.data(), mask.data(), B, T);
  m.backward();
  const std::vector<float> grads = m.params().grads();
  m.params().zero_grad();
  float parts = m.forward_masked(tokens.data(), mask.data(), 1, T, 1.0f / 3);
  m.backward();
  parts += m.forward_masked(tokens.data() + T, mask.data() + T, 2, T, 2.0f / 3);
  m.backward();
  EXPECT_NEAR(parts, whole, 1e-6f);
  for (size_t i = 0; i < grads.size(); i++)
    ASSERT_NEAR(m.params().grads()[i], grads[i], 1e-6f + 1e-5f * std::fabs(grads[i])) << i;
}

// The head's tensors are in the config and the checkpoint of a pretraining model; a classifier
// loads such a checkpoint only when told to skip them, and loading stays strict for any other.
TEST(Sequence, MaskedHeadCheckpointsLoadIntoClassifiers) {
  SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Linear);
  c.masked_head = true;
  const SequenceConfig back = sequence_config_from_json(sequence_config_to_json(c), "t");
  EXPECT_TRUE(back.masked_head);
  SequenceClassifier pre(c);
  pre.init(6);
  for (const std::string& name : SequenceClassifier::masked_head_tensors())
    EXPECT_GE(pre.params().find(name), 0) << name;
  testing::TempDir dir("seq-masked");
  save_sequence_model(dir / "pre", pre);
  c.masked_head = false;
  SequenceClassifier cls(c);
  const std::string file = dir / "pre/model.safetensors";
  EXPECT_NE(testing::error_of([&] {
              load_params(file, cls.params(), "t");
            }).find("unexpected tensor 'mask_token'"),
            std::string::npos);
  load_params(file, cls.params(), "t", SequenceClassifier::masked_head_tensors());
  const int embed = cls.params().find("embed.weight");
  const int from = pre.params().find("embed.weight");
  EXPECT_TRUE(std::equal(cls.params().value(embed),
                         cls.params().value(embed) + cls.params().specs()[embed].size,
                         pre.params().value(from)));
  // The other way, the head starts from the model's own values.
  save_sequence_model(dir / "cls", cls);
  SequenceClassifier again(back);
  again.init(7);
  const int mask = again.params().find("mask_token");
  const float keep = again.params().value(mask)[0];
  load_params(dir / "cls/model.safetensors", again.params(), "t",
              SequenceClassifier::masked_head_tensors());
  EXPECT_EQ(again.params().value(mask)[0], keep);
  EXPECT_NE(testing::error_of([&] {
              load_params(dir / "cls/model.safetensors", again.params(), "t", {"head.bias"});
            }).find("missing tensor 'mask_token'"),
            std::string::npos);
}

// Growing (kat lra --init CKPT --depth N): the new blocks start as identities, so the grown model
// has the checkpoint's logits and loss and, for every tensor the two share, its gradients; the
// new blocks' branch outputs get gradients, so they train. Gated mixers included: their extra
// tensors sit inside the branch.
void check_growth(Mixer mixer) {
  SequenceConfig c = tiny_seq(Ffn::Kan, mixer);
  c.depth = 1;
  SequenceClassifier small(c);
  small.init(8);
  testing::TempDir dir("seq-grow");
  save_sequence_model(dir / "small", small);
  c.depth = 3;
  SequenceClassifier grown(c);
  grown.init(9);
  load_sequence_weights(dir / "small", grown);
  const int64_t B = 2, T = 7;
  std::vector<int32_t> tokens(B * T);
  for (int64_t i = 0; i < B * T; i++) tokens[i] = static_cast<int32_t>((i * 5 + 1) % 18);
  const int32_t labels[B] = {2, 1};
  const float loss = small.forward(tokens.data(), labels, B, T);
  EXPECT_EQ(grown.forward(tokens.data(), labels, B, T), loss);
  for (int k = 0; k < B * c.num_classes; k++) EXPECT_EQ(grown.logits()[k], small.logits()[k]);
  small.params().zero_grad(), grown.params().zero_grad();
  small.backward(), grown.backward();
  Params &a = small.params(), &g = grown.params();
  for (size_t i = 0; i < a.specs().size(); i++) {
    const ParamSpec& s = a.specs()[i];
    const int j = g.find(s.name);
    ASSERT_GE(j, 0) << s.name;
    const float* ga = a.grad(static_cast<int>(i));
    const float* gg = g.grad(j);
    for (int64_t k = 0; k < s.size; k++)
      ASSERT_NEAR(gg[k], ga[k], 1e-6f + 1e-5f * std::abs(ga[k])) << s.name << "[" << k << "]";
  }
  auto norm = [&](const std::string& name) {
    const int i = g.find(name);
    EXPECT_GE(i, 0) << name;
    double sum = 0;
    for (int64_t k = 0; k < g.specs()[i].size; k++) sum += std::abs(g.grad(i)[k]);
    return sum;
  };
  for (int l = 1; l < 3; l++) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    EXPECT_GT(norm(b + "attn.proj.weight"), 0) << b;
    EXPECT_GT(norm(b + "mlp.fc2.weight"), 0) << b;
    EXPECT_EQ(norm(b + "attn.qkv.weight"), 0) << b;  // behind a zero projection, for now
  }
  // A model is not cut from a deeper checkpoint.
  save_sequence_model(dir / "grown", grown);
  c.depth = 2;
  SequenceClassifier cut(c);
  EXPECT_NE(testing::error_of([&] {
              load_sequence_weights(dir / "grown", cut);
            }).find("has 3 blocks and the model 2"),
            std::string::npos);
}
TEST(Sequence, AGrownModelStartsAsItsCheckpoint) {
  check_growth(Mixer::Linear);
  check_growth(Mixer::Gla);
  check_growth(Mixer::Ssm);
}

TEST(Sequence, BadInputIsAnError) {
  SequenceClassifier m(tiny_seq(Ffn::Kan, Mixer::Softmax));
  const std::vector<int32_t> long_seq(13, 1), bad{1, 18};
  const int32_t label = 9;
  EXPECT_THROW(m.forward(long_seq.data(), nullptr, 1, 13), Error);
  EXPECT_THROW(m.forward(bad.data(), nullptr, 1, 2), Error);
  EXPECT_THROW(m.forward(long_seq.data(), &label, 1, 4), Error);
  SequenceConfig c = tiny_seq(Ffn::Kan, Mixer::Local);
  c.window = 0;
  EXPECT_THROW(SequenceClassifier{c}, Error);
  c = tiny_seq(Ffn::Kan, Mixer::Softmax);
  c.positions = "rope", c.num_heads = 16;  // heads of one channel: nothing to rotate in pairs
  EXPECT_NE(testing::error_of([&] { SequenceClassifier{c}; }).find("even head size, not 1"),
            std::string::npos);
  c.num_heads = 2, c.rope_theta = 0;
  EXPECT_NE(testing::error_of([&] { SequenceClassifier{c}; }).find("rope_theta must be positive"),
            std::string::npos);
  EXPECT_THROW(sequence_config_from_json("{\"model_type\": \"kat-seq\", \"depht\": 2}", "x.json"),
               Error);
}

}  // namespace
}  // namespace kat
