// Plots as self-contained SVG text: no fonts to install, no network, opens in any browser.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kat {

struct Series {
  Series() = default;
  Series(std::string name_, std::vector<double> x_, std::vector<double> y_)
      : name(std::move(name_)), x(std::move(x_)), y(std::move(y_)) {}

  std::string name;
  std::vector<double> x, y;
  bool markers = true;  // a dot on every point
  bool dashed = false;
  std::string color;  // empty: the palette's colour for the series' index
};

struct PlotOptions {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  int width = 640, height = 400;
  bool legend = true;  // the series' names right of the axes (off: the axes take the width)
};

// The palette series are drawn in: colour k of the 8, cycling.
const char* plot_color(size_t k);

// A line chart with axes, ticks, a legend and the title. Each series is one <polyline> holding a
// <title> with its name (a tooltip in browsers).
std::string svg_line_plot(const std::vector<Series>& series, const PlotOptions& options);

struct HeatmapOptions {
  std::string title, x_label, y_label;
  std::vector<std::string> row_labels, col_labels;  // empty: none (e.g. for pooled maps)
  bool show_values = false;  // each cell's value as text (<text class="cell">), for small matrices
  int cell = 0;              // pixels per cell; 0: fit the matrix into `size` pixels
  int size = 240;
  bool blues = false;   // white-to-blue (for counts) instead of viridis
  std::string caption;  // a line under the map (what the colours mean)
};

// A matrix [rows, cols] as a heat map: the cells are one embedded PNG (so a 128 x 128 map stays a
// few kilobytes), colours from `colors` [rows, cols] in [0, 1] (values when empty, scaled by their
// largest), labels and values as SVG text.
std::string svg_heatmap(const std::vector<double>& values, int rows, int cols,
                        const HeatmapOptions& options, const std::vector<double>& colors = {});

// "data:image/png;base64,...": pixels [channels, height, width] (1 gray, 3 RGB; CHW as the IDX
// data holds them), each pixel repeated `scale` x `scale` times.
std::string png_data_uri(const uint8_t* pixels, int channels, int height, int width, int scale = 1);

// Converts SVG text to a PNG file with rsvg-convert (Debian's librsvg2-bin; the error says so when
// it is missing), written beside `png_path` and renamed over it.
void write_svg_as_png(const std::string& svg, const std::string& png_path);

// Text for SVG/HTML: < > & " escaped.
std::string xml_escape(const std::string& s);

}  // namespace kat
