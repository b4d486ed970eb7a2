// The pieces of `kat report`: attention maps against the kernels' references, their pooling, the
// learned GR-KAN functions read from a model's parameters, and the heat-map and PNG encoders.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stb_image.h>

#include <cmath>

#include "gradcheck.h"
#include "kat/error.h"
#include "kat/kernels.h"
#include "kat/lm.h"
#include "kat/model.h"
#include "kat/plot.h"
#include "kat/report.h"

namespace kat {
namespace {

using ::testing::HasSubstr;

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) n++;
  return n;
}

// out = W v with the map's weights must be what the mixer's reference computes.
void expect_map_reproduces_reference(Mixer mixer, bool causal, int64_t window) {
  const int64_t T = 9, C = 8, H = 2, hd = C / H;
  const auto qkv = testing::randn(T * 3 * C, 7);
  const std::vector<double> qd(qkv.begin(), qkv.end());
  std::vector<double> ref(T * C);
  if (mixer == Mixer::Linear)
    linear_attention_forward_ref(ref.data(), qd.data(), 1, T, C, H, causal);
  else
    attention_forward_ref(ref.data(), qd.data(), 1, T, C, H,
                          AttentionMask(causal, mixer == Mixer::Local ? window : 0));
  for (int64_t h = 0; h < H; h++) {
    int64_t n = 0;
    const auto w = attention_map(qkv.data(), T, C, H, h, mixer, causal, window, 64, n);
    ASSERT_EQ(n, T);
    for (int64_t i = 0; i < T; i++) {
      double row = 0;
      for (int64_t j = 0; j < T; j++) {
        row += w[i * T + j];
        if (causal && j > i) {
          EXPECT_EQ(w[i * T + j], 0.0) << i << " " << j;
        }
        if (mixer == Mixer::Local && std::abs(i - j) > window) {
          EXPECT_EQ(w[i * T + j], 0.0) << i << " " << j;
        }
      }
      EXPECT_NEAR(row, 1.0, 1e-5) << i;
      for (int64_t d = 0; d < hd; d++) {
        double out = 0;
        for (int64_t j = 0; j < T; j++) out += w[i * T + j] * qkv[j * 3 * C + 2 * C + h * hd + d];
        EXPECT_NEAR(out, ref[i * C + h * hd + d], 1e-5) << mixer_name(mixer) << " " << i;
      }
    }
  }
}

TEST(AttentionMap, SoftmaxWeightsReproduceTheReference) {
  expect_map_reproduces_reference(Mixer::Softmax, false, 0);
  expect_map_reproduces_reference(Mixer::Softmax, true, 0);
}

TEST(AttentionMap, LocalWeightsStayInTheWindow) {
  expect_map_reproduces_reference(Mixer::Local, false, 3);
  expect_map_reproduces_reference(Mixer::Local, true, 3);
}

TEST(AttentionMap, LinearWeightsReproduceTheReference) {
  expect_map_reproduces_reference(Mixer::Linear, false, 0);
  expect_map_reproduces_reference(Mixer::Linear, true, 0);
}

TEST(AttentionMap, PoolsLongSequencesIntoMeans) {
  const int64_t T = 10, C = 4, H = 1;
  const auto qkv = testing::randn(T * 3 * C, 3);
  int64_t n = 0;
  const auto full = attention_map(qkv.data(), T, C, H, 0, Mixer::Softmax, false, 0, 64, n);
  ASSERT_EQ(n, T);
  const auto pooled = attention_map(qkv.data(), T, C, H, 0, Mixer::Softmax, false, 0, 4, n);
  ASSERT_EQ(n, 4);
  ASSERT_EQ(pooled.size(), 16u);
  // Cells cover tokens [0,2) [2,5) [5,7) [7,10): each is the mean of the weights it covers.
  const int64_t first[] = {0, 2, 5, 7, 10};
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 4; b++) {
      double sum = 0;
      for (int64_t i = first[a]; i < first[a + 1]; i++)
        for (int64_t j = first[b]; j < first[b + 1]; j++) sum += full[i * T + j];
      const double cells =
          static_cast<double>((first[a + 1] - first[a]) * (first[b + 1] - first[b]));
      EXPECT_NEAR(pooled[a * 4 + b], sum / cells, 1e-12);
    }
}

TEST(AttentionMap, RecurrentMixersHaveNone) {
  EXPECT_FALSE(has_attention_map(Mixer::Gla));
  EXPECT_FALSE(has_attention_map(Mixer::Combiner));
  EXPECT_FALSE(has_attention_map(Mixer::Delta));
  int64_t n = 0;
  const std::vector<float> qkv(12, 0.0f);
  EXPECT_THROW(attention_map(qkv.data(), 1, 4, 1, 0, Mixer::Gla, false, 0, 8, n), Error);
}

TEST(AttentionMap, ModelsExposeTheirQkv) {
  LmConfig c;
  c.context = 8, c.embed_dim = 8, c.depth = 2, c.num_heads = 2, c.hidden = 16;
  c.rational_groups = 4;
  CausalLM lm(c);
  lm.init(1);
  EXPECT_THROW(lm.layer_qkv(0), Error);  // no forward yet
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5};
  lm.forward(tokens.data(), nullptr, 1, 5);
  int64_t n = 0;
  const auto w = attention_map(lm.layer_qkv(1), 5, 8, 2, 1, Mixer::Softmax, true, 0, 8, n);
  EXPECT_EQ(n, 5);
  EXPECT_NEAR(w[0], 1.0, 1e-6);  // the first token sees only itself
  EXPECT_THROW(lm.layer_qkv(2), Error);
}

ModelConfig tiny_classifier(Ffn ffn) {
  ModelConfig c;
  c.architecture = "kat_report_test";
  c.img_size = 8, c.patch_size = 4, c.in_chans = 1, c.embed_dim = 16, c.depth = 3;
  c.num_heads = 2, c.mlp_ratio = 2.0, c.num_classes = 3, c.rational_groups = 4, c.ffn = ffn;
  c.act_init = "gelu_old";
  return c;
}

TEST(LearnedActivations, ReadEveryLayerAndGroupWithItsInitialFunction) {
  VisionTransformer m(tiny_classifier(Ffn::Kan));
  m.init(2);
  const auto acts = learned_activations(m.params(), "gelu_old");
  ASSERT_EQ(acts.size(), 6u);  // 3 layers x {act1, act2}
  for (size_t i = 0; i < acts.size(); i++) {
    EXPECT_EQ(acts[i].layer, static_cast<int>(i / 2));
    EXPECT_EQ(acts[i].which, static_cast<int>(i % 2) + 1);
    ASSERT_EQ(acts[i].groups.size(), 4u);
    // Freshly initialised: every group is its initial function.
    for (const RationalCoefs& g : acts[i].groups)
      for (double x : {-3.0, -0.5, 0.0, 1.0, 3.5})
        EXPECT_NEAR(rational_eval(g, x), rational_eval(acts[i].initial, x), 1e-5);
  }
  EXPECT_EQ(acts[0].name, "blocks.0.mlp.act1");
  EXPECT_EQ(acts[0].initial_name, "identity");
  EXPECT_EQ(acts[5].initial_name, "gelu_old");
  // A group's own denominator is read from its row.
  m.params().value(m.params().find("blocks.1.mlp.act2.weight_denominator"))[2 * 4 + 1] = 0.75f;
  const auto edited = learned_activations(m.params(), "gelu_old");
  EXPECT_FLOAT_EQ(edited[3].groups[2].den[1], 0.75f);
  EXPECT_NE(edited[3].groups[1].den[1], 0.75);
}

TEST(LearnedActivations, MlpModelsHaveNone) {
  VisionTransformer m(tiny_classifier(Ffn::Mlp));
  EXPECT_TRUE(learned_activations(m.params(), "swish").empty());
}

TEST(LearnedActivations, SmallMultiplesDrawEveryGroupOverTheInitialFunction) {
  VisionTransformer m(tiny_classifier(Ffn::Kan));
  m.init(2);
  const auto acts = learned_activations(m.params(), "gelu_old");
  const std::string one = activation_svg(acts[1]);
  EXPECT_EQ(count(one, "<polyline"), 5u);  // 4 groups + the initial function
  EXPECT_EQ(count(one, "stroke-dasharray"), 1u);
  EXPECT_THAT(one, HasSubstr("<title>group 3</title>"));
  EXPECT_THAT(one, HasSubstr("<title>initial (gelu_old)</title>"));
  EXPECT_THAT(one, HasSubstr(">layer 0 act2<"));
  EXPECT_EQ(count(one, "<circle"), 0u);
  const std::string grid = activations_grid_svg(acts, "functions of <kat>");
  EXPECT_EQ(grid.rfind("<svg xmlns=", 0), 0u);
  EXPECT_EQ(count(grid, "<svg"), 7u);
  EXPECT_EQ(count(grid, "</svg>"), 7u);
  EXPECT_EQ(count(grid, "<title>group "), 6u * 4u);
  EXPECT_THAT(grid, HasSubstr("functions of &lt;kat&gt;"));
}

// Decodes the PNG of a data URI.
std::vector<uint8_t> decode_data_uri(const std::string& uri, int& w, int& h, int& channels) {
  const std::string prefix = "data:image/png;base64,";
  EXPECT_EQ(uri.rfind(prefix, 0), 0u);
  const std::string b64 = uri.substr(prefix.size());
  std::string bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : b64) {
    const std::string digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const size_t v = digits.find(c);
    if (v == std::string::npos) break;  // '='
    acc = (acc << 6) | static_cast<uint32_t>(v), bits += 6;
    if (bits >= 8) bytes.push_back(static_cast<char>((acc >> (bits - 8)) & 0xFF)), bits -= 8;
  }
  uint8_t* p = stbi_load_from_memory(reinterpret_cast<const uint8_t*>(bytes.data()),
                                     static_cast<int>(bytes.size()), &w, &h, &channels, 0);
  EXPECT_NE(p, nullptr) << stbi_failure_reason();
  std::vector<uint8_t> out(p, p + (p ? w * h * channels : 0));
  stbi_image_free(p);
  return out;
}

TEST(Png, DataUriHoldsThePixelsScaled) {
  const uint8_t gray[6] = {0, 50, 100, 150, 200, 250};  // 2 x 3
  int w = 0, h = 0, ch = 0;
  auto px = decode_data_uri(png_data_uri(gray, 1, 2, 3, 2), w, h, ch);
  ASSERT_EQ(w, 6);
  ASSERT_EQ(h, 4);
  ASSERT_EQ(ch, 1);
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 6; x++) EXPECT_EQ(px[y * 6 + x], gray[(y / 2) * 3 + x / 2]);
  const uint8_t rgb[3 * 2] = {255, 0, 10, 20, 30, 40};  // CHW, 1 x 2
  px = decode_data_uri(png_data_uri(rgb, 3, 1, 2), w, h, ch);
  ASSERT_EQ(w, 2);
  ASSERT_EQ(ch, 3);
  EXPECT_EQ(px[0], 255);
  EXPECT_EQ(px[1], 10);
  EXPECT_EQ(px[2], 30);
  EXPECT_EQ(px[3], 0);
  EXPECT_EQ(px[4], 20);
  EXPECT_EQ(px[5], 40);
  EXPECT_THROW(png_data_uri(gray, 2, 1, 3), Error);
}

TEST(Heatmap, LabelsValuesAndCells) {
  HeatmapOptions o;
  o.title = "Confusion <matrix>";
  o.row_labels = {"cat", "dog"}, o.col_labels = {"cat", "dog"};
  o.show_values = true, o.blues = true, o.cell = 10;
  const std::string svg = svg_heatmap({5, 1, 0, 7}, 2, 2, o);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_THAT(svg, HasSubstr("Confusion &lt;matrix&gt;"));
  int64_t sum = 0, cells = 0;
  for (size_t at = svg.find("class=\"cell\""); at != std::string::npos;
       at = svg.find("class=\"cell\"", at + 1), cells++)
    sum += std::stoll(svg.substr(svg.find('>', at) + 1));
  EXPECT_EQ(cells, 4);
  EXPECT_EQ(sum, 13);
  // The cells: one PNG of 2 x 2 cells of 10 pixels; the largest value is the darkest blue.
  const size_t at = svg.find("href=\"") + 6;
  int w = 0, h = 0, ch = 0;
  const auto px = decode_data_uri(svg.substr(at, svg.find('"', at) - at), w, h, ch);
  ASSERT_EQ(w, 20);
  ASSERT_EQ(h, 20);
  ASSERT_EQ(ch, 3);
  auto red_at = [&](int x, int y) { return px[(y * w + x) * 3]; };
  EXPECT_GT(red_at(5, 5), red_at(15, 15));  // 5 is lighter than 7, the darkest
  EXPECT_EQ(red_at(5, 15), 247);            // 0: ColorBrewer's lightest blue
  EXPECT_THROW(svg_heatmap({1, 2, 3}, 2, 2, o), Error);
}

TEST(Plot, DashedSeriesWithoutMarkersOrLegend) {
  Series s("initial", {0, 1, 2}, {0, 1, 4});
  s.dashed = true, s.markers = false, s.color = "#000";
  PlotOptions o;
  o.legend = false, o.width = 260, o.height = 200;
  const std::string svg = svg_line_plot({s}, o);
  EXPECT_EQ(count(svg, "<circle"), 0u);
  EXPECT_EQ(count(svg, "stroke-dasharray"), 1u);  // the curve, no legend line
  EXPECT_THAT(svg, HasSubstr("<title>initial</title>"));
  EXPECT_EQ(svg.find("-0<"), std::string::npos);
}

}  // namespace
}  // namespace kat
