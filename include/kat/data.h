// Image classification data: IDX files (MNIST, Fashion-MNIST, KMNIST, ...) and single images.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kat {

// N images of C x H x W bytes (CHW order per image) with integer labels.
struct ImageDataset {
  int64_t count = 0;
  int channels = 1, height = 0, width = 0;
  int num_classes = 0;          // max label + 1
  std::vector<uint8_t> pixels;  // [count, channels, height, width]
  std::vector<int32_t> labels;  // [count]
  std::string source;           // paths it was read from, for messages
  const uint8_t* image(int64_t i) const { return pixels.data() + i * channels * height * width; }
};

// Reads an IDX image file (magic 0x00000803 for [N, H, W], or 0x00000804 for [N, H, W, C] stored
// channels-last, converted to CHW) and an IDX label file (0x00000801, [N]); either may be gzipped
// (detected from the content, not the name). Errors name the file: missing, truncated, bad magic,
// unsupported element type, count mismatch between images and labels, zero-sized dimensions.
ImageDataset load_idx(const std::string& images_path, const std::string& labels_path);

enum class Split { Train, Test };

// Finds a split in a directory laid out as the MNIST family ships it:
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (also the "train-images.idx3-ubyte" spelling
// and KMNIST-style "<prefix>-train-imgs" are not required). The error lists the names it looked
// for.
ImageDataset load_idx_split(const std::string& dir, Split split);

// Default data directory: /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
const char* default_data_dir();

// Human class names when the directory looks like Fashion-MNIST ("T-shirt/top", ...), else
// "0".."N-1".
std::vector<std::string> class_names_for(const std::string& dir, int num_classes);

// One decoded image, pixels scaled to [0, 1], CHW.
struct Image {
  int channels = 0, height = 0, width = 0;
  std::vector<float> data;
};

// PNG, JPEG, PGM/PPM (and what else stb_image reads). Error names the file and stb's reason.
Image load_image(const std::string& path);
// Area-averaging when shrinking, bilinear when growing (align_corners = false).
Image resize_image(const Image& in, int height, int width);
// 3 -> 1: ITU-R 601 luma (0.299, 0.587, 0.114); 1 -> 3: replicate; 4 (RGBA) -> drop alpha first.
Image convert_channels(const Image& in, int channels);

}  // namespace kat
