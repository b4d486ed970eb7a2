// Single images: decoding (stb_image), resizing and channel conversion, all CHW float in [0, 1].
#include <stb_image.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kat/data.h"
#include "kat/error.h"

namespace kat {
namespace {

namespace fs = std::filesystem;

// Refuse images larger than this many values before decoding or allocating (~400 MB of floats).
constexpr int64_t kMaxImageValues = 100'000'000;

void check_image(const Image& image, const char* what) {
  check(image.channels >= 1 && image.height >= 1 && image.width >= 1, what,
        ": empty image (channels ", image.channels, ", height ", image.height, ", width ",
        image.width, ")");
  const int64_t values = int64_t{image.channels} * image.height * image.width;
  check(static_cast<int64_t>(image.data.size()) == values, what, ": image data holds ",
        image.data.size(), " values, expected ", image.channels, "x", image.height, "x",
        image.width, " = ", values);
}

// One output sample along an axis as a weighted sum of input samples.
struct Tap {
  int index;
  float weight;
};

// taps[o] for each output position o of an axis resized from in_size to out_size.
std::vector<std::vector<Tap>> axis_taps(int in_size, int out_size) {
  std::vector<std::vector<Tap>> taps(out_size);
  if (out_size == in_size) {
    for (int o = 0; o < out_size; ++o) taps[o] = {{o, 1.0f}};
  } else if (out_size < in_size) {
    // Exact area averaging. In units of 1/out_size of an input pixel, output o covers
    // [o * in_size, (o + 1) * in_size) and input i covers [i * out_size, (i + 1) * out_size);
    // the weight is the overlap over the covered length, exact in integers.
    for (int o = 0; o < out_size; ++o) {
      const int64_t begin = int64_t{o} * in_size, end = begin + in_size;
      for (int64_t i = begin / out_size; i * out_size < end; ++i) {
        const int64_t overlap =
            std::min(end, (i + 1) * out_size) - std::max(begin, i * int64_t{out_size});
        if (overlap > 0)
          taps[o].push_back({static_cast<int>(i), static_cast<float>(double(overlap) / in_size)});
      }
    }
  } else {
    // Bilinear, align_corners = false (PyTorch): source = (o + 0.5) * in / out - 0.5, clamped
    // at 0 on the left; the right neighbour is clamped to the last pixel.
    const double scale = double(in_size) / out_size;
    for (int o = 0; o < out_size; ++o) {
      const double source = std::max(0.0, (o + 0.5) * scale - 0.5);
      const int left = std::min(static_cast<int>(source), in_size - 1);
      const int right = std::min(left + 1, in_size - 1);
      const double frac = source - left;
      taps[o] = {{left, static_cast<float>(1.0 - frac)}, {right, static_cast<float>(frac)}};
    }
  }
  return taps;
}

}  // namespace

Image load_image(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  check(fs::exists(status), path, ": no such file");
  check(!fs::is_directory(status), path, ": is a directory, expected an image file");

  // Read only the header first so an absurd size is refused before stb allocates for it.
  int width = 0, height = 0, channels = 0;
  if (!stbi_info(path.c_str(), &width, &height, &channels))
    fail(path, ": cannot decode image (", stbi_failure_reason(), ")");
  const int64_t values = int64_t{width} * height * channels;
  check(values > 0 && values <= kMaxImageValues, path, ": image is ", width, "x", height, "x",
        channels, " = ", values, " values, over the limit of ", kMaxImageValues);

  // 0 desired channels: keep the file's own (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA).
  uint8_t* pixels = stbi_load(path.c_str(), &width, &height, &channels, 0);
  if (!pixels) fail(path, ": cannot decode image (", stbi_failure_reason(), ")");
  Image image;
  image.channels = channels;
  image.height = height;
  image.width = width;
  const int64_t plane = int64_t{height} * width;
  if (int64_t{width} * height * channels != values) {
    stbi_image_free(pixels);
    fail(path, ": image header and decoded data disagree on the size");
  }
  image.data.resize(values);
  // stb gives HWC bytes; we want CHW in [0, 1].
  for (int64_t p = 0; p < plane; ++p)
    for (int c = 0; c < channels; ++c)
      image.data[c * plane + p] = pixels[p * channels + c] * (1.0f / 255.0f);
  stbi_image_free(pixels);
  return image;
}

Image resize_image(const Image& in, int height, int width) {
  check_image(in, "resize_image");
  check(height >= 1 && width >= 1, "resize_image: target size ", height, "x", width,
        " must be at least 1x1");
  check(int64_t{in.channels} * height * width <= kMaxImageValues, "resize_image: target ",
        in.channels, "x", height, "x", width, " is over the limit of ", kMaxImageValues, " values");
  if (height == in.height && width == in.width) return in;

  // Separable: along rows first ([C, H, W] -> [C, H, width]), then along columns.
  const std::vector<std::vector<Tap>> x_taps = axis_taps(in.width, width);
  const std::vector<std::vector<Tap>> y_taps = axis_taps(in.height, height);
  std::vector<float> rows(static_cast<size_t>(in.channels) * in.height * width);
  for (int64_t r = 0; r < int64_t{in.channels} * in.height; ++r) {
    const float* src = in.data.data() + r * in.width;
    float* dst = rows.data() + r * width;
    for (int x = 0; x < width; ++x) {
      float sum = 0;
      for (const Tap& tap : x_taps[x]) sum += tap.weight * src[tap.index];
      dst[x] = sum;
    }
  }

  Image out;
  out.channels = in.channels;
  out.height = height;
  out.width = width;
  out.data.assign(static_cast<size_t>(out.channels) * height * width, 0.0f);
  for (int c = 0; c < out.channels; ++c) {
    const float* src = rows.data() + int64_t{c} * in.height * width;
    float* dst = out.data.data() + int64_t{c} * height * width;
    for (int y = 0; y < height; ++y)
      for (const Tap& tap : y_taps[y])
        for (int x = 0; x < width; ++x)
          dst[int64_t{y} * width + x] += tap.weight * src[int64_t{tap.index} * width + x];
  }
  return out;
}

Image convert_channels(const Image& in, int channels) {
  check_image(in, "convert_channels");
  check(in.channels <= 4, "convert_channels: input has ", in.channels,
        " channels, expected 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)");
  if (channels == in.channels) return in;
  check(channels == 1 || channels == 3, "convert_channels: cannot convert ", in.channels,
        " channels to ", channels, " (supported targets: 1 gray, 3 RGB, or the same count)");

  const int64_t plane = int64_t{in.height} * in.width;
  // Alpha is the last plane: dropping it (2 -> 1, 4 -> 3) keeps the leading planes as they are.
  const int color = in.channels == 2 || in.channels == 4 ? in.channels - 1 : in.channels;
  Image out;
  out.channels = channels;
  out.height = in.height;
  out.width = in.width;
  out.data.resize(static_cast<size_t>(channels) * plane);
  if (color == channels) {
    std::copy(in.data.begin(), in.data.begin() + channels * plane, out.data.begin());
  } else if (color == 3) {
    // RGB -> gray: ITU-R 601 luma.
    const float* r = in.data.data();
    const float* g = r + plane;
    const float* b = g + plane;
    for (int64_t p = 0; p < plane; ++p) out.data[p] = 0.299f * r[p] + 0.587f * g[p] + 0.114f * b[p];
  } else {
    // Gray -> RGB: the same plane three times.
    for (int c = 0; c < 3; ++c)
      std::copy(in.data.begin(), in.data.begin() + plane, out.data.begin() + c * plane);
  }
  return out;
}

}  // namespace kat
