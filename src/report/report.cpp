// `kat report`: one HTML page per run directory. Every picture is inline (SVG, PNG data URIs), the
// page has no script and reaches nothing outside itself, so it opens from disk anywhere.
#include "kat/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kat/checkpoint.h"
#include "kat/data.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/lm.h"
#include "kat/lm_trainer.h"
#include "kat/lra.h"
#include "kat/model.h"
#include "kat/plot.h"
#include "kat/sequence.h"
#include "kat/trainer.h"

namespace kat {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr float kTemperatures[2] = {0.5f, 1.0f};
constexpr int kMaxHeadsShown = 4;   // more heads: one map of their mean per layer
constexpr int64_t kMapCells = 128;  // attention maps pooled to at most 128 x 128 cells
constexpr int64_t kLmExampleTokens = 128;
constexpr int64_t kLraDefaultLimit = 500;

enum class Kind { Classifier, Lm, Sequence };

Kind kind_of_config(const std::string& text) {
  if (is_lm_config_json(text)) return Kind::Lm;
  return is_sequence_config_json(text) ? Kind::Sequence : Kind::Classifier;
}

// A checkpoint of one of the three kinds, with what the page needs to know of its config.
struct LoadedModel {
  Kind kind = Kind::Classifier;
  std::unique_ptr<VisionTransformer> vit;
  std::unique_ptr<CausalLM> lm;
  std::unique_ptr<SequenceClassifier> seq;
  std::string architecture, act_init, config_json;
  Ffn ffn = Ffn::Kan;
  Mixer mixer = Mixer::Softmax;
  int depth = 0, heads = 0, dim = 0, groups = 0;
  int64_t window = 0;  // the blocks' (mixer_window)

  const Params& params() const { return vit ? vit->params() : lm ? lm->params() : seq->params(); }
  const float* layer_qkv(int l) const {
    return vit ? vit->layer_qkv(l) : lm ? lm->layer_qkv(l) : seq->layer_qkv(l);
  }
};

LoadedModel load_any(const std::string& path) {
  const std::string dir = checkpoint_dir(path);
  const std::string config_path = dir + "/config.json";
  check(file_exists(config_path), dir, ": no config.json in the checkpoint directory");
  LoadedModel m;
  m.config_json = read_text_file(config_path);
  m.kind = kind_of_config(m.config_json);
  if (m.kind == Kind::Lm) {
    m.lm = load_lm(dir);
    const LmConfig& c = m.lm->config();
    m.architecture = c.architecture, m.act_init = c.act_init, m.ffn = c.ffn, m.mixer = c.mixer;
    m.depth = c.depth, m.heads = c.num_heads, m.dim = c.embed_dim, m.groups = c.rational_groups;
    m.window = mixer_window(c.mixer, c.window, c.context);
  } else if (m.kind == Kind::Sequence) {
    m.seq = load_sequence_model(dir);
    const SequenceConfig& c = m.seq->config();
    m.architecture = c.architecture, m.act_init = c.act_init, m.ffn = c.ffn, m.mixer = c.mixer;
    m.depth = c.depth, m.heads = c.num_heads, m.dim = c.embed_dim, m.groups = c.rational_groups;
    m.window = mixer_window(c.mixer, c.window, c.max_len);
  } else {
    m.vit = load_model(dir);
    const ModelConfig& c = m.vit->config();
    m.architecture = c.architecture, m.act_init = c.act_init, m.ffn = c.ffn, m.mixer = c.mixer;
    m.depth = c.depth, m.heads = c.num_heads, m.dim = c.embed_dim, m.groups = c.rational_groups;
    m.window = mixer_window(c.mixer, c.window, c.tokens());
  }
  return m;
}

// ---- HTML helpers ------------------------------------------------------------------------------

// Bytes as HTML text: escaped, invalid UTF-8 and control characters (other than newline and tab)
// shown as U+FFFD, so model output never breaks the page.
std::string html_text(const std::string& bytes) {
  std::string out;
  const char* kReplacement = "\xEF\xBF\xBD";
  for (size_t i = 0; i < bytes.size();) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x80) {
      if (c == '<' || c == '>' || c == '&')
        out += xml_escape(std::string(1, static_cast<char>(c)));
      else if (c >= 0x20 || c == '\n' || c == '\t')
        out += static_cast<char>(c);
      else
        out += kReplacement;
      i++;
      continue;
    }
    const size_t len = c >= 0xC2 && c <= 0xDF   ? 2
                       : c >= 0xE0 && c <= 0xEF ? 3
                       : c >= 0xF0 && c <= 0xF4 ? 4
                                                : 0;
    bool ok = len > 0 && i + len <= bytes.size();
    for (size_t k = 1; ok && k < len; k++)
      ok = (static_cast<unsigned char>(bytes[i + k]) >> 6) == 2;
    if (ok && len == 3) {  // no overlong forms, no surrogates
      const auto c1 = static_cast<unsigned char>(bytes[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
    }
    if (ok && len == 4) {
      const auto c1 = static_cast<unsigned char>(bytes[i + 1]);
      ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
    }
    if (ok) {
      out.append(bytes, i, len);
      i += len;
    } else {
      out += kReplacement;
      i++;
    }
  }
  return out;
}

std::string percent(double v) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2) << 100 * v << "%";
  return s.str();
}

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

constexpr const char* kStyle = R"(
body { font-family: sans-serif; max-width: 1280px; margin: 0 auto; padding: 0 16px 40px;
       color: #222; background: #fafafa; }
h1 { margin: 20px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ccc; }
.meta, .note { color: #555; } nav a { margin-right: 14px; }
table.summary td { padding: 2px 14px 2px 0; vertical-align: top; }
table.summary td:first-child { color: #555; }
.plots { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.plots svg { background: white; border: 1px solid #ddd; }
figure { margin: 0; } .layer { margin: 10px 0; } .layer h3 { margin: 6px 0; font-size: 15px; }
.images { display: flex; flex-wrap: wrap; gap: 6px; }
.images figure { width: 96px; text-align: center; font-size: 11px; background: white;
                 border: 1px solid #ddd; padding: 4px 2px; }
.images img { width: 84px; height: 84px; image-rendering: pixelated; }
.images figure.wrong { border-color: #d62728; } .images figure.wrong b { color: #d62728; }
pre.sample { white-space: pre-wrap; background: white; border: 1px solid #ddd; padding: 8px;
             max-width: 900px; }
.legend span { display: inline-block; margin-right: 12px; }
.swatch { display: inline-block; width: 18px; height: 3px; vertical-align: middle;
          margin-right: 4px; }
)";

// The page: sections with headings, collected in order, and a table of contents on top.
class Page {
 public:
  void section(const std::string& id, const std::string& title) {
    toc_.push_back({id, title});
    body_ << "<section id=\"" << id << "\">\n<h2>" << xml_escape(title) << "</h2>\n";
  }
  void end_section() { body_ << "</section>\n"; }
  std::ostream& out() { return body_; }
  void note(const std::string& text) { body_ << "<p class=\"note\">" << text << "</p>\n"; }
  std::string html(const std::string& title, const std::string& meta) const {
    std::ostringstream h;
    h << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>"
      << xml_escape(title) << "</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n<h1>"
      << xml_escape(title) << "</h1>\n<p class=\"meta\">" << meta << "</p>\n<nav>";
    for (const auto& [id, name] : toc_) h << "<a href=\"#" << id << "\">" << name << "</a>";
    h << "</nav>\n" << body_.str() << "</body>\n</html>\n";
    return h.str();
  }

 private:
  std::vector<std::pair<std::string, std::string>> toc_;
  std::ostringstream body_;
};

// ---- Training curves ---------------------------------------------------------------------------

struct Metrics {
  std::vector<json> lines;
  int64_t skipped = 0;  // lines that are not JSON objects (a line being written, say)
};

Metrics read_metrics(const std::string& path) {
  Metrics m;
  std::istringstream in(read_text_file(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      json j = json::parse(line);
      if (j.is_object())
        m.lines.push_back(std::move(j));
      else
        m.skipped++;
    } catch (const json::exception&) {
      m.skipped++;
    }
  }
  return m;
}

struct CurveSpec {
  const char *name, *kind, *key;
};
struct ChartSpec {
  const char *title, *y_label;
  bool log_y;
  std::vector<CurveSpec> curves;
};

// Every chart any of the three trainers has data for (metrics.jsonl of docs/formats.md).
const std::vector<ChartSpec>& chart_specs() {
  static const std::vector<ChartSpec> specs = {
      {"Loss",
       "loss (nats)",
       false,
       {{"training", "step", "loss"},
        {"test", "epoch", "test_loss"},
        {"validation", "eval", "val_loss"}}},
      {"Accuracy",
       "accuracy",
       false,
       {{"training batches", "step", "acc"},
        {"test", "epoch", "test_acc"},
        {"validation", "eval", "valid_acc"},
        {"test (end)", "test", "test_acc"}}},
      {"Validation bits per byte", "bits per byte", false, {{"validation", "eval", "val_bpb"}}},
      {"Throughput",
       "per second (training)",
       false,
       {{"images/s", "step", "images_per_s"},
        {"tokens/s", "step", "tokens_per_s"},
        {"sequences/s", "step", "sequences_per_s"}}},
      {"Learning rate", "learning rate", true, {{"lr", "step", "lr"}}},
      {"Gradient norm (before clipping)", "norm", true, {{"grad_norm", "step", "grad_norm"}}}};
  return specs;
}

void training_section(Page& page, const Metrics& m, const std::string& path) {
  page.section("training", "Training");
  if (m.lines.empty()) {
    page.note(xml_escape(path) +
              " has no metric lines yet: the run logs one every --log-every "
              "steps.");
    page.end_section();
    return;
  }
  int64_t last_step = 0;
  double last_time = 0;
  for (const json& j : m.lines) {
    if (j.contains("step") && j["step"].is_number()) last_step = j["step"].get<int64_t>();
    if (j.contains("time_s") && j["time_s"].is_number()) last_time = j["time_s"].get<double>();
  }
  page.note(std::to_string(m.lines.size()) + " metric lines up to step " +
            std::to_string(last_step) + " (" + fixed(last_time, 0) + " s of training)" +
            (m.skipped ? "; " + std::to_string(m.skipped) + " unreadable line" +
                             (m.skipped > 1 ? "s" : "") + " left out"
                       : "") +
            ".");
  page.out() << "<div class=\"plots\">\n";
  for (const ChartSpec& spec : chart_specs()) {
    std::vector<Series> series;
    for (size_t k = 0; k < spec.curves.size(); k++) {
      const CurveSpec& c = spec.curves[k];
      Series s;
      s.name = c.name;
      s.color = plot_color(k);
      for (const json& j : m.lines)
        if (j.value("kind", "") == c.kind && j.contains(c.key) && j[c.key].is_number() &&
            j.contains("step") && j["step"].is_number()) {
          s.x.push_back(j["step"].get<double>());
          s.y.push_back(j[c.key].get<double>());
        }
      s.markers = s.x.size() <= 60;
      if (!s.x.empty()) series.push_back(std::move(s));
    }
    if (series.empty()) continue;
    PlotOptions o;
    o.title = spec.title, o.x_label = "step", o.y_label = spec.y_label, o.log_y = spec.log_y;
    o.width = 560, o.height = 330;  // two side by side in a 1200-pixel window
    page.out() << svg_line_plot(series, o);
  }
  page.out() << "</div>\n";
  page.end_section();
}

// ---- Model summary and learned functions -------------------------------------------------------

void model_section(Page& page, const LoadedModel& m, const std::string& ckpt, const json& state) {
  page.section("model", "Model");
  const char* kinds[] = {"image classifier", "byte-level language model",
                         "sequence classifier (LRA)"};
  std::vector<std::pair<std::string, std::string>> rows = {
      {"checkpoint", xml_escape(ckpt)},
      {"architecture", xml_escape(m.architecture)},
      {"kind", kinds[static_cast<int>(m.kind)]},
      {"parameters", std::to_string(m.params().total())},
      {"blocks", std::to_string(m.depth) + " x (" + mixer_name(m.mixer) + " mixer" +
                     (m.window > 0 ? ", window " + std::to_string(m.window) : "") + ", " +
                     (m.ffn == Ffn::Kan ? "GR-KAN" : "GELU MLP") + " feed-forward)"},
      {"width", std::to_string(m.dim) + " channels, " + std::to_string(m.heads) + " heads"}};
  if (m.ffn == Ffn::Kan)
    rows.push_back({"GR-KAN", std::to_string(m.groups) +
                                  " groups; act1 starts as identity, act2 as " +
                                  xml_escape(m.act_init)});
  if (state.is_object()) {
    if (state.contains("step")) rows.push_back({"trained steps", state["step"].dump()});
    if (state.contains("options") && state["options"].is_object()) {
      std::string options;
      for (const auto& [key, value] : state["options"].items()) {
        std::ostringstream v;  // floats stored from float: 6 significant digits
        if (value.is_number_float())
          v << value.get<double>();
        else
          v << value.dump();
        options += (options.empty() ? "" : ", ") + key + " " + v.str();
      }
      rows.push_back({"training options", xml_escape(options)});
    }
  }
  page.out() << "<table class=\"summary\">\n";
  for (const auto& [k, v] : rows)
    page.out() << "<tr><td>" << k << "</td><td>" << v << "</td></tr>\n";
  page.out() << "</table>\n<details><summary>config.json</summary><pre>"
             << xml_escape(m.config_json) << "</pre></details>\n";
  page.end_section();
}

void activations_section(Page& page, const LoadedModel& m) {
  page.section("activations", "Learned activations (GR-KAN)");
  const std::vector<LearnedActivation> acts = learned_activations(m.params(), m.act_init);
  if (acts.empty()) {
    page.note(
        "This model has no GR-KAN layers: its feed-forward is a GELU MLP (ffn \"mlp\"), so "
        "there are no learned activation functions to draw.");
    page.end_section();
    return;
  }
  page.note(
      "Each block's feed-forward is act1 &rarr; fc1 &rarr; act2 &rarr; fc2. Every plot shows the "
      "rational F(x) = P(x) / Q(x) of one layer over [-4, 4], one solid curve per channel group "
      "(the numerator is shared, each group has its own denominator), over the function it started "
      "from (dashed).");
  page.out() << "<p class=\"legend\"><span><span class=\"swatch\" style=\"background: "
                "repeating-linear-gradient(90deg, #000 0 5px, transparent 5px 9px)\"></span>"
                "initial</span>";
  for (size_t g = 0; g < acts[0].groups.size(); g++)
    page.out() << "<span><span class=\"swatch\" style=\"background:" << plot_color(g)
               << "\"></span>group " << g << "</span>";
  page.out() << "</p>\n<div class=\"plots\">\n";
  for (const LearnedActivation& a : acts) page.out() << activation_svg(a);
  page.out() << "</div>\n";
  page.end_section();
}

// ---- Attention maps ----------------------------------------------------------------------------

// Maps of every layer for the example whose forward (batch 1, T tokens) just ran.
void attention_maps(Page& page, const LoadedModel& m, int64_t T, bool causal,
                    const std::string& token_note) {
  if (!has_attention_map(m.mixer)) {
    page.note(std::string("The ") + mixer_name(m.mixer) +
              " mixer forms no token-to-token attention matrix (" +
              (m.mixer == Mixer::Combiner
                   ? "each query attends to its own span and to one summary per other span"
                   : "each query reads a running state that sums up the keys, not the keys one "
                     "by one") +
              "), so there are no attention maps to draw.");
    return;
  }
  const bool mean = m.heads > kMaxHeadsShown;
  int64_t n = 0;
  std::ostringstream what;
  what << (m.mixer == Mixer::Linear
               ? "The weights linear attention gives value j for query i, phi(q<sub>i</sub>) "
                 "&middot; phi(k<sub>j</sub>) normalised over the keys (phi = elu + 1), of every "
                 "head"
               : "softmax(q k<sup>T</sup> / &radic;d<sub>head</sub>) of every head")
       << (m.mixer == Mixer::Local ? " over the window of " + std::to_string(m.window) + " keys"
                                   : "")
       << (causal ? ", causal (each token sees the ones before it)" : "") << "."
       << (mean ? " With " + std::to_string(m.heads) + " heads, each layer shows their mean." : "")
       << (token_note.empty() ? "" : " " + token_note);
  if (T > kMapCells)
    what << " The " << T << " tokens are pooled into " << kMapCells << " x " << kMapCells
         << " cells (each the mean of the weights it covers).";
  what << " Colour: &radic;(weight / the map's largest weight), dark to bright.";
  page.note(what.str());
  for (int l = 0; l < m.depth; l++) {
    const float* qkv = m.layer_qkv(l);
    page.out() << "<div class=\"layer\"><h3>layer " << l << "</h3><div class=\"plots\">\n";
    std::vector<std::vector<double>> maps;
    for (int h = 0; h < m.heads; h++)
      maps.push_back(
          attention_map(qkv, T, m.dim, m.heads, h, m.mixer, causal, m.window, kMapCells, n));
    if (mean) {
      for (int h = 1; h < m.heads; h++)
        for (size_t i = 0; i < maps[0].size(); i++) maps[0][i] += maps[h][i];
      for (double& v : maps[0]) v /= m.heads;
      maps.resize(1);
    }
    for (size_t h = 0; h < maps.size(); h++) {
      double top = 0;
      for (double v : maps[h]) top = std::max(top, v);
      std::vector<double> colors(maps[h].size());
      for (size_t i = 0; i < colors.size(); i++)
        colors[i] = top > 0 ? std::sqrt(maps[h][i] / top) : 0;
      HeatmapOptions o;
      o.title =
          mean ? "mean of " + std::to_string(m.heads) + " heads" : "head " + std::to_string(h);
      o.x_label = "key", o.y_label = "query";
      o.size = 256;
      o.row_labels.assign(n, "");
      for (int64_t a = 0; a < n; a += std::max<int64_t>(1, n / 4))
        o.row_labels[a] = std::to_string(a * T / n);
      page.out() << svg_heatmap(maps[h], static_cast<int>(n), static_cast<int>(n), o, colors);
    }
    page.out() << "</div></div>\n";
  }
}

// ---- Classifiers -------------------------------------------------------------------------------

void confusion_matrix(Page& page, const std::vector<int64_t>& counts, int V,
                      const std::vector<std::string>& names) {
  std::vector<double> values(counts.begin(), counts.end()), colors(values.size());
  for (int r = 0; r < V; r++) {
    double row = 0;
    for (int c = 0; c < V; c++) row += values[r * V + c];
    for (int c = 0; c < V; c++) colors[r * V + c] = row > 0 ? values[r * V + c] / row : 0;
  }
  HeatmapOptions o;
  o.title = "Confusion matrix";
  o.x_label = "predicted class", o.y_label = "true class";
  o.row_labels = names, o.col_labels = names;
  o.show_values = true, o.blues = true;
  o.cell = V <= 12 ? 44 : std::max(8, 520 / V);
  o.show_values = o.cell >= 30;
  o.caption = "colour: the share of the true class's examples";
  page.out() << "<div class=\"plots\">" << svg_heatmap(values, V, V, o, colors) << "</div>\n";
}

void classifier_sections(Page& page, LoadedModel& m, const json& state, const ReportOptions& ro) {
  VisionTransformer& model = *m.vit;
  const ModelConfig& c = model.config();
  std::string dir = ro.data_dir;
  if (dir.empty() && state.is_object() && state.contains("options"))
    dir = state["options"].value("data_dir", "");
  if (dir.empty()) dir = default_data_dir();
  page.section("predictions", "Test predictions");
  ImageDataset test;
  EvalResult r;
  try {
    test = load_idx_split(dir, Split::Test);
    r = evaluate(model, test, 256, ro.limit > 0 ? ro.limit : 0);
  } catch (const Error& e) {
    page.note("No test predictions: the test data could not be used (" + xml_escape(e.what()) +
              "). Give its directory with --data DIR.");
    page.end_section();
    return;
  }
  std::vector<std::string> names = c.class_names;
  if (static_cast<int>(names.size()) != c.num_classes) names = class_names_for(dir, c.num_classes);
  page.note("Accuracy <b>" + percent(r.accuracy()) + "</b> (" + std::to_string(r.correct) + " of " +
            std::to_string(r.count) + " test images of " + xml_escape(test.source) +
            (r.count < test.count ? ", the first " + std::to_string(r.count) : "") +
            "), mean loss " + fixed(r.loss, 4) + ".");
  confusion_matrix(page, r.confusion, c.num_classes, names);
  // The grid: misclassified images first, then correct ones, each in data order.
  std::vector<int64_t> order;
  for (int pass = 0; pass < 2; pass++)
    for (int64_t i = 0; i < r.count; i++)
      if ((r.predicted[i] != test.labels[i]) == (pass == 0)) order.push_back(i);
  if (static_cast<int64_t>(order.size()) > ro.images) order.resize(std::max(0, ro.images));
  int64_t wrong = 0;
  for (int64_t i = 0; i < r.count; i++) wrong += r.predicted[i] != test.labels[i];
  page.out() << "<h3>" << order.size() << " test images, misclassified first (" << wrong << " of "
             << r.count << " are); bold: the predicted class</h3>\n<div class=\"images\">\n";
  const int channels = test.channels == 3 ? 3 : 1;  // otherwise the first channel, in gray
  const int scale = std::max(1, 84 / std::max(test.height, test.width));
  auto name = [&](int k) {
    return k < static_cast<int>(names.size()) ? names[k] : std::to_string(k);
  };
  for (int64_t i : order) {
    const bool ok = r.predicted[i] == test.labels[i];
    page.out() << "<figure class=\"" << (ok ? "right" : "wrong") << "\"><img src=\""
               << png_data_uri(test.image(i), channels, test.height, test.width, scale)
               << "\" alt=\"test image " << i << "\"><figcaption>#" << i << "<br><b>"
               << xml_escape(name(r.predicted[i]))
               << "</b><br>true: " << xml_escape(name(test.labels[i]))
               << "</figcaption></figure>\n";
  }
  page.out() << "</div>\n";
  page.end_section();

  page.section("attention", "Attention maps");
  std::vector<float> input(static_cast<size_t>(c.in_chans) * c.img_size * c.img_size);
  normalize_images(input.data(), test.image(0), 1, c);
  model.forward(input.data(), nullptr, 1);
  page.out() << "<p class=\"note\"><img style=\"width:56px;height:56px;image-rendering:pixelated;"
                "vertical-align:middle\" src=\""
             << png_data_uri(test.image(0), channels, test.height, test.width, 2)
             << "\" alt=\"test image 0\"> Test image 0 (true: " << xml_escape(name(test.labels[0]))
             << ").</p>\n";
  attention_maps(page, m, c.tokens(), false,
                 "Token 0 is the class token, tokens 1.." + std::to_string(c.num_patches()) +
                     " the " + std::to_string(c.patch_size) + "x" + std::to_string(c.patch_size) +
                     " patches row by row.");
  page.end_section();
}

// ---- Language models ---------------------------------------------------------------------------

void lm_sections(Page& page, LoadedModel& m, const json& state, const ReportOptions& ro) {
  CausalLM& model = *m.lm;
  const LmConfig& c = model.config();
  page.section("samples", "Samples");
  page.note("Two samples of up to " + std::to_string(ro.tokens) +
            " bytes from the start of a document (seed " + std::to_string(ro.seed) +
            ") at two temperatures, each ending early where the model ends the document; "
            "<code>kat generate CKPT --temperature T --seed " +
            std::to_string(ro.seed) + "</code> draws the same.");
  std::string first_sample;
  for (float t : kTemperatures) {
    SamplingOptions s;
    s.temperature = t;
    Rng rng(ro.seed);
    const std::string text = generate_text(model, "", ro.tokens, c.context, s, rng);
    if (first_sample.empty()) first_sample = text;
    page.out() << "<h3>temperature " << fixed(t, 1) << "</h3>\n<pre class=\"sample\">"
               << html_text(text) << "</pre>\n";
  }
  page.end_section();

  page.section("attention", "Attention maps");
  // The example: the start of the first validation document, else the first sample.
  std::vector<int32_t> tokens;
  std::string source;
  try {
    std::vector<std::string> texts;
    if (state.is_object() && state.contains("options") && state["options"].contains("texts"))
      texts = state["options"]["texts"].get<std::vector<std::string>>();
    const TextCorpus corpus = load_text_corpus(texts, c.context);
    const auto& v = corpus.valid;
    auto at = std::find(v.begin(), v.end(), kEndOfText);
    const bool document_start = at != v.end();
    at = document_start ? at + 1 : v.begin();
    for (; at != v.end() && *at != kEndOfText &&
           static_cast<int64_t>(tokens.size()) < std::min<int64_t>(c.context, kLmExampleTokens);
         at++)
      tokens.push_back(*at);
    source = std::string(document_start ? "the first document that starts in" : "the start of") +
             " the validation text of " + corpus.source;
  } catch (const Error&) {
    tokens.clear();
  }
  if (tokens.size() < 2) {
    tokens.assign(1, kEndOfText);
    for (char ch : first_sample)
      if (static_cast<int64_t>(tokens.size()) < std::min<int64_t>(c.context, kLmExampleTokens))
        tokens.push_back(static_cast<unsigned char>(ch));
    source = "the first sample above (the training text could not be read)";
  }
  model.forward(tokens.data(), nullptr, 1, static_cast<int64_t>(tokens.size()));
  std::string shown;
  for (int32_t t : tokens) shown += t == kEndOfText ? ' ' : static_cast<char>(t);
  page.out() << "<p class=\"note\">The example, " << xml_escape(source) << " (" << tokens.size()
             << " tokens):</p>\n<pre class=\"sample\">" << html_text(shown) << "</pre>\n";
  attention_maps(page, m, static_cast<int64_t>(tokens.size()), true,
                 "Token t is byte t of the example.");
  page.end_section();
}

// ---- Sequence classifiers (LRA) ----------------------------------------------------------------

void sequence_sections(Page& page, LoadedModel& m, const json& state, const ReportOptions& ro) {
  SequenceClassifier& model = *m.seq;
  const SequenceConfig& c = model.config();
  page.section("predictions", "Test predictions");
  const json opt =
      state.is_object() && state.contains("options") ? state["options"] : json::object();
  std::string task = opt.value("task", "");
  if (task.empty())  // runs from before trainer_state.json: "<ffn>_lra_<task>_<mixer>"
    for (const std::string& t : lra_task_names())
      if (c.architecture.find("_lra_" + t + "_") != std::string::npos) task = t;
  LraData data;
  try {
    check(!task.empty(), "neither trainer_state.json nor the architecture name the LRA task");
    LraOptions o = lra_data_options(opt);
    o.task = task;
    if (!ro.data_dir.empty()) o.data_dir = ro.data_dir;
    data = load_lra(o, "", LraSplits::kHeldout);  // the test split is all this page reads
    check(data.test.size() > 0, data.test.source, ": the test split is empty");
  } catch (const Error& e) {
    page.note("No test predictions: the test data could not be read (" + xml_escape(e.what()) +
              ").");
    page.end_section();
    return;
  }
  const SequenceDataset& test = data.test;
  const int64_t n = std::min(test.size(), ro.limit == 0  ? test.size()
                                          : ro.limit > 0 ? ro.limit
                                                         : kLraDefaultLimit);
  std::vector<int32_t> tokens;
  if (c.masked_head) {  // a pretraining checkpoint: its classification head is not trained
    const float ratio = opt.value("mask_ratio", 0.5f);
    page.note("A self-pretraining checkpoint (<code>kat lra --pretrain</code>): it predicts <b>" +
              percent(lra_accuracy(model, test, 32, n, ratio)) +
              "</b> of the hidden tokens right, hiding " + percent(ratio) +
              " of each of the first " + std::to_string(n) + " of " + std::to_string(test.size()) +
              " test sequences of " + xml_escape(test.source) +
              " (--limit N evaluates more). Its classification head is not trained: "
              "<code>--init</code> a classification run from it.");
  }
  const int V = c.num_classes;
  std::vector<int64_t> confusion(static_cast<size_t>(V) * V, 0);
  int64_t correct = 0;
  for (int64_t i = 0;
       !c.masked_head && i < n;) {  // neighbours of equal length in one forward, up to 32
    int64_t j = i + 1;
    while (j < n && j - i < 32 && test.length(j) == test.length(i)) j++;
    const int64_t T = test.length(i);
    tokens.assign(test.tokens.begin() + test.offsets[i], test.tokens.begin() + test.offsets[j]);
    model.forward(tokens.data(), nullptr, j - i, T);
    for (int64_t b = 0; b < j - i; b++) {
      const float* z = model.logits() + b * V;
      const int pred = static_cast<int>(std::max_element(z, z + V) - z);
      confusion[test.labels[i + b] * V + pred]++;
      correct += pred == test.labels[i + b];
    }
    i = j;
  }
  if (!c.masked_head) {
    page.note("Accuracy <b>" + percent(n ? static_cast<double>(correct) / n : 0) + "</b> (" +
              std::to_string(correct) + " of the first " + std::to_string(n) + " of " +
              std::to_string(test.size()) + " test sequences of " + xml_escape(test.source) +
              "; --limit N evaluates more).");
    std::vector<std::string> names;
    for (int k = 0; k < V; k++) names.push_back(std::to_string(k));
    confusion_matrix(page, confusion, V, names);
  }
  page.end_section();

  page.section("attention", "Attention maps");
  const int64_t T = test.length(0);
  tokens.assign(test.tokens.begin() + test.offsets[0], test.tokens.begin() + test.offsets[1]);
  model.forward(tokens.data(), nullptr, 1, T);
  page.note("The example: test sequence 0 (" + std::to_string(T) + " tokens, class " +
            std::to_string(test.labels[0]) + ").");
  std::string rows;
  if (c.prefix_tokens()) rows = "Row and column 0 are the class token";
  if (c.end_token)
    rows += (rows.empty() ? "The last row and column are" : "; the last ones") +
            std::string(" the end token");
  attention_maps(page, m, T + c.extra_tokens(), false, rows.empty() ? "" : rows + ".");
  page.end_section();
}

std::string run_name(const std::string& run_dir) {
  fs::path p = fs::path(run_dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  const std::string name = p.filename().string();
  return name.empty() || name == "." ? fs::absolute(p).lexically_normal().filename().string()
                                     : name;
}

}  // namespace

std::vector<LearnedActivation> checkpoint_activations(const std::string& checkpoint,
                                                      std::string& architecture, std::string& ffn) {
  const LoadedModel m = load_any(checkpoint);
  architecture = m.architecture;
  ffn = m.ffn == Ffn::Kan ? "kan" : "mlp";
  return learned_activations(m.params(), m.act_init);
}

std::string report_html(const ReportOptions& ro) {
  const std::string& run = ro.run_dir;
  check(fs::is_directory(run), run, ": no such run directory");
  const std::string metrics_path = (fs::path(run) / "metrics.jsonl").string();
  check(fs::exists(metrics_path), metrics_path,
        ": no such file; kat report reads the run directory of kat train, train-lm or lra (the "
        "one that holds metrics.jsonl, last/ and best/)");
  const Metrics metrics = read_metrics(metrics_path);

  // The checkpoint: the one asked for, else last/, else best/.
  std::string ckpt;
  if (ro.checkpoint.empty()) {
    for (const char* name : {"last", "best"})
      if (ckpt.empty() && file_exists((fs::path(run) / name / "model.safetensors").string()))
        ckpt = (fs::path(run) / name).string();
  } else {
    ckpt = ro.checkpoint == "last" || ro.checkpoint == "best"
               ? (fs::path(run) / ro.checkpoint).string()
               : ro.checkpoint;
    check(file_exists((fs::path(ckpt) / "model.safetensors").string()), ckpt,
          ": no checkpoint there (no model.safetensors)");
  }

  Page page;
  const std::string name = run_name(run);
  std::string meta = "Run directory " + xml_escape(run);
  if (ckpt.empty()) {
    training_section(page, metrics, metrics_path);
    page.section("model", "Model");
    page.note("No checkpoint in " + xml_escape(run) +
              " yet (last/ and best/ are written at the first evaluation), so there are no "
              "learned functions, predictions or attention maps to show.");
    page.end_section();
    return page.html("kat report: " + name, meta + ", no checkpoint yet.");
  }
  LoadedModel m = load_any(ckpt);
  json state;
  const std::string state_path = (fs::path(ckpt) / "trainer_state.json").string();
  if (file_exists(state_path)) {
    try {
      state = json::parse(read_text_file(state_path));
    } catch (const json::exception&) {
    }
  }
  meta += ", checkpoint " + xml_escape(ckpt) + " (" + xml_escape(m.architecture) + ")";
  if (state.is_object() && state.contains("step")) meta += " at step " + state["step"].dump();
  meta += ".";
  model_section(page, m, ckpt, state);
  training_section(page, metrics, metrics_path);
  activations_section(page, m);
  if (m.kind == Kind::Classifier)
    classifier_sections(page, m, state, ro);
  else if (m.kind == Kind::Lm)
    lm_sections(page, m, state, ro);
  else
    sequence_sections(page, m, state, ro);
  return page.html("kat report: " + name, meta);
}

}  // namespace kat
