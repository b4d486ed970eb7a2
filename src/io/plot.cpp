#include "kat/plot.h"

#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "kat/error.h"

namespace kat {
namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string escape(const std::string& s) { return xml_escape(s); }

std::string number(double v) {
  char buf[32];
  const double a = std::fabs(v);
  std::snprintf(buf, sizeof buf, (a != 0 && (a >= 1e5 || a < 1e-3)) ? "%.0e" : "%g", v);
  return buf;
}

// Tick values over [lo, hi]: powers of ten on a log axis, 1-2-5 steps otherwise.
std::vector<double> ticks(double lo, double hi, bool log) {
  std::vector<double> t;
  if (log) {  // powers of ten; 1-2-5 steps when the range spans less than two decades
    const bool fine = std::log10(hi / lo) < 2;
    for (double p = std::floor(std::log10(lo)); p <= std::ceil(std::log10(hi)); p++)
      for (double m : fine ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
        const double v = m * std::pow(10.0, p);
        if (v >= lo * 0.999 && v <= hi * 1.001) t.push_back(v);
      }
    if (t.size() < 2) {  // too few round values: label the ends too, to 3 significant digits
      auto round3 = [](double v, bool up) {
        const double unit = std::pow(10.0, std::floor(std::log10(v)) - 2);
        return (up ? std::ceil(v / unit) : std::floor(v / unit)) * unit;
      };
      t.insert(t.begin(), round3(lo, true));
      t.push_back(round3(hi, false));
    }
    return t;
  }
  const double raw = (hi - lo) / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5   ? mag
                      : raw / mag < 3.5 ? 2 * mag
                      : raw / mag < 7.5 ? 5 * mag
                                        : 10 * mag;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step)
    t.push_back(std::fabs(v) < 1e-9 * step ? 0.0 : v);  // no "-0" from rounding
  return t;
}

}  // namespace

const char* plot_color(size_t k) { return kColors[k % (sizeof kColors / sizeof kColors[0])]; }

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

std::string svg_line_plot(const std::vector<Series>& series, const PlotOptions& o) {
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const Series& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); i++) {
      if ((o.log_x && s.x[i] <= 0) || (o.log_y && s.y[i] <= 0) || !std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  if (x0 > x1) {  // nothing to draw: empty axes
    x0 = o.log_x ? 1 : 0, x1 = o.log_x ? 10 : 1;
    y0 = o.log_y ? 1 : 0, y1 = o.log_y ? 10 : 1;
  }
  if (x0 == x1) o.log_x ? (x0 /= 2, x1 *= 2) : (x0 -= 0.5, x1 += 0.5);
  if (y0 == y1) o.log_y ? (y0 /= 2, y1 *= 2) : (y0 -= 0.5, y1 += 0.5);
  if (!o.log_y) {  // a little headroom
    const double pad = 0.05 * (y1 - y0);
    y0 -= pad, y1 += pad;
  }
  // Small plots (small multiples) get narrower margins.
  const bool small = o.width < 400;
  const double L = small ? 48 : 70, R = o.legend ? 150 : (small ? 10 : 20), T = small ? 30 : 40;
  const double B = small ? 40 : 50;
  const double W = o.width - L - R, H = o.height - T - B;
  auto fx = [&](double x) {
    return o.log_x ? L + W * (std::log(x) - std::log(x0)) / (std::log(x1) - std::log(x0))
                   : L + W * (x - x0) / (x1 - x0);
  };
  auto fy = [&](double y) {
    return o.log_y ? T + H * (1 - (std::log(y) - std::log(y0)) / (std::log(y1) - std::log(y0)))
                   : T + H * (1 - (y - y0) / (y1 - y0));
  };
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << o.width << "\" height=\""
      << o.height << "\" viewBox=\"0 0 " << o.width << " " << o.height
      << "\" font-family=\"sans-serif\" font-size=\"" << (small ? 11 : 12) << "\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << L + W / 2 << "\" y=\"" << (small ? 18 : 22)
      << "\" text-anchor=\"middle\" font-size=\"" << (small ? 13 : 15) << "\">" << escape(o.title)
      << "</text>\n";
  for (double v : ticks(x0, x1, o.log_x))
    svg << "<line x1=\"" << fx(v) << "\" y1=\"" << T << "\" x2=\"" << fx(v) << "\" y2=\"" << T + H
        << "\" stroke=\"#ddd\"/><text x=\"" << fx(v) << "\" y=\"" << T + H + 14
        << "\" text-anchor=\"middle\">" << number(v) << "</text>\n";
  for (double v : ticks(y0, y1, o.log_y))
    svg << "<line x1=\"" << L << "\" y1=\"" << fy(v) << "\" x2=\"" << L + W << "\" y2=\"" << fy(v)
        << "\" stroke=\"#ddd\"/><text x=\"" << L - 5 << "\" y=\"" << fy(v) + 4
        << "\" text-anchor=\"end\">" << number(v) << "</text>\n";
  svg << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W << "\" height=\"" << H
      << "\" fill=\"none\" stroke=\"#444\"/>\n"
      << "<text x=\"" << L + W / 2 << "\" y=\"" << o.height - (small ? 8 : 12)
      << "\" text-anchor=\"middle\">" << escape(o.x_label) << "</text>\n"
      << "<text transform=\"translate(" << (small ? 12 : 16) << "," << T + H / 2
      << ") rotate(-90)\" text-anchor=\"middle\">" << escape(o.y_label) << "</text>\n";
  for (size_t k = 0; k < series.size(); k++) {
    const Series& s = series[k];
    const std::string color = s.color.empty() ? plot_color(k) : s.color;
    const char* dash = s.dashed ? "\" stroke-dasharray=\"5,4" : "";
    std::ostringstream pts;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); i++) {
      if ((o.log_x && s.x[i] <= 0) || (o.log_y && s.y[i] <= 0) || !std::isfinite(s.y[i])) continue;
      pts << fx(s.x[i]) << "," << fy(s.y[i]) << " ";
      if (s.markers)
        svg << "<circle cx=\"" << fx(s.x[i]) << "\" cy=\"" << fy(s.y[i]) << "\" r=\"3\" fill=\""
            << color << "\"/>\n";
    }
    svg << "<polyline points=\"" << pts.str() << "\" fill=\"none\" stroke=\"" << color << dash
        << "\" stroke-width=\"" << (small ? 1.5 : 2) << "\"><title>" << escape(s.name)
        << "</title></polyline>\n";
    if (o.legend)
      svg << "<line x1=\"" << L + W + 12 << "\" y1=\"" << T + 12 + 18 * k << "\" x2=\""
          << L + W + 32 << "\" y2=\"" << T + 12 + 18 * k << "\" stroke=\"" << color << dash
          << "\" stroke-width=\"2\"/><text x=\"" << L + W + 38 << "\" y=\"" << T + 16 + 18 * k
          << "\">" << escape(s.name) << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

namespace {

// Colour maps over t in [0, 1]: viridis (5 anchors) and white-to-blue (ColorBrewer Blues).
void color_at(double t, bool blues, uint8_t rgb[3]) {
  static const double kViridis[5][3] = {
      {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  static const double kBlues[5][3] = {
      {247, 251, 255}, {198, 219, 239}, {107, 174, 214}, {33, 113, 181}, {8, 48, 107}};
  const auto& map = blues ? kBlues : kViridis;
  t = std::isfinite(t) ? std::clamp(t, 0.0, 1.0) : 0.0;
  const double at = t * 4;
  const int i = std::min(3, static_cast<int>(at));
  const double f = at - i;
  for (int c = 0; c < 3; c++)
    rgb[c] = static_cast<uint8_t>(std::lround(map[i][c] + f * (map[i + 1][c] - map[i][c])));
}

std::string base64(const std::string& bytes) {
  static const char* kDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 2]);
    out += kDigits[(v >> 18) & 63];
    out += kDigits[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kDigits[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kDigits[v & 63] : '=';
  }
  return out;
}

void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
}

}  // namespace

std::string png_data_uri(const uint8_t* pixels, int channels, int height, int width, int scale) {
  check(channels == 1 || channels == 3, "png_data_uri: 1 or 3 channels, not ", channels);
  check(height > 0 && width > 0 && scale > 0, "png_data_uri: empty image");
  const int H = height * scale, W = width * scale;
  const int64_t plane = static_cast<int64_t>(height) * width;
  std::vector<uint8_t> hwc(static_cast<size_t>(H) * W * channels);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < channels; c++)
        hwc[(static_cast<size_t>(y) * W + x) * channels + c] =
            pixels[c * plane + static_cast<int64_t>(y / scale) * width + x / scale];
  std::string png;
  check(stbi_write_png_to_func(append_bytes, &png, W, H, channels, hwc.data(), W * channels) != 0,
        "png_data_uri: PNG encoding failed");
  return "data:image/png;base64," + base64(png);
}

std::string svg_heatmap(const std::vector<double>& values, int rows, int cols,
                        const HeatmapOptions& o, const std::vector<double>& colors) {
  check(rows > 0 && cols > 0 && values.size() == static_cast<size_t>(rows) * cols,
        "svg_heatmap: ", values.size(), " values for a ", rows, " x ", cols, " matrix");
  check(colors.empty() || colors.size() == values.size(), "svg_heatmap: colours and values differ");
  const int cell = o.cell > 0 ? o.cell : std::max(1, o.size / std::max(rows, cols));
  // Cell colours, one PNG pixel per cell repeated `cell` times (crisp edges in every viewer).
  double top = 0;
  for (double v : values) top = std::isfinite(v) ? std::max(top, v) : top;
  std::vector<uint8_t> rgb(3 * static_cast<size_t>(rows) * cols);
  const size_t plane = static_cast<size_t>(rows) * cols;
  for (size_t i = 0; i < plane; i++) {
    uint8_t c[3];
    color_at(colors.empty() ? (top > 0 ? values[i] / top : 0) : colors[i], o.blues, c);
    for (int ch = 0; ch < 3; ch++) rgb[ch * plane + i] = c[ch];
  }
  size_t row_chars = 0, col_chars = 0;
  for (const auto& s : o.row_labels) row_chars = std::max(row_chars, s.size());
  for (const auto& s : o.col_labels) col_chars = std::max(col_chars, s.size());
  const bool slant = col_chars * 7 > static_cast<size_t>(cell);  // column labels at 45 degrees
  const double map_w = static_cast<double>(cell) * cols, map_h = static_cast<double>(cell) * rows;
  const double L = 28 + 6.5 * row_chars, T = o.title.empty() ? 8 : 30;
  const double B = 30 +
                   (o.col_labels.empty() ? 0
                    : slant              ? 5 * col_chars + 8
                                         : 16) +
                   (o.caption.empty() ? 0 : 16);
  const double R = 12;
  const double width = std::max(L + map_w + R, 7.0 * o.title.size() + 20), height = T + map_h + B;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << " " << height
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  if (!o.title.empty())
    svg << "<text x=\"" << L + map_w / 2 << "\" y=\"19\" text-anchor=\"middle\" font-size=\"13\">"
        << escape(o.title) << "</text>\n";
  svg << "<image x=\"" << L << "\" y=\"" << T << "\" width=\"" << map_w << "\" height=\"" << map_h
      << "\" preserveAspectRatio=\"none\" style=\"image-rendering:pixelated\" href=\""
      << png_data_uri(rgb.data(), 3, rows, cols, cell) << "\"/>\n"
      << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << map_w << "\" height=\"" << map_h
      << "\" fill=\"none\" stroke=\"#444\"/>\n";
  for (int r = 0; r < rows && r < static_cast<int>(o.row_labels.size()); r++)
    svg << "<text x=\"" << L - 4 << "\" y=\"" << T + (r + 0.5) * cell + 4
        << "\" text-anchor=\"end\">" << escape(o.row_labels[r]) << "</text>\n";
  for (int c = 0; c < cols && c < static_cast<int>(o.col_labels.size()); c++) {
    const double x = L + (c + 0.5) * cell, y = T + map_h + 13;
    if (slant)
      svg << "<text transform=\"translate(" << x + 4 << "," << y - 4
          << ") rotate(-45)\" text-anchor=\"end\">" << escape(o.col_labels[c]) << "</text>\n";
    else
      svg << "<text x=\"" << x << "\" y=\"" << y << "\" text-anchor=\"middle\">"
          << escape(o.col_labels[c]) << "</text>\n";
  }
  if (o.show_values)
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        const size_t i = static_cast<size_t>(r) * cols + c;
        const double t = colors.empty() ? (top > 0 ? values[i] / top : 0) : colors[i];
        svg << "<text class=\"cell\" x=\"" << L + (c + 0.5) * cell << "\" y=\""
            << T + (r + 0.5) * cell + 4 << "\" text-anchor=\"middle\" fill=\""
            << (t > 0.55 ? "white" : "#222") << "\">" << number(values[i]) << "</text>\n";
      }
  const double below = T + map_h + (o.col_labels.empty() ? 0 : slant ? 5 * col_chars + 8 : 16);
  svg << "<text x=\"" << L + map_w / 2 << "\" y=\"" << below + 18 << "\" text-anchor=\"middle\">"
      << escape(o.x_label) << "</text>\n"
      << "<text transform=\"translate(12," << T + map_h / 2
      << ") rotate(-90)\" text-anchor=\"middle\">" << escape(o.y_label) << "</text>\n";
  if (!o.caption.empty())
    svg << "<text x=\"" << L + map_w / 2 << "\" y=\"" << below + 34
        << "\" text-anchor=\"middle\" fill=\"#555\">" << escape(o.caption) << "</text>\n";
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace kat
