// safetensors reader/writer and atomic file writes: round trips, other dtypes, and every kind of
// corrupt file the reader must refuse with an error that names the problem.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <filesystem>

#include "cli.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/safetensors.h"

namespace kat {
namespace {

using ::testing::HasSubstr;

// Builds a safetensors byte image from a header text and a data buffer.
std::vector<uint8_t> image(const std::string& header, const std::vector<uint8_t>& data = {}) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; i++) out.push_back(static_cast<uint8_t>(header.size() >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::string parse_error(std::vector<uint8_t> bytes) {
  try {
    SafetensorsFile::parse(std::move(bytes), "t.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

template <class T>
std::vector<uint8_t> raw(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

TEST(Safetensors, RoundTripKeepsNamesShapesValuesAndMetadata) {
  testing::TempDir dir("st-roundtrip");
  const std::vector<float> a{1, -2, 3.5f, 4, 5, 6}, b{0.25f};
  save_safetensors(
      dir / "x.safetensors",
      {{"zeta", {2, 3}, a.data()}, {"alpha", {1}, b.data()}, {"empty", {0, 4}, a.data()}},
      {{"format", "pt"}});
  const auto f = SafetensorsFile::load(dir / "x.safetensors");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"alpha", "empty", "zeta"}));
  EXPECT_EQ(f.info("zeta").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.read_f32("zeta"), a);
  EXPECT_EQ(f.read_f32("alpha"), b);
  EXPECT_TRUE(f.read_f32("empty").empty());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  // The header is padded to 8 bytes, as the Python library writes it.
  const auto bytes = read_file(dir / "x.safetensors");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
}

TEST(Safetensors, ConvertsOtherFloatTypesAndIntegers) {
  const std::vector<double> f64{1.5, -2.25};
  const std::vector<uint16_t> f16{0x3c00, 0xc000, 0x0001, 0x7bff};  // 1, -2, 2^-24, 65504
  const std::vector<uint16_t> bf16{0x3f80, 0xc040};                 // 1, -3
  const std::vector<int64_t> i64{-7, 1LL << 40};
  std::vector<uint8_t> data = raw(f64);
  const auto add = [&](const std::vector<uint8_t>& more) {
    data.insert(data.end(), more.begin(), more.end());
  };
  add(raw(f16)), add(raw(bf16)), add(raw(i64)), add({200, 7});
  const std::string header = R"({"d":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
                             R"("h":{"dtype":"F16","shape":[2,2],"data_offsets":[16,24]},)"
                             R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
                             R"("i":{"dtype":"I64","shape":[2],"data_offsets":[28,44]},)"
                             R"("u":{"dtype":"U8","shape":[2],"data_offsets":[44,46]}})";
  const auto f = SafetensorsFile::parse(image(header, data), "mixed");
  EXPECT_EQ(f.read_f32("d"), (std::vector<float>{1.5f, -2.25f}));
  EXPECT_EQ(f.read_f32("h"), (std::vector<float>{1.0f, -2.0f, 0x1p-24f, 65504.0f}));
  EXPECT_EQ(f.read_f32("b"), (std::vector<float>{1.0f, -3.0f}));
  EXPECT_EQ(f.read_i64("i"), i64);
  EXPECT_EQ(f.read_i64("u"), (std::vector<int64_t>{200, 7}));
  EXPECT_THAT(parse_error({}), HasSubstr("shorter than the 8-byte header length"));
  try {
    f.read_f32("i");
    FAIL() << "an integer tensor read as float";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("'i' has dtype I64"));
  }
  try {
    const int64_t shape[] = {4};
    float out[4];
    f.read_f32("h", shape, out);
    FAIL() << "wrong shape accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("'h' has shape [2, 2], expected [4]"));
  }
}

TEST(Safetensors, CorruptFilesAreRefusedWithTheReason) {
  const std::vector<uint8_t> four(4, 0);
  EXPECT_THAT(parse_error({1, 2, 3}), HasSubstr("shorter than the 8-byte header length"));
  {  // header length past the end
    auto b = image("{}");
    b[0] = 200;
    EXPECT_THAT(parse_error(b), HasSubstr("truncated"));
  }
  {  // absurd header length
    auto b = image("{}");
    b[5] = 1;
    EXPECT_THAT(parse_error(b), HasSubstr("larger than"));
  }
  EXPECT_THAT(parse_error(image("{not json")), HasSubstr("not valid JSON"));
  EXPECT_THAT(parse_error(image("[1,2]")), HasSubstr("not a JSON object"));
  EXPECT_THAT(parse_error(image(R"({"a":{"dtype":"F32","shape":[1]}})", four)),
              HasSubstr("needs dtype, shape and data_offsets"));
  EXPECT_THAT(parse_error(image(R"({"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,4]}})", four)),
              HasSubstr("unsupported dtype 'Q8'"));
  EXPECT_THAT(parse_error(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", four)),
              HasSubstr("out of range"));
  EXPECT_THAT(parse_error(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", four)),
              HasSubstr("out of range"));
  EXPECT_THAT(parse_error(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four)),
              HasSubstr("do not hold shape [2]"));
  EXPECT_THAT(
      parse_error(image(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four)),
      HasSubstr("non-negative integers"));
  EXPECT_THAT(parse_error(image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],)"
                                R"("data_offsets":[0,4]}})",
                                four)),
              HasSubstr("too large"));
  EXPECT_THAT(parse_error(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                four)),
              HasSubstr("overlap"));
  EXPECT_THAT(parse_error(image(R"({"__metadata__":{"k":1}})")), HasSubstr("not a string"));
  EXPECT_THAT(parse_error({}), HasSubstr("t.safetensors"));
}

TEST(Safetensors, MissingFileNamesThePath) {
  try {
    SafetensorsFile::load("/nonexistent/dir/model.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/dir/model.safetensors"));
    EXPECT_THAT(e.what(), HasSubstr("No such file"));
  }
}

TEST(Files, AtomicWriteReplacesAndLeavesNoTemporaries) {
  testing::TempDir dir("atomic");
  const std::string path = dir / "f.txt";
  write_file_atomic(path, "first");
  write_file_atomic(path, "second, longer");
  EXPECT_EQ(read_text_file(path), "second, longer");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.str())) entries++;
  EXPECT_EQ(entries, 1);
  EXPECT_TRUE(file_exists(path));
  EXPECT_FALSE(file_exists(dir.str()));  // a directory is not a file
}

TEST(Files, UnwritableTargetKeepsTheOldFile) {
  testing::TempDir dir("unwritable");
  EXPECT_THROW(write_file_atomic(dir / "no/such/dir/f.txt", "x"), Error);
  EXPECT_THROW(write_file_atomic(dir.str(), "x"), Error);  // a directory
  EXPECT_THROW(read_file(dir.str()), Error);
}

}  // namespace
}  // namespace kat
