// LRA Pathfinder (reference/lra.md): 32x32 grayscale images with two marked points; the label says
// whether a dashed contour joins them (1) or each point sits on the end of a different contour (0).
// A generator of such images (rules in src/data/pathfinder.cpp), and LRA's released files both ways
// (lra_release/pathfinder32/<difficulty>/: metadata/*.npy text files and imgs/<k>/sample_<n>.png).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kat/data.h"

namespace kat {

constexpr int kPathfinderSize = 32;

// Lengths are in pixels along the contour; distances between pixels are Chebyshev distances
// (max of |dx|, |dy|), so "within d" means inside the (2d + 1) x (2d + 1) square around a pixel.
struct PathfinderRules {
  int size = kPathfinderSize;
  int dashes = 6;             // dashes of each of the two contours that can carry the marks
  int distractors = 2;        // other contours, never marked
  int distractor_dashes = 4;  // dashes of each distractor
  int dash_length = 3;        // arc length of a dash (it lights about this many pixels)
  int gap_length = 2;         // arc length of the dark gap between two dashes of a contour
  double max_turn = 0.6;      // radians a contour may turn from one dash to the next
  // Neighbouring dashes of one contour are 2..link pixels apart (a visible gap); pixels of
  // different contours are more than link apart. Connectivity with the radius `link` is therefore
  // the label (tests/test_pathfinder.cpp checks it).
  int link = 3;
};

// `count` images (count / 2 of label 1, the rest label 0, in a shuffled order), deterministic for
// a seed whatever the thread count. Pixels are 0 (background) or 255 (dashes and the two marks,
// 3x3 squares centred on contour ends).
ImageDataset generate_pathfinder(int64_t count, uint64_t seed, const PathfinderRules& rules = {});

// Reads one difficulty directory of LRA's release (e.g. lra_release/pathfinder32/
// curv_contour_length_14): every DIR/metadata/*.npy (text despite the name; files in numeric order
// of their names), one line per image, "imgs/<k> sample_<n>.png <n> <label> ...", the image being
// DIR/imgs/<k>/sample_<n>.png (grayscale PNG of size x size). A malformed line, an unreadable
// image or one of another size is an error naming the file and the line.
ImageDataset read_pathfinder_dir(const std::string& dir, int size = kPathfinderSize);

// Writes images (1 channel, labels 0/1) in the layout read_pathfinder_dir reads: 1000 images per
// imgs/<k>/ folder and metadata/<k>.npy file.
void write_pathfinder_dir(const std::string& dir, const ImageDataset& images);

// One grayscale image as binary PGM (path ending in .pgm) or PNG (anything else), for inspection.
void write_gray_image(const std::string& path, const uint8_t* pixels, int width, int height);

}  // namespace kat
