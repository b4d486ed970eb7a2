// The learned GR-KAN functions of a checkpoint as small multiples: one plot per layer and
// rational, one curve per group, the initial function dashed beneath.
#include <algorithm>
#include <sstream>

#include "kat/error.h"
#include "kat/plot.h"
#include "kat/report.h"

namespace kat {
namespace {

constexpr const char* kNumerator = ".weight_numerator";
constexpr const char* kDenominator = ".weight_denominator";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The block index in "blocks.3.mlp.act1" / "h.3.mlp.act1": the last number before ".mlp".
int layer_of(const std::string& prefix) {
  const size_t mlp = prefix.rfind(".mlp.");
  check(mlp != std::string::npos && mlp > 0, prefix, ": not a block's GR-KAN");
  size_t start = prefix.rfind('.', mlp - 1);
  start = start == std::string::npos ? 0 : start + 1;
  try {
    return std::stoi(prefix.substr(start, mlp - start));
  } catch (const std::exception&) {
    fail(prefix, ": no layer number before .mlp");
  }
}

// Places an SVG document inside another at (x, y).
std::string nested(const std::string& svg, double x, double y) {
  std::ostringstream at;
  at << "<svg x=\"" << x << "\" y=\"" << y << "\" ";
  return at.str() + svg.substr(5);  // after "<svg "
}

}  // namespace

std::vector<LearnedActivation> learned_activations(const Params& params,
                                                   const std::string& act_init) {
  std::vector<LearnedActivation> out;
  for (const ParamSpec& spec : params.specs()) {
    if (!ends_with(spec.name, kNumerator)) continue;
    const std::string prefix =
        spec.name.substr(0, spec.name.size() - std::string(kNumerator).size());
    const int which = ends_with(prefix, "mlp.act1") ? 1 : ends_with(prefix, "mlp.act2") ? 2 : 0;
    if (which == 0) continue;
    const int den = params.find(prefix + kDenominator);
    check(den >= 0, prefix, kDenominator, ": missing beside ", spec.name);
    const ParamSpec& d = params.specs()[den];
    check(spec.size == 6 && d.shape.size() == 2 && d.shape[1] == 4, prefix,
          ": GR-KAN weights must be [1, 6] and [groups, 4], not ", shape_str(spec.shape), " and ",
          shape_str(d.shape));
    LearnedActivation a;
    a.name = prefix;
    a.layer = layer_of(prefix);
    a.which = which;
    const float* num = params.value(params.find(spec.name));
    const float* dv = params.value(den);
    for (int64_t g = 0; g < d.shape[0]; g++) {
      RationalCoefs k;
      for (int i = 0; i < 6; i++) k.num[i] = num[i];
      for (int i = 0; i < 4; i++) k.den[i] = dv[g * 4 + i];
      a.groups.push_back(k);
    }
    a.initial_name = which == 1 ? "identity" : act_init;
    a.initial = rational_init(a.initial_name);
    out.push_back(std::move(a));
  }
  std::sort(out.begin(), out.end(), [](const LearnedActivation& a, const LearnedActivation& b) {
    return a.layer != b.layer ? a.layer < b.layer : a.which < b.which;
  });
  return out;
}

std::string activation_svg(const LearnedActivation& a, int width, int height) {
  constexpr int kPoints = 161;  // steps of 0.05 over [-4, 4]
  auto curve = [](const RationalCoefs& k, const std::string& name) {
    Series s;
    s.name = name, s.markers = false;
    for (int i = 0; i < kPoints; i++) {
      const double x = -kActivationRange + 2 * kActivationRange * i / (kPoints - 1);
      s.x.push_back(x), s.y.push_back(rational_eval(k, x));
    }
    return s;
  };
  std::vector<Series> series;
  Series init = curve(a.initial, "initial (" + a.initial_name + ")");
  init.dashed = true, init.color = "#000";
  series.push_back(init);
  for (size_t g = 0; g < a.groups.size(); g++) {
    series.push_back(curve(a.groups[g], "group " + std::to_string(g)));
    series.back().color = plot_color(g);
  }
  PlotOptions o;
  o.title = "layer " + std::to_string(a.layer) + " act" + std::to_string(a.which);
  o.x_label = "x", o.y_label = "F(x)";
  o.width = width, o.height = height, o.legend = false;
  return svg_line_plot(series, o);
}

std::string activations_grid_svg(const std::vector<LearnedActivation>& acts,
                                 const std::string& title) {
  constexpr int kW = 260, kH = 200, kTop = 64;
  int layers = 0;
  for (const auto& a : acts) layers = std::max(layers, a.layer + 1);
  size_t groups = 0;
  for (const auto& a : acts) groups = std::max(groups, a.groups.size());
  const int width = std::max(2 * kW, static_cast<int>(96 + 80 * groups));
  const int height = kTop + layers * kH;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << " " << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << width / 2 << "\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">"
      << xml_escape(title) << "</text>\n";
  // Legend: the dashed initial function, then one colour per group.
  svg << "<line x1=\"10\" y1=\"44\" x2=\"34\" y2=\"44\" stroke=\"#000\" stroke-dasharray=\"5,4\" "
         "stroke-width=\"2\"/><text x=\"38\" y=\"48\">initial</text>\n";
  for (size_t g = 0; g < groups; g++) {
    const double x = 96 + 80.0 * g;
    svg << "<line x1=\"" << x << "\" y1=\"44\" x2=\"" << x + 20 << "\" y2=\"44\" stroke=\""
        << plot_color(g) << "\" stroke-width=\"2\"/><text x=\"" << x + 24 << "\" y=\"48\">group "
        << g << "</text>\n";
  }
  for (const auto& a : acts)
    svg << nested(activation_svg(a, kW, kH), (a.which - 1) * kW, kTop + a.layer * kH);
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace kat
