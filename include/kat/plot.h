// Plots as self-contained SVG text: no fonts to install, no network, opens in any browser.
#pragma once

#include <string>
#include <vector>

namespace kat {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

struct PlotOptions {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  int width = 640, height = 400;
};

// A line chart (markers on every point) with axes, ticks, a legend and the title.
std::string svg_line_plot(const std::vector<Series>& series, const PlotOptions& options);

}  // namespace kat
