// Tests for IDX loading (raw and gzip, every malformed-input case) and single-image handling.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stb_image_write.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cli.h"
#include "kat/data.h"
#include "kat/error.h"

namespace kat {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using ::testing::HasSubstr;
using ::testing::Not;

using Bytes = std::vector<uint8_t>;

// The kat::Error message thrown by f, or "<no error>" when it returns normally.

// An IDX file: magic (0, 0, type, ndims), big-endian dims, then data.
Bytes idx_bytes(const std::vector<uint32_t>& dims, const Bytes& data, uint8_t type = 0x08) {
  Bytes bytes = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(d >> shift));
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

void write_raw(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void write_gzip(const fs::path& path, const Bytes& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

Bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Each test gets its own empty directory, removed afterwards.
class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("kat_test_data_" + std::to_string(getpid()) + "_" +
                                        info->test_suite_name() + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// Three 2x3 images whose pixels encode (image, row, col), and labels {0, 4, 2}.
Bytes three_images() {
  Bytes data;
  for (int n = 0; n < 3; ++n)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x) data.push_back(static_cast<uint8_t>(100 * n + 10 * y + x));
  return idx_bytes({3, 2, 3}, data);
}
const Bytes kThreeLabels = idx_bytes({3}, {0, 4, 2});

void expect_three_images(const ImageDataset& set) {
  EXPECT_EQ(set.count, 3);
  EXPECT_EQ(set.channels, 1);
  EXPECT_EQ(set.height, 2);
  EXPECT_EQ(set.width, 3);
  EXPECT_EQ(set.num_classes, 5);
  EXPECT_EQ(set.labels, (std::vector<int32_t>{0, 4, 2}));
  ASSERT_EQ(set.pixels.size(), 18u);
  for (int n = 0; n < 3; ++n)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x) EXPECT_EQ(set.image(n)[y * 3 + x], 100 * n + 10 * y + x);
}

// ---------------------------------------------------------------- IDX: well-formed files

TEST_F(DataTest, LoadsRawIdx) {
  write_raw(path("img"), three_images());
  write_raw(path("lbl"), kThreeLabels);
  const ImageDataset set = load_idx(path("img"), path("lbl"));
  expect_three_images(set);
  EXPECT_THAT(set.source, HasSubstr(path("img")));
  EXPECT_THAT(set.source, HasSubstr(path("lbl")));
}

TEST_F(DataTest, LoadsGzippedIdx) {
  write_gzip(path("img.gz"), three_images());
  write_gzip(path("lbl.gz"), kThreeLabels);
  expect_three_images(load_idx(path("img.gz"), path("lbl.gz")));
}

TEST_F(DataTest, DetectsGzipFromContentNotName) {
  write_gzip(path("img"), three_images());  // gzipped, no .gz
  write_raw(path("lbl.gz"), kThreeLabels);  // raw, named .gz
  expect_three_images(load_idx(path("img"), path("lbl.gz")));
}

TEST_F(DataTest, ReadsConcatenatedGzipMembers) {
  const Bytes images = three_images();
  write_gzip(path("a.gz"), Bytes(images.begin(), images.begin() + 10));
  write_gzip(path("b.gz"), Bytes(images.begin() + 10, images.end()));
  Bytes joined = read_bytes(path("a.gz"));
  const Bytes second = read_bytes(path("b.gz"));
  joined.insert(joined.end(), second.begin(), second.end());
  write_raw(path("img.gz"), joined);
  write_raw(path("lbl"), kThreeLabels);
  expect_three_images(load_idx(path("img.gz"), path("lbl")));
}

TEST_F(DataTest, FourDimImagesBecomeChw) {
  // [N=2, H=2, W=3, C=3] channels-last; value encodes (n, y, x, c).
  auto value = [](int n, int y, int x, int c) { return 100 * n + 30 * y + 10 * x + c; };
  Bytes data;
  for (int n = 0; n < 2; ++n)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x)
        for (int c = 0; c < 3; ++c) data.push_back(static_cast<uint8_t>(value(n, y, x, c)));
  write_gzip(path("img.gz"), idx_bytes({2, 2, 3, 3}, data));
  write_raw(path("lbl"), idx_bytes({2}, {1, 1}));
  const ImageDataset set = load_idx(path("img.gz"), path("lbl"));
  EXPECT_EQ(set.count, 2);
  EXPECT_EQ(set.channels, 3);
  EXPECT_EQ(set.height, 2);
  EXPECT_EQ(set.width, 3);
  EXPECT_EQ(set.num_classes, 2);
  ASSERT_EQ(set.pixels.size(), 36u);
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 3; ++x)
          EXPECT_EQ(set.image(n)[c * 6 + y * 3 + x], value(n, y, x, c))
              << "n=" << n << " c=" << c << " y=" << y << " x=" << x;
}

// ---------------------------------------------------------------- IDX: malformed input

TEST_F(DataTest, MissingFileNamesIt) {
  write_raw(path("lbl"), kThreeLabels);
  const std::string message = error_of([&] { load_idx(path("nope"), path("lbl")); });
  EXPECT_THAT(message, HasSubstr(path("nope")));
  EXPECT_THAT(message, HasSubstr("no such file"));
}

TEST_F(DataTest, DirectoryInsteadOfFile) {
  write_raw(path("lbl"), kThreeLabels);
  EXPECT_THAT(error_of([&] { load_idx(dir_.string(), path("lbl")); }), HasSubstr("is a directory"));
}

TEST_F(DataTest, TruncatedHeader) {
  write_raw(path("lbl"), kThreeLabels);
  write_raw(path("empty"), {});
  EXPECT_THAT(error_of([&] { load_idx(path("empty"), path("lbl")); }),
              HasSubstr(path("empty") + ": truncated"));
  write_raw(path("short_magic"), {0, 0, 8});
  EXPECT_THAT(error_of([&] { load_idx(path("short_magic"), path("lbl")); }),
              HasSubstr("truncated"));
  // Magic promises 3 dims (12 bytes) but only 5 follow.
  write_raw(path("short_dims"), {0, 0, 8, 3, 0, 0, 0, 3, 0});
  const std::string message = error_of([&] { load_idx(path("short_dims"), path("lbl")); });
  EXPECT_THAT(message, HasSubstr(path("short_dims") + ": truncated"));
  EXPECT_THAT(message, HasSubstr("header needs 16 bytes, the file holds 9"));
  // The same in a gzipped file.
  write_gzip(path("short_dims.gz"), {0, 0, 8, 3, 0, 0, 0, 3, 0});
  EXPECT_THAT(error_of([&] { load_idx(path("short_dims.gz"), path("lbl")); }),
              HasSubstr("header needs 16 bytes, the file holds 9"));
}

TEST_F(DataTest, TruncatedDataRawAndGzip) {
  write_raw(path("img"), three_images());
  const Bytes labels = idx_bytes({60000}, Bytes(1200, 3));
  write_raw(path("lbl"), labels);
  write_gzip(path("lbl.gz"), labels);
  for (const char* name : {"lbl", "lbl.gz"}) {
    const std::string message = error_of([&] { load_idx(path("img"), path(name)); });
    EXPECT_THAT(message,
                HasSubstr(path(name) + ": truncated: header says 60000 labels, file holds 1200"));
  }
  // Images: 3 images of 2x3 promised, 2.5 present.
  Bytes images = three_images();
  images.erase(images.end() - 3, images.end());
  write_raw(path("img_short"), images);
  write_raw(path("lbl3"), kThreeLabels);
  EXPECT_THAT(error_of([&] { load_idx(path("img_short"), path("lbl3")); }),
              HasSubstr("header says 3 images of 2x3, file holds 2 (15 of 18 data bytes)"));
}

TEST_F(DataTest, HugeHeaderIsRefusedWithoutAllocating) {
  // 2e9 images of 2e9 x 1 bytes: must fail on the size, not try to allocate.
  write_raw(path("img"), idx_bytes({2000000000u, 2000000000u, 1}, {1, 2, 3}));
  write_raw(path("lbl"), kThreeLabels);
  EXPECT_THAT(error_of([&] { load_idx(path("img"), path("lbl")); }),
              HasSubstr("implausibly large"));
  // Plausible header, tiny file: truncated (checked before allocating 4 GB).
  write_raw(path("img2"), idx_bytes({1000000, 64, 64}, {1, 2, 3}));
  EXPECT_THAT(error_of([&] { load_idx(path("img2"), path("lbl")); }),
              HasSubstr("truncated: header says 1000000 images of 64x64, file holds 0"));
}

TEST_F(DataTest, ExtraBytesAfterData) {
  Bytes labels = kThreeLabels;
  labels.push_back(7);
  write_raw(path("img"), three_images());
  write_raw(path("lbl"), labels);
  write_gzip(path("lbl.gz"), labels);
  for (const char* name : {"lbl", "lbl.gz"})
    EXPECT_THAT(error_of([&] { load_idx(path("img"), path(name)); }),
                HasSubstr(path(name) + ": has extra bytes"));
}

TEST_F(DataTest, BadMagic) {
  Bytes images = three_images();
  images[0] = 0x12;
  images[1] = 0x34;
  write_raw(path("img"), images);
  write_raw(path("lbl"), kThreeLabels);
  const std::string message = error_of([&] { load_idx(path("img"), path("lbl")); });
  EXPECT_THAT(message, HasSubstr(path("img") + ": bad magic 0x12340803"));
}

TEST_F(DataTest, UnsupportedElementType) {
  write_raw(path("img"), idx_bytes({1, 1, 1}, {0, 0, 0, 0}, 0x0D));  // float
  write_raw(path("lbl"), idx_bytes({1}, {0}));
  EXPECT_THAT(error_of([&] { load_idx(path("img"), path("lbl")); }),
              HasSubstr(path("img") + ": unsupported element type 0x0d"));
}

TEST_F(DataTest, WrongDimensionCount) {
  write_raw(path("img2d"), idx_bytes({3, 6}, Bytes(18, 0)));
  write_raw(path("lbl"), kThreeLabels);
  EXPECT_THAT(error_of([&] { load_idx(path("img2d"), path("lbl")); }),
              HasSubstr("expected images with 3 or 4 dimensions, the file has 2"));
  // Images passed as labels.
  write_raw(path("img"), three_images());
  EXPECT_THAT(error_of([&] { load_idx(path("img"), path("img")); }),
              HasSubstr(path("img") + ": expected labels with 1 dimensions, the file has 3"));
}

TEST_F(DataTest, ZeroSizedDimension) {
  write_raw(path("img"), idx_bytes({3, 0, 3}, {}));
  write_raw(path("lbl"), kThreeLabels);
  EXPECT_THAT(error_of([&] { load_idx(path("img"), path("lbl")); }),
              HasSubstr(path("img") + ": dimension 1 of the images is zero"));
}

TEST_F(DataTest, CountMismatch) {
  write_raw(path("img"), three_images());
  write_raw(path("lbl"), idx_bytes({2}, {0, 1}));
  const std::string message = error_of([&] { load_idx(path("img"), path("lbl")); });
  EXPECT_THAT(message, HasSubstr("count mismatch"));
  EXPECT_THAT(message, HasSubstr(path("img") + " holds 3 images"));
  EXPECT_THAT(message, HasSubstr(path("lbl") + " holds 2 labels"));
}

TEST_F(DataTest, CorruptGzip) {
  // Large enough to compress into several deflate bytes worth damaging.
  Bytes data(4000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 % 251);
  const Bytes images = idx_bytes({1000, 2, 2}, data);
  write_gzip(path("good.gz"), images);
  write_raw(path("lbl"), idx_bytes({1000}, Bytes(1000, 1)));
  ASSERT_EQ(load_idx(path("good.gz"), path("lbl")).count, 1000);
  const Bytes good = read_bytes(path("good.gz"));
  ASSERT_GT(good.size(), 40u);

  // Damaged deflate data.
  Bytes damaged = good;
  for (size_t i = 12; i < 20; ++i) damaged[i] ^= 0xFF;
  write_raw(path("damaged.gz"), damaged);
  EXPECT_THAT(error_of([&] { load_idx(path("damaged.gz"), path("lbl")); }),
              HasSubstr(path("damaged.gz") + ": corrupt"));

  // Cut in the middle of the stream.
  write_raw(path("cut.gz"), Bytes(good.begin(), good.begin() + good.size() / 2));
  EXPECT_THAT(error_of([&] { load_idx(path("cut.gz"), path("lbl")); }),
              HasSubstr(path("cut.gz") + ": corrupt or truncated gzip stream"));

  // Only the trailer's CRC is wrong: all data decodes, the check must still catch it.
  Bytes bad_crc = good;
  bad_crc[bad_crc.size() - 8] ^= 0x01;
  write_raw(path("crc.gz"), bad_crc);
  EXPECT_THAT(error_of([&] { load_idx(path("crc.gz"), path("lbl")); }),
              HasSubstr(path("crc.gz") + ": corrupt gzip stream"));

  // Garbage after a complete stream.
  Bytes trailing = good;
  trailing.push_back('x');
  write_raw(path("trailing.gz"), trailing);
  EXPECT_THAT(error_of([&] { load_idx(path("trailing.gz"), path("lbl")); }),
              HasSubstr("trailing garbage"));
}

// ---------------------------------------------------------------- IDX: directories

TEST_F(DataTest, SplitFindsEachSpelling) {
  write_gzip(path("train-images-idx3-ubyte.gz"), three_images());
  write_gzip(path("train-labels-idx1-ubyte.gz"), kThreeLabels);
  expect_three_images(load_idx_split(dir_.string(), Split::Train));

  write_raw(path("t10k-images-idx3-ubyte"), three_images());
  write_raw(path("t10k-labels.idx1-ubyte"), kThreeLabels);
  expect_three_images(load_idx_split(dir_.string() + "/", Split::Test));
  fs::remove(path("t10k-images-idx3-ubyte"));
  write_raw(path("t10k-images.idx3-ubyte"), idx_bytes({1, 1, 1}, {9}));
  write_raw(path("t10k-labels-idx1-ubyte"), idx_bytes({1}, {0}));  // preferred over the dot
  const ImageDataset test = load_idx_split(dir_.string(), Split::Test);
  EXPECT_EQ(test.count, 1);
  EXPECT_EQ(test.pixels, Bytes{9});
  EXPECT_THAT(test.source, HasSubstr("t10k-labels-idx1-ubyte"));
}

TEST_F(DataTest, EmptyDirectoryListsTriedNames) {
  const std::string message = error_of([&] { load_idx_split(dir_.string(), Split::Train); });
  EXPECT_THAT(message, HasSubstr(dir_.string()));
  for (const char* name :
       {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte", "train-images.idx3-ubyte"})
    EXPECT_THAT(message, HasSubstr(name));
  EXPECT_THAT(message, Not(HasSubstr("apt-get")));  // only for the default directory

  // Images present, labels missing: the label names are listed.
  write_raw(path("t10k-images-idx3-ubyte"), three_images());
  const std::string labels_message = error_of([&] { load_idx_split(dir_.string(), Split::Test); });
  for (const char* name :
       {"t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"})
    EXPECT_THAT(labels_message, HasSubstr(name));

  EXPECT_THAT(error_of([&] { load_idx_split(path("absent"), Split::Train); }),
              HasSubstr(path("absent") + " does not exist"));
}

TEST(DataDefaults, DefaultDirAndClassNames) {
  EXPECT_STREQ(default_data_dir(), "/usr/share/datasets/fashion-mnist");
  const std::vector<std::string> fashion = class_names_for("/data/FashionMNIST", 10);
  ASSERT_EQ(fashion.size(), 10u);
  EXPECT_EQ(fashion[0], "T-shirt/top");
  EXPECT_EQ(fashion[9], "Ankle boot");
  EXPECT_EQ(class_names_for(default_data_dir(), 10), fashion);
  EXPECT_EQ(class_names_for("/data/mnist", 10)[3], "3");
  EXPECT_EQ(class_names_for("/data/fashion", 4), (std::vector<std::string>{"0", "1", "2", "3"}));
  EXPECT_TRUE(class_names_for("/data/mnist", 0).empty());
}

TEST(DataDefaults, MissingDefaultDirSuggestsPackage) {
  if (fs::exists(default_data_dir())) GTEST_SKIP() << default_data_dir() << " is installed";
  EXPECT_THAT(error_of([] { load_idx_split(default_data_dir(), Split::Train); }),
              HasSubstr("apt-get install dataset-fashion-mnist"));
}

TEST(DataDefaults, LoadsInstalledFashionMnist) {
  if (!fs::is_directory(default_data_dir()))
    GTEST_SKIP() << default_data_dir() << " is absent (apt-get install dataset-fashion-mnist)";
  const auto start = std::chrono::steady_clock::now();
  const ImageDataset train = load_idx_split(default_data_dir(), Split::Train);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("loaded Fashion-MNIST train (%lld images) in %.3f s\n",
              static_cast<long long>(train.count), seconds);
  const ImageDataset test = load_idx_split(default_data_dir(), Split::Test);
  for (const ImageDataset* set : {&train, &test}) {
    EXPECT_EQ(set->channels, 1);
    EXPECT_EQ(set->height, 28);
    EXPECT_EQ(set->width, 28);
    EXPECT_EQ(set->num_classes, 10);
    EXPECT_EQ(set->pixels.size(), static_cast<size_t>(set->count) * 28 * 28);
    // Fashion-MNIST is balanced: 6000 / 1000 of each class.
    std::map<int, int64_t> per_class;
    for (int32_t label : set->labels) ++per_class[label];
    ASSERT_EQ(per_class.size(), 10u);
    for (const auto& [label, n] : per_class) EXPECT_EQ(n, set->count / 10) << "class " << label;
  }
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ(test.count, 10000);
}

// ---------------------------------------------------------------- images: decoding

// w x h image with `channels` interleaved bytes per pixel, all values distinct-ish.
Bytes pattern_hwc(int width, int height, int channels) {
  Bytes bytes(static_cast<size_t>(width) * height * channels);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 37 % 256);
  return bytes;
}

// Image (CHW floats) must equal the HWC bytes / 255.
void expect_matches_hwc(const Image& image, const Bytes& hwc, int width, int height, int channels) {
  ASSERT_EQ(image.channels, channels);
  ASSERT_EQ(image.height, height);
  ASSERT_EQ(image.width, width);
  ASSERT_EQ(image.data.size(), hwc.size());
  const int plane = width * height;
  for (int p = 0; p < plane; ++p)
    for (int c = 0; c < channels; ++c)
      ASSERT_FLOAT_EQ(image.data[c * plane + p], hwc[p * channels + c] / 255.0f)
          << "pixel " << p << " channel " << c;
}

TEST_F(DataTest, PngRoundTripAllChannelCounts) {
  for (int channels = 1; channels <= 4; ++channels) {
    const int width = 5, height = 3;
    const Bytes hwc = pattern_hwc(width, height, channels);
    const std::string file = path("c" + std::to_string(channels) + ".png");
    ASSERT_NE(stbi_write_png(file.c_str(), width, height, channels, hwc.data(), width * channels),
              0);
    expect_matches_hwc(load_image(file), hwc, width, height, channels);
  }
}

TEST_F(DataTest, PgmAndPpmWrittenByHand) {
  const int width = 4, height = 3;
  const Bytes gray = pattern_hwc(width, height, 1);
  Bytes pgm = {'P', '5', '\n', '4', ' ', '3', '\n', '2', '5', '5', '\n'};
  pgm.insert(pgm.end(), gray.begin(), gray.end());
  write_raw(path("a.pgm"), pgm);
  expect_matches_hwc(load_image(path("a.pgm")), gray, width, height, 1);

  const Bytes rgb = pattern_hwc(width, height, 3);
  Bytes ppm = {'P', '6', ' ', '4', ' ', '3', ' ', '2', '5', '5', '\n'};
  ppm.insert(ppm.end(), rgb.begin(), rgb.end());
  write_raw(path("a.ppm"), ppm);
  expect_matches_hwc(load_image(path("a.ppm")), rgb, width, height, 3);
}

TEST_F(DataTest, JpegRoundTripWithinTolerance) {
  // A smooth image: JPEG keeps it close at high quality.
  const int width = 16, height = 16;
  Bytes hwc;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) hwc.push_back(static_cast<uint8_t>(40 + 8 * x + 4 * y + 20 * c));
  ASSERT_NE(stbi_write_jpg(path("a.jpg").c_str(), width, height, 3, hwc.data(), 95), 0);
  const Image image = load_image(path("a.jpg"));
  ASSERT_EQ(image.channels, 3);
  ASSERT_EQ(image.height, height);
  ASSERT_EQ(image.width, width);
  const int plane = width * height;
  for (int p = 0; p < plane; ++p)
    for (int c = 0; c < 3; ++c)
      EXPECT_NEAR(image.data[c * plane + p], hwc[p * 3 + c] / 255.0f, 0.06f) << p << "," << c;
}

TEST_F(DataTest, ImageErrors) {
  EXPECT_THAT(error_of([&] { load_image(path("missing.png")); }),
              HasSubstr(path("missing.png") + ": no such file"));
  EXPECT_THAT(error_of([&] { load_image(dir_.string()); }), HasSubstr("is a directory"));

  write_raw(path("notes.png"), {'h', 'e', 'l', 'l', 'o', '\n'});
  EXPECT_THAT(error_of([&] { load_image(path("notes.png")); }),
              HasSubstr(path("notes.png") + ": cannot decode image ("));

  // A real PNG cut in half.
  const Bytes hwc = pattern_hwc(32, 32, 3);
  ASSERT_NE(stbi_write_png(path("full.png").c_str(), 32, 32, 3, hwc.data(), 32 * 3), 0);
  const Bytes png = read_bytes(path("full.png"));
  write_raw(path("half.png"), Bytes(png.begin(), png.begin() + png.size() / 2));
  EXPECT_THAT(error_of([&] { load_image(path("half.png")); }),
              HasSubstr(path("half.png") + ": cannot decode image"));

  // A PGM header claiming 20000 x 20000 (400M values) is refused before decoding.
  const std::string header = "P5\n20000 20000\n255\n";
  write_raw(path("huge.pgm"), Bytes(header.begin(), header.end()));
  EXPECT_THAT(error_of([&] { load_image(path("huge.pgm")); }), HasSubstr("over the limit"));
}

// ---------------------------------------------------------------- images: resize

Image make_image(int channels, int height, int width, std::vector<float> data) {
  Image image;
  image.channels = channels;
  image.height = height;
  image.width = width;
  image.data = std::move(data);
  return image;
}

void expect_values(const Image& image, int channels, int height, int width,
                   const std::vector<float>& expected) {
  ASSERT_EQ(image.channels, channels);
  ASSERT_EQ(image.height, height);
  ASSERT_EQ(image.width, width);
  ASSERT_EQ(image.data.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_NEAR(image.data[i], expected[i], 1e-6f) << "index " << i;
}

TEST(Resize, ConstantStaysConstant) {
  const Image constant = make_image(3, 5, 7, std::vector<float>(3 * 5 * 7, 0.25f));
  for (auto [h, w] : {std::pair{2, 3}, {11, 13}, {5, 20}, {1, 1}, {3, 9}}) {
    const Image out = resize_image(constant, h, w);
    expect_values(out, 3, h, w, std::vector<float>(3 * h * w, 0.25f));
  }
}

TEST(Resize, SameSizeCopies) {
  const Image in = make_image(1, 2, 2, {0.1f, 0.2f, 0.3f, 0.4f});
  expect_values(resize_image(in, 2, 2), 1, 2, 2, in.data);
}

TEST(Resize, ShrinkToOnePixelIsMean) {
  expect_values(resize_image(make_image(1, 2, 2, {0.1f, 0.2f, 0.3f, 0.6f}), 1, 1), 1, 1, 1, {0.3f});
}

TEST(Resize, ShrinkAveragesAreasPerChannel) {
  // Two channels of 4x4 -> 2x2: each output is the mean of a 2x2 block.
  std::vector<float> data(32);
  for (int i = 0; i < 32; ++i) data[i] = static_cast<float>(i);
  // Channel 0 blocks: {0,1,4,5} {2,3,6,7} {8,9,12,13} {10,11,14,15}; channel 1 is +16.
  expect_values(resize_image(make_image(2, 4, 4, data), 2, 2), 2, 2, 2,
                {2.5f, 4.5f, 10.5f, 12.5f, 18.5f, 20.5f, 26.5f, 28.5f});
}

TEST(Resize, ShrinkUsesFractionalEdgeWeights) {
  // 3 -> 2: output 0 covers [0, 1.5): (0 * 1 + 3 * 0.5) / 1.5 = 1; output 1: (3 * 0.5 + 6) / 1.5.
  expect_values(resize_image(make_image(1, 1, 3, {0.0f, 3.0f, 6.0f}), 1, 2), 1, 1, 2, {1.0f, 5.0f});
  // The same along the height.
  expect_values(resize_image(make_image(1, 3, 1, {0.0f, 3.0f, 6.0f}), 2, 1), 1, 2, 1, {1.0f, 5.0f});
}

TEST(Resize, UpsampleMatchesPytorchBilinear) {
  // torch.nn.functional.interpolate(torch.arange(4.).view(1, 1, 2, 2), size=(4, 4),
  // mode="bilinear", align_corners=False): source = (o + 0.5) / 2 - 0.5 = -0.25 (clamped to 0),
  // 0.25, 0.75, 1.25 (right neighbour clamped), so per axis weights (1, 0), (.75, .25),
  // (.25, .75), (0, 1).
  expect_values(resize_image(make_image(1, 2, 2, {0, 1, 2, 3}), 4, 4), 1, 4, 4,
                {0.0f, 0.25f, 0.75f, 1.0f,    //
                 0.5f, 0.75f, 1.25f, 1.5f,    //
                 1.5f, 1.75f, 2.25f, 2.5f,    //
                 2.0f, 2.25f, 2.75f, 3.0f});  //
  // 2 -> 3 along the width: sources -1/6 (-> 0), 0.5, 7/6 (-> 1).
  expect_values(resize_image(make_image(1, 1, 2, {0.0f, 6.0f}), 1, 3), 1, 1, 3, {0.0f, 3.0f, 6.0f});
}

TEST(Resize, ShrinkOneAxisGrowTheOther) {
  // 2x4 -> 4x2: width 4 -> 2 by area ([0.5, 2.5], [4.5, 6.5]), height 2 -> 4 bilinear.
  expect_values(resize_image(make_image(1, 2, 4, {0, 1, 2, 3, 4, 5, 6, 7}), 4, 2), 1, 4, 2,
                {0.5f, 2.5f, 1.5f, 3.5f, 3.5f, 5.5f, 4.5f, 6.5f});
}

TEST(Resize, Errors) {
  const Image in = make_image(1, 2, 2, {0, 1, 2, 3});
  EXPECT_THAT(error_of([&] { resize_image(in, 0, 5); }), HasSubstr("at least 1x1"));
  EXPECT_THAT(error_of([&] {
                resize_image(make_image(1, 2, 2, {0, 1, 2}), 1, 1);
              }),
              HasSubstr("holds 3 values, expected 1x2x2 = 4"));
  EXPECT_THAT(error_of([&] { resize_image(Image{}, 1, 1); }), HasSubstr("empty image"));
  EXPECT_THAT(error_of([&] { resize_image(in, 20000, 20000); }), HasSubstr("over the limit"));
}

// ---------------------------------------------------------------- images: channels

TEST(ConvertChannels, RgbToGrayIsLuma) {
  // Four pixels: red, green, blue, mid gray.
  const Image rgb = make_image(3, 1, 4, {1, 0, 0, 0.5f, 0, 1, 0, 0.5f, 0, 0, 1, 0.5f});
  expect_values(convert_channels(rgb, 1), 1, 1, 4, {0.299f, 0.587f, 0.114f, 0.5f});
}

TEST(ConvertChannels, GrayToRgbReplicates) {
  expect_values(convert_channels(make_image(1, 1, 2, {0.2f, 0.7f}), 3), 3, 1, 2,
                {0.2f, 0.7f, 0.2f, 0.7f, 0.2f, 0.7f});
}

TEST(ConvertChannels, DropsAlpha) {
  // Gray + alpha -> gray.
  expect_values(convert_channels(make_image(2, 1, 2, {0.2f, 0.7f, 1, 0}), 1), 1, 1, 2,
                {0.2f, 0.7f});
  // RGBA -> RGB.
  const Image rgba = make_image(4, 1, 2, {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.9f, 0.0f});
  expect_values(convert_channels(rgba, 3), 3, 1, 2, {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f});
  // RGBA -> gray: alpha dropped first, then luma.
  expect_values(convert_channels(rgba, 1), 1, 1, 2,
                {0.299f * 0.1f + 0.587f * 0.3f + 0.114f * 0.5f,
                 0.299f * 0.2f + 0.587f * 0.4f + 0.114f * 0.6f});
}

TEST(ConvertChannels, SameCountCopies) {
  const Image rgba = make_image(4, 1, 1, {0.1f, 0.2f, 0.3f, 0.4f});
  expect_values(convert_channels(rgba, 4), 4, 1, 1, rgba.data);
}

TEST(ConvertChannels, UnsupportedConversions) {
  const Image rgb = make_image(3, 1, 1, {0.1f, 0.2f, 0.3f});
  EXPECT_THAT(error_of([&] { convert_channels(rgb, 4); }), HasSubstr("cannot convert 3"));
  EXPECT_THAT(error_of([&] { convert_channels(rgb, 2); }), HasSubstr("cannot convert 3"));
  EXPECT_THAT(error_of([&] { convert_channels(rgb, 0); }), HasSubstr("cannot convert 3"));
  EXPECT_THAT(error_of([&] {
                convert_channels(make_image(5, 1, 1, {0, 0, 0, 0, 0}), 1);
              }),
              HasSubstr("input has 5 channels"));
}

}  // namespace
}  // namespace kat
