// SVG line plots: one polyline per series, escaped text, log axes, and no crash on empty input.
#include <gtest/gtest.h>

#include "kat/plot.h"

namespace kat {
namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) n++;
  return n;
}

TEST(Plot, DrawsEverySeriesWithEscapedLabels) {
  PlotOptions o;
  o.title = "time <ms> & length", o.x_label = "L", o.y_label = "ms";
  o.log_x = o.log_y = true;
  const std::string svg = svg_line_plot(
      {{"softmax", {1024, 2048, 4096}, {25, 100, 420}}, {"a<b", {1024, 2048, 4096}, {3, 7, 15}}},
      o);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(count(svg, "<polyline"), 2u);
  EXPECT_EQ(count(svg, "<circle"), 6u);
  EXPECT_NE(svg.find("time &lt;ms&gt; &amp; length"), std::string::npos);
  EXPECT_NE(svg.find("a&lt;b"), std::string::npos);
  EXPECT_NE(svg.find(">2000<"), std::string::npos);  // 1-2-5 ticks on a short log axis
}

TEST(Plot, EmptyAndNonPositiveDataGiveEmptyAxes) {
  PlotOptions o;
  o.log_y = true;
  const std::string svg = svg_line_plot({{"none", {1, 2}, {0, -1}}, {"empty", {}, {}}}, o);
  EXPECT_EQ(count(svg, "<circle"), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
}

}  // namespace
}  // namespace kat
