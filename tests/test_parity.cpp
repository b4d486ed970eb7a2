// Parity with PyTorch through committed fixtures (tools/make_fixtures.py, Debian's python3-torch):
// the rational's values and gradients, whole KAT and ViT models' logits, loss and every parameter
// gradient, and checkpoints moving both ways between kat and the PyTorch reference model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "cli.h"
#include "kat/checkpoint.h"
#include "kat/config.h"
#include "kat/kernels.h"
#include "kat/lm.h"
#include "kat/model.h"
#include "kat/safetensors.h"

namespace kat {
namespace {

std::string fixture(const std::string& name) {
  return std::string(KAT_SOURCE_DIR) + "/tests/fixtures/" + name;
}

// |a - b| <= atol + rtol |b| elementwise, reporting the worst element.
void expect_close(const std::vector<float>& a, const std::vector<float>& b, double atol,
                  double rtol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); i++) {
    const double excess = std::fabs(double(a[i]) - b[i]) - (atol + rtol * std::fabs(b[i]));
    if (i == 0 || excess > worst) worst = excess, at = i;
  }
  EXPECT_LE(worst, 0.0) << what << "[" << at << "]: kat " << a[at] << ", PyTorch " << b[at];
}

TEST(Parity, RationalMatchesPyTorchAutograd) {
  const auto f = SafetensorsFile::load(fixture("rational.safetensors"));
  const int groups = std::stoi(f.metadata().at("groups"));
  const auto x = f.read_f32("x"), dy = f.read_f32("dy"), num = f.read_f32("num"),
             den = f.read_f32("den");
  const int64_t R = f.info("x").shape[0], C = f.info("x").shape[1];
  std::vector<float> y(x.size()), dx(x.size(), 0.0f), dnum(6, 0.0f), dden(den.size(), 0.0f);
  rational_forward(y.data(), x.data(), num.data(), den.data(), R, C, groups);
  rational_backward(dx.data(), dnum.data(), dden.data(), dy.data(), x.data(), num.data(),
                    den.data(), R, C, groups);
  // float32 against PyTorch's float32: a few ulps of the largest terms.
  expect_close(y, f.read_f32("y"), 1e-5, 1e-5, "y");
  expect_close(dx, f.read_f32("dx"), 1e-5, 1e-4, "dx");
  expect_close(dnum, f.read_f32("dnum"), 1e-4, 1e-4, "dnum");
  expect_close(dden, f.read_f32("dden"), 1e-4, 1e-4, "dden");
}

void check_model_fixture(const std::string& file) {
  const auto f = SafetensorsFile::load(fixture(file));
  const ModelConfig c = config_from_json(f.metadata().at("config"), file);
  const float smoothing = std::stof(f.metadata().at("smoothing"));
  VisionTransformer m(c);
  for (const ParamSpec& s : m.params().specs())
    f.read_f32(s.name, s.shape, m.params().value(m.params().find(s.name)));
  const auto input = f.read_f32("input");
  std::vector<int32_t> labels;
  for (int64_t y : f.read_i64("labels")) labels.push_back(static_cast<int32_t>(y));
  const int64_t B = static_cast<int64_t>(labels.size());
  m.params().zero_grad();
  const float loss = m.forward(input.data(), labels.data(), B, false, smoothing);
  m.backward();
  const int64_t V = c.num_classes;
  expect_close(std::vector<float>(m.logits(), m.logits() + B * V), f.read_f32("logits"), 1e-5, 1e-4,
               file + " logits");
  expect_close({loss}, f.read_f32("loss"), 1e-6, 1e-5, file + " loss");
  for (const ParamSpec& s : m.params().specs()) {
    const auto& g = m.params().grads();
    expect_close(std::vector<float>(g.begin() + s.offset, g.begin() + s.offset + s.size),
                 f.read_f32("grad." + s.name), 1e-5, 1e-3, file + " grad." + s.name);
  }
}

// A byte-level LM (tools/kat_lm_torch.py): logits, loss and every parameter gradient.
void check_lm_fixture(const std::string& file) {
  const auto f = SafetensorsFile::load(fixture(file));
  const LmConfig c = lm_config_from_json(f.metadata().at("config"), file);
  CausalLM m(c);
  for (const ParamSpec& s : m.params().specs())
    f.read_f32(s.name, s.shape, m.params().value(m.params().find(s.name)));
  std::vector<int32_t> tokens, targets;
  for (int64_t t : f.read_i64("tokens")) tokens.push_back(static_cast<int32_t>(t));
  for (int64_t t : f.read_i64("targets")) targets.push_back(static_cast<int32_t>(t));
  const int64_t B = f.info("tokens").shape[0], T = f.info("tokens").shape[1];
  m.params().zero_grad();
  const float loss = m.forward(tokens.data(), targets.data(), B, T);
  m.backward();
  expect_close(std::vector<float>(m.logits(), m.logits() + B * T * c.vocab_size),
               f.read_f32("logits"), 1e-5, 1e-4, file + " logits");
  expect_close({loss}, f.read_f32("loss"), 1e-6, 1e-5, file + " loss");
  for (const ParamSpec& s : m.params().specs()) {
    const auto& g = m.params().grads();
    expect_close(std::vector<float>(g.begin() + s.offset, g.begin() + s.offset + s.size),
                 f.read_f32("grad." + s.name), 1e-5, 1e-3, file + " grad." + s.name);
  }
}

TEST(Parity, KatLmWithRopeAndTiedWeightsMatchesPyTorch) {
  check_lm_fixture("lm_kat_rope_tied.safetensors");
}
TEST(Parity, GptLmWithLearnedPositionsMatchesPyTorch) {
  check_lm_fixture("lm_gpt_learned_untied.safetensors");
}

TEST(Parity, KatModelMatchesPyTorch) { check_model_fixture("kat_tiny_model.safetensors"); }
TEST(Parity, VitModelMatchesPyTorch) { check_model_fixture("vit_tiny_model.safetensors"); }
TEST(Parity, KatWithAveragePoolingMatchesPyTorch) {
  check_model_fixture("kat_avg_model.safetensors");
}

// Logits of a checkpoint on uint8 pixels, normalised with the checkpoint's mean/std.
std::vector<float> checkpoint_logits(VisionTransformer& m, const std::vector<int64_t>& pixels) {
  const ModelConfig& c = m.config();
  const int64_t per = int64_t(c.in_chans) * c.img_size * c.img_size;
  const int64_t B = static_cast<int64_t>(pixels.size()) / per;
  std::vector<uint8_t> raw(pixels.begin(), pixels.end());
  std::vector<float> images(raw.size());
  normalize_images(images.data(), raw.data(), B, c);
  m.forward(images.data(), nullptr, B);
  return std::vector<float>(m.logits(), m.logits() + B * c.num_classes);
}

TEST(Parity, CheckpointWrittenByPyTorchLoadsWithTheSameLogits) {
  auto m = load_model(fixture("torch_checkpoint"));
  const auto io = SafetensorsFile::load(fixture("torch_checkpoint_io.safetensors"));
  const auto logits = checkpoint_logits(*m, io.read_i64("pixels"));
  const auto expected = io.read_f32("logits");
  ASSERT_EQ(logits.size(), expected.size());
  for (size_t i = 0; i < logits.size(); i++) EXPECT_NEAR(logits[i], expected[i], 1e-4) << i;
}

TEST(Parity, CheckpointWrittenByKatLoadsIntoPyTorchWithTheSameLogits) {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3-torch is not installed (scripts/setup --tools installs it)";
  testing::TempDir dir("kat-to-torch");
  ModelConfig c = named_config("kat_fmnist");
  c.depth = 2;
  c.mean = {0.3f}, c.std = {0.4f};
  VisionTransformer m(c);
  m.init(7);
  save_model(dir / "ckpt", m);
  std::vector<int64_t> pixels(3 * 28 * 28);
  for (size_t i = 0; i < pixels.size(); i++) pixels[i] = static_cast<int64_t>((i * 37) % 256);
  const auto logits = checkpoint_logits(m, pixels);
  const std::vector<uint8_t> raw(pixels.begin(), pixels.end());
  save_safetensors(dir / "io.safetensors", {{"pixels", {3, 1, 28, 28}, raw.data(), DType::U8},
                                            {"logits", {3, 10}, logits.data()}});
  const auto r = std::system(("/usr/bin/python3 " KAT_SOURCE_DIR "/tools/check_kat_checkpoint.py " +
                              (dir / "ckpt") + " " + (dir / "io.safetensors"))
                                 .c_str());
  EXPECT_EQ(r, 0) << "tools/check_kat_checkpoint.py found different logits";
}

}  // namespace
}  // namespace kat
