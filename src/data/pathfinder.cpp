// Pathfinder images (LRA's Pathfinder-32, after Linsley et al. 2018): generated, or read from and
// written to LRA's released layout.
//
// The generator (default PathfinderRules) draws on a black 32x32 canvas:
//   - two "main" contours of 6 dashes each and 2 distractor contours of 4 dashes each;
//   - a contour is a random walk of straight dashes: it starts at a uniform point and direction,
//     each dash is a 3-pixel segment, a 2-pixel dark gap follows, and the direction turns by a
//     uniform angle in [-0.6, 0.6] rad in the middle of each gap. A main contour is about 28 pixels
//     of arc and may bend by up to 170 degrees in all;
//   - neighbouring dashes of a contour are 2 or 3 pixels apart (Chebyshev distance between their
//     pixels, PathfinderRules::link = 3): the gap is always visible but never wider than 3;
//   - contours keep clear of each other: no pixel of one lies within 3 pixels of another's (nor
//     of the space kept for marks at the ends of the main contours), and dashes of one contour
//     that are not neighbours keep the same distance (no loops back onto itself);
//   - the second main contour starts on the circle around one end E of the first whose radius is
//     the distance from E to the first contour's other end F (at a uniform angle);
//   - the marks are 3x3 squares centred on contour ends: E and F for label 1, E and the start of
//     the second main contour for label 0.
// So linking bright pixels that are at most 3 apart joins the two marks exactly when the label is
// 1. The contours are drawn the same way for both labels and the label only decides which of two
// ends, equally far from E, gets the second mark: the classes cannot be told apart from any small
// patch, nor from the distance between the marks; one has to follow the dashes from one mark.
//
// Rejection sampling: a contour's shape is drawn, then placed at up to 20 uniform offsets inside
// the frame; a shape that fits nowhere is drawn again (up to 50 times); an image whose contours do
// not all fit is started again (up to 500 times). Each image has its own random stream, derived
// from the seed and its index, so images are drawn in parallel and the result ignores the thread
// count.
#include "kat/pathfinder.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <sstream>

#include "kat/error.h"
#include "kat/files.h"
#include "kat/parallel.h"
#include "kat/rng.h"

namespace kat {
namespace {

namespace fs = std::filesystem;

constexpr int kShapeAttempts = 50, kPlaceAttempts = 20, kImageAttempts = 500;
constexpr int kImagesPerFolder = 1000;  // write_pathfinder_dir: imgs/<k>/ and metadata/<k>.npy
enum Stream : uint64_t { kLabelOrder = 0, kImage = 1 };

using Pixels = std::vector<int>;  // pixel indices y * size + x

// The smallest Chebyshev distance between a pixel of a and a pixel of b.
int distance(const Pixels& a, const Pixels& b, int size) {
  int d = 1 << 30;
  for (int p : a)
    for (int q : b)
      d = std::min(d, std::max(std::abs(p % size - q % size), std::abs(p / size - q / size)));
  return d;
}

// The 3x3 square centred on pixel p (the space a mark takes).
Pixels mark_square(int p, int size) {
  Pixels s;
  for (int dy = -1; dy <= 1; dy++)
    for (int dx = -1; dx <= 1; dx++) s.push_back(p + dy * size + dx);
  return s;
}

struct Point {
  double x, y;
};

int pixel_of(Point p, int size) {
  return static_cast<int>(std::floor(p.y + 0.5)) * size + static_cast<int>(std::floor(p.x + 0.5));
}

double length(Point a, Point b) { return std::hypot(a.x - b.x, a.y - b.y); }

struct Contour {
  std::vector<Pixels> dashes;  // lit pixels of each dash, in order
  std::vector<Pixels> areas;   // each dash plus, for marked ends, the mark square
  Point ends[2] = {};          // first and last lit point
};

// Where a contour must start: on the circle of `radius` around `center`.
struct Anchor {
  Point center;
  double radius;
};

// A contour of n dashes that keeps clear of `blocked` pixels; false when none fits. A shape (the
// headings of the dashes) is drawn first, then placed at uniform offsets where it lies inside the
// frame (or, with an anchor, with its start at a uniform angle on the anchor's circle) until one
// breaks none of the rules.
bool place_contour(int n, bool keep_ends_free, const Anchor* anchor, const PathfinderRules& r,
                   Rng& rng, const std::vector<uint8_t>& blocked, Contour& out) {
  const int size = r.size;
  const double half_gap = (r.gap_length + 1) / 2.0;  // arc from a dash's last lit point to the turn
  std::vector<Point> starts(n), ends(n);
  for (int shape = 0; shape < kShapeAttempts; shape++) {
    // Dash k runs from starts[k] to ends[k] (its first and last lit points). Dash k + 1 starts
    // half the gap on along heading k, turned, then the other half on along heading k + 1.
    double heading = 2 * std::numbers::pi * rng.uniform_double();
    Point at{0, 0}, lo{0, 0}, hi{0, 0};
    for (int k = 0; k < n; k++) {
      if (k > 0) {
        const double next = heading + r.max_turn * (2 * rng.uniform_double() - 1);
        at = {ends[k - 1].x + half_gap * (std::cos(heading) + std::cos(next)),
              ends[k - 1].y + half_gap * (std::sin(heading) + std::sin(next))};
        heading = next;
      }
      starts[k] = at;
      ends[k] = {at.x + (r.dash_length - 1) * std::cos(heading),
                 at.y + (r.dash_length - 1) * std::sin(heading)};
      for (const Point& p : {starts[k], ends[k]})
        lo = {std::min(lo.x, p.x), std::min(lo.y, p.y)},
        hi = {std::max(hi.x, p.x), std::max(hi.y, p.y)};
    }
    // Offsets that keep every point in [0.5, size - 1.5), so that every lit pixel is at least one
    // pixel in from the border and a 3x3 mark fits around any of them.
    const double room_x = size - 2 - (hi.x - lo.x), room_y = size - 2 - (hi.y - lo.y);
    if (room_x <= 0 || room_y <= 0) continue;
    for (int place = 0; place < kPlaceAttempts; place++) {
      double dx = 0.5 - lo.x + room_x * rng.uniform_double();
      double dy = 0.5 - lo.y + room_y * rng.uniform_double();
      if (anchor) {
        const double angle = 2 * std::numbers::pi * rng.uniform_double();
        dx = anchor->center.x + anchor->radius * std::cos(angle) - starts[0].x;
        dy = anchor->center.y + anchor->radius * std::sin(angle) - starts[0].y;
        if (lo.x + dx < 0.5 || hi.x + dx >= size - 1.5 || lo.y + dy < 0.5 ||
            hi.y + dy >= size - 1.5)
          continue;
      }
      // Quick rejection on the dash ends before drawing anything.
      bool fits = true;
      for (int k = 0; k < n && fits; k++)
        fits = !blocked[pixel_of({starts[k].x + dx, starts[k].y + dy}, size)] &&
               !blocked[pixel_of({ends[k].x + dx, ends[k].y + dy}, size)];
      if (!fits) continue;
      Contour c;
      for (int k = 0; k < n && fits; k++) {
        const Point a{starts[k].x + dx, starts[k].y + dy}, b{ends[k].x + dx, ends[k].y + dy};
        Pixels dash;
        const int steps = 4 * std::max(1, r.dash_length - 1);  // points a quarter pixel apart
        for (int s = 0; s <= steps; s++) {
          const double f = static_cast<double>(s) / steps;
          const int p = pixel_of({a.x + f * (b.x - a.x), a.y + f * (b.y - a.y)}, size);
          if (std::find(dash.begin(), dash.end(), p) == dash.end()) dash.push_back(p);
        }
        Pixels area = dash;
        if (keep_ends_free && k == 0)
          for (int p : mark_square(pixel_of(a, size), size)) area.push_back(p);
        if (keep_ends_free && k == n - 1)
          for (int p : mark_square(pixel_of(b, size), size)) area.push_back(p);
        fits = std::none_of(area.begin(), area.end(), [&](int p) { return blocked[p]; });
        if (fits && k > 0) {  // a visible gap, no wider than `link`
          const int gap = distance(dash, c.dashes[k - 1], size);
          fits = gap >= 2 && gap <= r.link;
        }
        for (int j = 0; fits && j + 1 < k; j++) fits = distance(area, c.areas[j], size) > r.link;
        if (k == 0) c.ends[0] = a;
        c.ends[1] = b;
        c.dashes.push_back(std::move(dash));
        c.areas.push_back(std::move(area));
      }
      if (fits) {
        out = std::move(c);
        return true;
      }
    }
  }
  return false;
}

// Draws one image of the label into pixels (size * size, zeroed here); false when the contours
// did not fit in kImageAttempts tries.
bool draw_pathfinder(int label, const PathfinderRules& r, Rng& rng, uint8_t* pixels) {
  const int size = r.size;
  for (int attempt = 0; attempt < kImageAttempts; attempt++) {
    std::vector<uint8_t> blocked(static_cast<size_t>(size) * size, 0);
    std::vector<Contour> contours(2 + r.distractors);
    bool ok = true;
    // The second main contour starts as far from one end of the first as its other end is.
    int end = 0;
    Anchor anchor{};
    for (size_t i = 0; i < contours.size() && ok; i++) {
      const bool main = i < 2;
      ok = place_contour(main ? r.dashes : r.distractor_dashes, main, i == 1 ? &anchor : nullptr, r,
                         rng, blocked, contours[i]);
      if (!ok) break;
      if (i == 0) {
        end = static_cast<int>(rng.below(2));
        const Contour& c = contours[0];
        anchor = {c.ends[end], length(c.ends[0], c.ends[1])};
      }
      // Block everything within `link` of this contour (its mark space included).
      for (const Pixels& area : contours[i].areas)
        for (int p : area)
          for (int dy = -r.link; dy <= r.link; dy++)
            for (int dx = -r.link; dx <= r.link; dx++) {
              const int x = p % size + dx, y = p / size + dy;
              if (x >= 0 && x < size && y >= 0 && y < size) blocked[y * size + x] = 1;
            }
    }
    if (!ok) continue;
    std::fill(pixels, pixels + size * size, uint8_t{0});
    for (const Contour& c : contours)
      for (const Pixels& dash : c.dashes)
        for (int p : dash) pixels[p] = 255;
    // Label 1: both ends of the first contour; label 0: the same end of it and the start of the
    // second, as far away.
    const Point marks[2] = {contours[0].ends[end],
                            label == 1 ? contours[0].ends[1 - end] : contours[1].ends[0]};
    for (const Point& m : marks)
      for (int p : mark_square(pixel_of(m, size), size)) pixels[p] = 255;
    return true;
  }
  return false;
}

// Numeric names ("2.npy") in numeric order, before any others in name order.
bool metadata_order(const fs::path& a, const fs::path& b) {
  auto number = [](const fs::path& p) -> int64_t {
    const std::string s = p.stem().string();
    if (s.empty() || s.size() > 15 ||
        !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
      return -1;
    return std::stoll(s);
  };
  const int64_t na = number(a), nb = number(b);
  if ((na < 0) != (nb < 0)) return na >= 0;
  if (na != nb) return na < nb;
  return a.filename() < b.filename();
}

}  // namespace

ImageDataset generate_pathfinder(int64_t count, uint64_t seed, const PathfinderRules& r) {
  check(count > 0, "Pathfinder: the number of images must be positive");
  check(r.size >= 8 && r.dashes >= 2 && r.distractors >= 0 && r.distractor_dashes >= 1 &&
            r.dash_length >= 1 && r.gap_length >= 1 && r.link >= 2 && r.max_turn >= 0,
        "Pathfinder: impossible rules");
  ImageDataset set;
  set.count = count;
  set.height = set.width = r.size;
  set.num_classes = 2;
  set.source = "generated Pathfinder (seed " + std::to_string(seed) + ")";
  // count / 2 ones, the rest zeros, in a shuffled order (Fisher-Yates).
  set.labels.assign(count, 0);
  std::fill(set.labels.begin(), set.labels.begin() + count / 2, 1);
  Rng order(Rng::derive(seed, kLabelOrder));
  for (int64_t i = count - 1; i > 0; i--)
    std::swap(set.labels[i], set.labels[order.next_u64() % static_cast<uint64_t>(i + 1)]);
  const int64_t n = int64_t{r.size} * r.size;
  set.pixels.resize(count * n);
  int64_t failed = -1;
#pragma omp parallel for schedule(dynamic, 16) num_threads(num_threads())
  for (int64_t i = 0; i < count; i++) {
    Rng rng = Rng::derive(seed, kImage, static_cast<uint64_t>(i));
    if (!draw_pathfinder(set.labels[i], r, rng, set.pixels.data() + i * n)) {
#pragma omp critical
      failed = std::max(failed, i);
    }
  }
  check(failed < 0, "Pathfinder: the contours do not fit in a ", r.size, "x", r.size,
        " image (image ", failed, "): fewer or shorter contours");
  return set;
}

ImageDataset read_pathfinder_dir(const std::string& dir, int size) {
  const std::string hint =
      " (--data for pathfinder is one difficulty directory of LRA's lra_release.gz, e.g. "
      "lra_release/pathfinder32/curv_contour_length_14, holding metadata/ and imgs/)";
  std::error_code ec;
  check(fs::is_directory(dir, ec), dir, ": no such directory", hint);
  const fs::path meta = fs::path(dir) / "metadata";
  check(fs::is_directory(meta, ec), dir, ": no metadata/ directory", hint);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(meta))
    if (e.path().extension() == ".npy") files.push_back(e.path());
  check(!files.empty(), meta.string(), ": no .npy metadata files", hint);
  std::sort(files.begin(), files.end(), metadata_order);

  ImageDataset set;
  set.height = set.width = size;
  set.num_classes = 2;
  set.source = dir;
  const int64_t n = int64_t{size} * size;
  for (const fs::path& file : files) {
    std::istringstream in(read_text_file(file.string()));
    std::string line;
    for (int64_t line_no = 1; std::getline(in, line); line_no++) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::istringstream fields_in(line);
      std::vector<std::string> fields;
      for (std::string f; fields_in >> f;) fields.push_back(f);
      if (fields.empty()) continue;
      const std::string where = file.string() + ":" + std::to_string(line_no);
      check(fields.size() >= 4, where,
            ": expected '<folder> <image file> <index> <label> ...' (at least 4 fields), found ",
            fields.size());
      check(fields[3] == "0" || fields[3] == "1", where, ": label '", fields[3], "' is not 0 or 1");
      const std::string image = (fs::path(dir) / fields[0] / fields[1]).string();
      check(fs::is_regular_file(image, ec), image, ": no such image (listed at ", where, ")");
      int w = 0, h = 0, channels = 0;
      uint8_t* pixels = stbi_load(image.c_str(), &w, &h, &channels, 1);  // as one gray channel
      if (!pixels)
        fail(image, ": cannot decode image (", stbi_failure_reason(), "; listed at ", where, ")");
      if (w != size || h != size) {
        stbi_image_free(pixels);
        fail(image, ": image is ", w, "x", h, ", expected ", size, "x", size, " (listed at ", where,
             ")");
      }
      set.pixels.insert(set.pixels.end(), pixels, pixels + n);
      stbi_image_free(pixels);
      set.labels.push_back(fields[3][0] - '0');
      set.count++;
    }
  }
  check(set.count > 0, meta.string(), ": the metadata files list no images", hint);
  return set;
}

void write_pathfinder_dir(const std::string& dir, const ImageDataset& images) {
  check(images.channels == 1, "write_pathfinder_dir: expected grayscale images");
  const int64_t n = int64_t{images.height} * images.width;
  fs::create_directories(fs::path(dir) / "metadata");
  for (int64_t first = 0; first < images.count; first += kImagesPerFolder) {
    const std::string k = std::to_string(first / kImagesPerFolder);
    fs::create_directories(fs::path(dir) / "imgs" / k);
    std::string meta;
    for (int64_t i = first; i < std::min(images.count, first + kImagesPerFolder); i++) {
      const std::string name = "sample_" + std::to_string(i) + ".png";
      write_gray_image((fs::path(dir) / "imgs" / k / name).string(), images.pixels.data() + i * n,
                       images.width, images.height);
      meta += "imgs/" + k + " " + name + " " + std::to_string(i) + " " +
              std::to_string(images.labels[i]) + "\n";
    }
    write_file_atomic((fs::path(dir) / "metadata" / (k + ".npy")).string(), meta);
  }
}

void write_gray_image(const std::string& path, const uint8_t* pixels, int width, int height) {
  if (fs::path(path).extension() == ".pgm") {
    std::ofstream out(path, std::ios::binary);
    out << "P5\n" << width << " " << height << "\n255\n";
    out.write(reinterpret_cast<const char*>(pixels), std::streamsize{width} * height);
    check(out.good(), path, ": cannot write");
    return;
  }
  check(stbi_write_png(path.c_str(), width, height, 1, pixels, width) != 0, path,
        ": cannot write the PNG");
}

}  // namespace kat
