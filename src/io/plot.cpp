#include "kat/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace kat {
namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}

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
    if (t.size() < 2) {  // too few round values: label the ends too
      t.insert(t.begin(), lo);
      t.push_back(hi);
    }
    return t;
  }
  const double raw = (hi - lo) / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5   ? mag
                      : raw / mag < 3.5 ? 2 * mag
                      : raw / mag < 7.5 ? 5 * mag
                                        : 10 * mag;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) t.push_back(v);
  return t;
}

}  // namespace

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
  const double L = 70, R = 150, T = 40, B = 50;
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
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << L + W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">"
      << escape(o.title) << "</text>\n";
  for (double v : ticks(x0, x1, o.log_x))
    svg << "<line x1=\"" << fx(v) << "\" y1=\"" << T << "\" x2=\"" << fx(v) << "\" y2=\"" << T + H
        << "\" stroke=\"#ddd\"/><text x=\"" << fx(v) << "\" y=\"" << T + H + 16
        << "\" text-anchor=\"middle\">" << number(v) << "</text>\n";
  for (double v : ticks(y0, y1, o.log_y))
    svg << "<line x1=\"" << L << "\" y1=\"" << fy(v) << "\" x2=\"" << L + W << "\" y2=\"" << fy(v)
        << "\" stroke=\"#ddd\"/><text x=\"" << L - 6 << "\" y=\"" << fy(v) + 4
        << "\" text-anchor=\"end\">" << number(v) << "</text>\n";
  svg << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W << "\" height=\"" << H
      << "\" fill=\"none\" stroke=\"#444\"/>\n"
      << "<text x=\"" << L + W / 2 << "\" y=\"" << o.height - 12 << "\" text-anchor=\"middle\">"
      << escape(o.x_label) << "</text>\n"
      << "<text transform=\"translate(16," << T + H / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
      << escape(o.y_label) << "</text>\n";
  for (size_t k = 0; k < series.size(); k++) {
    const Series& s = series[k];
    const char* color = kColors[k % (sizeof kColors / sizeof kColors[0])];
    std::ostringstream pts;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); i++) {
      if ((o.log_x && s.x[i] <= 0) || (o.log_y && s.y[i] <= 0) || !std::isfinite(s.y[i])) continue;
      pts << fx(s.x[i]) << "," << fy(s.y[i]) << " ";
      svg << "<circle cx=\"" << fx(s.x[i]) << "\" cy=\"" << fy(s.y[i]) << "\" r=\"3\" fill=\""
          << color << "\"/>\n";
    }
    svg << "<polyline points=\"" << pts.str() << "\" fill=\"none\" stroke=\"" << color
        << "\" stroke-width=\"2\"/>\n"
        << "<line x1=\"" << L + W + 12 << "\" y1=\"" << T + 12 + 18 * k << "\" x2=\"" << L + W + 32
        << "\" y2=\"" << T + 12 + 18 * k << "\" stroke=\"" << color
        << "\" stroke-width=\"2\"/><text x=\"" << L + W + 38 << "\" y=\"" << T + 16 + 18 * k
        << "\">" << escape(s.name) << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace kat
