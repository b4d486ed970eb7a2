// `kat report` and `kat plot-activations` as a user meets them: tiny runs made by the CLI itself
// (a language model, an LRA classifier with a GELU MLP and, where Fashion-MNIST is installed, an
// image classifier), the pages they give, bad input, and the page rendered by headless Chromium.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stb_image.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "cli.h"
#include "kat/data.h"
#include "kat/files.h"

namespace kat {
namespace {

namespace fs = std::filesystem;
using testing::expect_one_line_error;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::run_kat;
using testing::TempDir;

constexpr int kLmLayers = 2, kLmGroups = 4;

constexpr const char* kTinyClassifier = R"({
  "architecture": "kat_report_test",
  "model_args": {"img_size": 28, "patch_size": 7, "in_chans": 1, "embed_dim": 32, "depth": 2,
                 "num_heads": 2, "mlp_ratio": 2, "num_classes": 10, "rational_groups": 4},
  "pretrained_cfg": {"mean": [0.286], "std": [0.353]}
})";
constexpr int kClassifierLayers = 2, kClassifierGroups = 4;

bool have_fmnist() {
  return fs::exists(std::string(default_data_dir()) + "/train-images-idx3-ubyte.gz");
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) n++;
  return n;
}

// The text of <section id="id">...</section>.
std::string section(const std::string& html, const std::string& id) {
  const size_t at = html.find("<section id=\"" + id + "\">");
  if (at == std::string::npos) return "";
  return html.substr(at, html.find("</section>", at) - at);
}

// Sum and number of the confusion matrix's cells (<text class="cell" ...>N</text>). No
// std::regex here: it recurses per character and overflows the stack on the pages' data URIs.
std::pair<int64_t, int64_t> confusion_sum(const std::string& html) {
  int64_t sum = 0, cells = 0;
  for (size_t at = html.find("class=\"cell\""); at != std::string::npos;
       at = html.find("class=\"cell\"", at + 1), cells++)
    sum += std::stoll(html.substr(html.find('>', at) + 1));
  return {sum, cells};
}

// Every src="..." and href="..." of the page.
std::vector<std::string> references(const std::string& html) {
  std::vector<std::string> out;
  for (const std::string attr : {" src=\"", " href=\""})
    for (size_t at = html.find(attr); at != std::string::npos; at = html.find(attr, at + 1)) {
      const size_t start = at + attr.size();
      out.push_back(html.substr(start, html.find('"', start) - start));
    }
  return out;
}

// The program's path on PATH, or "".
std::string find_program(const std::vector<std::string>& names) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    for (const std::string& n : names)
      if (!dir.empty() && ::access((dir + "/" + n).c_str(), X_OK) == 0) return dir + "/" + n;
  return "";
}

class ReportCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("cli-report");
    write_file_atomic(*dir_ / "tiny_lm.json", testing::kTinyLmConfig);
    std::string text;
    for (int i = 0; i < 400; i++) text += "kat draws the rational functions it learned.\n";
    write_file_atomic(*dir_ / "text.txt", text);
    auto r = run_kat("train-lm --config " + (*dir_ / "tiny_lm.json") + " --text " +
                     (*dir_ / "text.txt") + " --out " + (*dir_ / "lm") +
                     " --steps 12 --eval-every 6 --eval-tokens 512 --batch 4 --warmup 2 "
                     "--log-every 3 --threads 2 --progress lines");
    ASSERT_EQ(r.status, 0) << r.output;
    r = run_kat("lra listops --out " + (*dir_ / "lra") +
                " --ffn mlp --train-size 40 --heldout 12 --steps 4 --batch 4 --eval-every 2 "
                "--eval-limit 8 --log-every 2 --threads 2 --progress lines");
    ASSERT_EQ(r.status, 0) << r.output;
    if (have_fmnist()) {
      write_file_atomic(*dir_ / "tiny_classifier.json", kTinyClassifier);
      r = run_kat("train --config " + (*dir_ / "tiny_classifier.json") + " --out " +
                  (*dir_ / "classifier") +
                  " --epochs 1 --batch 32 --train-limit 320 --test-limit 100 --log-every 2 "
                  "--threads 2 --progress lines");
      ASSERT_EQ(r.status, 0) << r.output;
    }
  }
  static void TearDownTestSuite() { delete dir_; }

  // Runs `kat report RUN --out RUN.html extra` and returns the page.
  static std::string report(const std::string& run, const std::string& extra = "") {
    const std::string out = *dir_ / (run + ".html");
    const auto r = run_kat("report " + (*dir_ / run) + " --out " + out + " --threads 2 " + extra);
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr(out));
    return fs::exists(out) ? read_text_file(out) : "";
  }
  static TempDir* dir_;
};
TempDir* ReportCliTest::dir_ = nullptr;

// What every page must be: one HTML document, self-contained, no script.
void expect_self_contained(const std::string& html, const std::string& run) {
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_THAT(html, HasSubstr("<title>kat report: " + run + "</title>"));
  EXPECT_THAT(html, HasSubstr("</html>"));
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  for (const std::string& target : references(html)) {
    EXPECT_TRUE(target.rfind("data:", 0) == 0 || target.rfind("#", 0) == 0)
        << "the page refers to something outside itself: " << target.substr(0, 80);
  }
  for (const char* id : {"model", "training", "activations", "attention"})
    EXPECT_THAT(html, HasSubstr("<section id=\"" + std::string(id) + "\">")) << id;
}

TEST_F(ReportCliTest, LanguageModelPage) {
  const std::string html = report("lm", "--tokens 40 --seed 3");
  expect_self_contained(html, "lm");
  // One small plot per layer and rational, one curve per group.
  const std::string acts = section(html, "activations");
  EXPECT_EQ(count(acts, "<svg"), 2u * kLmLayers);
  EXPECT_EQ(count(acts, "<title>group "), 2u * kLmLayers * kLmGroups);
  for (int l = 0; l < kLmLayers; l++)
    for (int a = 1; a <= 2; a++)
      EXPECT_THAT(acts,
                  HasSubstr(">layer " + std::to_string(l) + " act" + std::to_string(a) + "<"));
  // Two samples, at two temperatures.
  const std::string samples = section(html, "samples");
  EXPECT_EQ(count(samples, "<pre class=\"sample\">"), 2u);
  EXPECT_THAT(samples, HasSubstr("temperature 0.5"));
  EXPECT_THAT(samples, HasSubstr("temperature 1.0"));
  // Curves of the run's metrics: loss and the LM's throughput.
  const std::string training = section(html, "training");
  EXPECT_THAT(training, HasSubstr(">Loss<"));
  EXPECT_THAT(training, HasSubstr("tokens/s"));
  EXPECT_THAT(training, HasSubstr(">step<"));
  // Causal attention maps: 2 layers x 2 heads, over the validation text.
  const std::string attention = section(html, "attention");
  EXPECT_EQ(count(attention, "<svg"), 4u);
  EXPECT_THAT(attention, HasSubstr("causal"));
  EXPECT_THAT(attention, HasSubstr("the validation text of"));
  // The same seed gives the same page.
  EXPECT_EQ(report("lm", "--tokens 40 --seed 3"), html);
}

TEST_F(ReportCliTest, MlpSequenceClassifierPageSaysItHasNoGrKan) {
  const std::string html = report("lra");
  expect_self_contained(html, "lra");
  EXPECT_THAT(section(html, "activations"), HasSubstr("This model has no GR-KAN layers"));
  EXPECT_EQ(count(section(html, "activations"), "<svg"), 0u);
  const auto [sum, cells] = confusion_sum(section(html, "predictions"));
  EXPECT_EQ(cells, 100);  // ListOps: 10 classes
  EXPECT_EQ(sum, 12);     // every test sequence (--heldout 12)
  EXPECT_THAT(section(html, "training"), HasSubstr("sequences/s"));
  EXPECT_EQ(count(section(html, "attention"), "<svg"), 4u * 4u);  // 4 layers x 4 heads
}

TEST_F(ReportCliTest, ClassifierPage) {
  if (!have_fmnist()) GTEST_SKIP() << "Fashion-MNIST is not installed (scripts/test installs it)";
  const std::string html = report("classifier", "--limit 150 --images 20");
  expect_self_contained(html, "classifier");
  const std::string acts = section(html, "activations");
  EXPECT_EQ(count(acts, "<svg"), 2u * kClassifierLayers);
  EXPECT_EQ(count(acts, "<title>group "), 2u * kClassifierLayers * kClassifierGroups);
  const std::string pred = section(html, "predictions");
  const auto [sum, cells] = confusion_sum(pred);
  EXPECT_EQ(cells, 100);
  EXPECT_EQ(sum, 150);                         // --limit 150 test images
  EXPECT_THAT(pred, HasSubstr("Ankle boot"));  // class names of the config
  // The grid: 20 images, every misclassified one before every correct one.
  const size_t wrong = count(pred, "<figure class=\"wrong\">");
  const size_t right = count(pred, "<figure class=\"right\">");
  EXPECT_EQ(wrong + right, 20u);
  if (wrong > 0 && right > 0) {
    EXPECT_LT(pred.rfind("<figure class=\"wrong\">"), pred.find("<figure class=\"right\">"));
  }
  EXPECT_EQ(count(pred, "<img src=\"data:image/png;base64,"), 20u);
  EXPECT_THAT(section(html, "training"), HasSubstr(">Accuracy<"));
  EXPECT_EQ(count(section(html, "attention"), "<svg"), 2u * 2u);  // 2 layers x 2 heads
}

TEST_F(ReportCliTest, RunWithoutCheckpointShowsItsCurves) {
  fs::create_directories(*dir_ / "young");
  write_file_atomic(*dir_ / "young/metrics.jsonl",
                    "{\"kind\": \"step\", \"step\": 10, \"loss\": 2.5, \"lr\": 0.001}\n"
                    "{\"kind\": \"step\", \"step\": 20, \"loss\": 2.1, \"lr\": 0.002}\n"
                    "{\"kind\": \"st");  // a line being written
  const std::string html = report("young");
  EXPECT_THAT(html, HasSubstr("No checkpoint in"));
  EXPECT_THAT(html, HasSubstr("1 unreadable line left out"));
  EXPECT_THAT(section(html, "training"), HasSubstr(">Loss<"));
}

TEST_F(ReportCliTest, BadInputIsOneClearError) {
  fs::create_directories(*dir_ / "no_metrics");
  write_file_atomic(*dir_ / "no_metrics/config.json", testing::kTinyLmConfig);
  expect_one_line_error(run_kat("report " + (*dir_ / "no_metrics")), "no_metrics/metrics.jsonl");
  expect_one_line_error(run_kat("report " + (*dir_ / "nowhere")), "nowhere");
  expect_one_line_error(run_kat("report"), "run directory");
  write_file_atomic(*dir_ / "a_file", "x");
  expect_one_line_error(run_kat("report " + (*dir_ / "lm") + " --out " + (*dir_ / "a_file/r.html")),
                        "cannot write " + (*dir_ / "a_file/r.html"));
  expect_one_line_error(
      run_kat("report " + (*dir_ / "lm") + " --out " + (*dir_ / "missing/r.html")),
      "does not exist");
  expect_one_line_error(run_kat("report " + (*dir_ / "lm") + " --out " + dir_->str()),
                        "is a directory");
  expect_one_line_error(run_kat("report " + (*dir_ / "lm") + " --checkpoint " + (*dir_ / "lra")),
                        "no checkpoint there");
  expect_one_line_error(run_kat("report " + (*dir_ / "lm") + " --limit -3"), "--limit");
  expect_one_line_error(run_kat("report " + (*dir_ / "lm") + " --bogus"), "--bogus");
}

TEST_F(ReportCliTest, PlotActivationsWritesSvgAndPng) {
  const std::string svg_path = *dir_ / "acts.svg";
  auto r = run_kat("plot-activations " + (*dir_ / "lm/last") + " --out " + svg_path);
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string svg = read_text_file(svg_path);
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_EQ(count(svg, "<svg"), count(svg, "</svg>"));
  EXPECT_EQ(count(svg, "<svg"), 1u + 2u * kLmLayers);
  EXPECT_EQ(count(svg, "<title>group "), 2u * kLmLayers * kLmGroups);
  EXPECT_THAT(svg, HasSubstr("kat_lm_cli_test"));

  const std::string png_path = *dir_ / "acts.png";
  r = run_kat("plot-activations " + (*dir_ / "lm/last") + " --out " + png_path);
  if (find_program({"rsvg-convert"}).empty()) {
    expect_one_line_error(r, "librsvg2-bin");
  } else {
    ASSERT_EQ(r.status, 0) << r.output;
    int w = 0, h = 0, ch = 0;
    ASSERT_EQ(stbi_info(png_path.c_str(), &w, &h, &ch), 1) << png_path;
    EXPECT_GE(w, 520);
    EXPECT_GE(h, 2 * 200);
    for (const auto& e : fs::directory_iterator(dir_->str()))  // no temporary files left
      EXPECT_THAT(e.path().filename().string(), Not(HasSubstr(".tmp."))) << e.path();
  }
  // Without rsvg-convert the error names the package to install.
  expect_one_line_error(
      run_kat("plot-activations " + (*dir_ / "lm/last") + " --out " + png_path, "PATH=/nowhere"),
      "apt-get install librsvg2-bin");
}

TEST_F(ReportCliTest, PlotActivationsBadInput) {
  expect_one_line_error(
      run_kat("plot-activations " + (*dir_ / "lra/last") + " --out " + (*dir_ / "m.svg")),
      "has no GR-KAN layers");
  expect_one_line_error(
      run_kat("plot-activations " + (*dir_ / "lm/last") + " --out " + (*dir_ / "m.jpg")),
      ".svg or .png");
  expect_one_line_error(run_kat("plot-activations " + (*dir_ / "lm/last")), "--out");
  expect_one_line_error(
      run_kat("plot-activations " + (*dir_ / "nothing") + " --out " + (*dir_ / "m.svg")),
      "nothing");
  expect_one_line_error(run_kat("plot-activations " + (*dir_ / "lm/last") + " --out " +
                                (*dir_ / "a_dir_missing/m.svg")),
                        "does not exist");
}

TEST_F(ReportCliTest, HelpListsTheCommands) {
  auto r = run_kat("--help");
  EXPECT_THAT(r.output, HasSubstr("report RUN_DIR"));
  EXPECT_THAT(r.output, HasSubstr("plot-activations CKPT"));
  r = run_kat("report --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("--checkpoint"));
  r = run_kat("plot-activations --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.output, HasSubstr("librsvg2-bin"));
}

// ---- Rendering in a browser --------------------------------------------------------------------

struct Render {
  int status = -1;
  std::string log;                  // Chromium's stderr
  std::vector<std::string> errors;  // console messages and uncaught exceptions found in it
};

// Opens `html` in headless Chromium, saves a screenshot, and collects what the page logged.
Render render(const std::string& chromium, const std::string& html, const std::string& png,
              const std::string& profile) {
  const std::string cmd = "timeout 180 " + chromium +
                          " --headless --disable-gpu --no-sandbox --hide-scrollbars "
                          "--enable-logging=stderr --v=0 --user-data-dir=" +
                          profile + " --window-size=1200,3000 --screenshot=" + png + " file://" +
                          html + " 2>&1";
  const testing::RunResult run = testing::run_command(cmd);
  Render r;
  r.status = run.status, r.log = run.output;
  std::istringstream lines(r.log);
  std::string line;
  while (std::getline(lines, line))
    if (line.find(":CONSOLE") != std::string::npos || line.find("Uncaught") != std::string::npos)
      r.errors.push_back(line);
  return r;
}

TEST_F(ReportCliTest, PagesRenderInChromiumWithoutConsoleErrors) {
  const std::string chromium = find_program({"chromium", "chromium-browser", "google-chrome"});
  if (chromium.empty())
    GTEST_SKIP() << "no Chromium on PATH: the rendering test needs Debian's chromium, which "
                    "scripts/test installs when it can (apt-get install chromium)";
  const fs::path out = fs::path(KAT_BINARY_PATH).parent_path() / "test-output";
  fs::create_directories(out);
  const std::string profile = *dir_ / "chromium-profile";

  // The check can see errors: a page with a failing script is caught.
  write_file_atomic(*dir_ / "broken.html",
                    "<!DOCTYPE html><p>x</p><script>console.error('boom'); no_such();</script>");
  const Render broken =
      render(chromium, *dir_ / "broken.html", (out / "report-broken.png").string(), profile);
  ASSERT_EQ(broken.status, 0) << broken.log;
  ASSERT_FALSE(broken.errors.empty())
      << "Chromium logged no console messages for a failing script, so it cannot check pages:\n"
      << broken.log;

  std::vector<std::string> runs = {"lm", "lra"};
  if (have_fmnist()) runs.push_back("classifier");
  for (const std::string& run : runs) {
    report(run, run == "classifier" ? "--limit 300" : "");
    const std::string png = (out / ("report-" + run + ".png")).string();
    fs::remove(png);
    const Render r = render(chromium, *dir_ / (run + ".html"), png, profile);
    EXPECT_EQ(r.status, 0) << r.log;
    EXPECT_TRUE(r.errors.empty()) << run << ": " << ::testing::PrintToString(r.errors);
    int w = 0, h = 0, ch = 0;
    uint8_t* pixels = stbi_load(png.c_str(), &w, &h, &ch, 3);
    ASSERT_NE(pixels, nullptr) << "no screenshot at " << png << "\n" << r.log;
    EXPECT_EQ(w, 1200);
    EXPECT_EQ(h, 3000);
    std::set<uint32_t> colors;  // a rendered page, not a blank one
    for (int64_t i = 0; i < int64_t{w} * h; i += 7)
      colors.insert(pixels[3 * i] << 16 | pixels[3 * i + 1] << 8 | pixels[3 * i + 2]);
    stbi_image_free(pixels);
    EXPECT_GT(colors.size(), 50u) << png;
    std::cout << "screenshot of the " << run << " report: " << png << "\n";
  }
}

}  // namespace
}  // namespace kat
