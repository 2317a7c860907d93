// Tests of PNG decoding (every colour type the data set may hold), encoding,
// and the preprocessing: resize, normalisation, flip.
#include "examples/chexnet/data/image.h"

#include <spng.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "examples/chexnet/data/dataset.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/png_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/chexnet/png_fixture.h"

namespace kolo::chexnet {
namespace {

using ::kolo::chexnet::testing::EncodeFixture;
using ::kolo::chexnet::testing::WriteBytes;
using ::testing::HasSubstr;
using ::testing::Not;

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

// Checks that every pixel of `image` equals the RGB triple in `expected`
// (one triple per pixel, row-major) within 1e-6.
void ExpectRgb(const Image& image, const std::vector<float>& expected) {
  ASSERT_EQ(image.channels, 3);
  ASSERT_EQ(expected.size(),
            static_cast<size_t>(3 * image.height * image.width));
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        const float want = expected[(y * image.width + x) * 3 + c];
        EXPECT_NEAR(image.at(c, y, x), want, 1e-6)
            << "pixel (" << x << ", " << y << ") channel " << c;
      }
    }
  }
}

TEST(DecodePng, Gray8IsReplicated) {
  const std::string png =
      EncodeFixture(3, 1, SPNG_COLOR_TYPE_GRAYSCALE, 8, {0, 51, 255});
  auto image = DecodePng(png, "gray8.png");
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->width, 3);
  EXPECT_EQ(image->height, 1);
  ExpectRgb(*image, {0, 0, 0, 0.2f, 0.2f, 0.2f, 1, 1, 1});
}

TEST(DecodePng, Gray16KeepsPrecision) {
  const uint16_t samples[4] = {0, 0x1234, 0x1235, 65535};
  std::vector<uint8_t> bytes(sizeof(samples));
  std::memcpy(bytes.data(), samples, sizeof(samples));
  const std::string png =
      EncodeFixture(2, 2, SPNG_COLOR_TYPE_GRAYSCALE, 16, bytes);
  auto image = DecodePng(png, "gray16.png");
  ASSERT_TRUE(image.ok()) << image.status();
  const float a = 0x1234 / 65535.0f, b = 0x1235 / 65535.0f;
  ExpectRgb(*image, {0, 0, 0, a, a, a, b, b, b, 1, 1, 1});
  // Two 16-bit levels that share an 8-bit level stay distinct.
  EXPECT_NE(image->at(0, 0, 1), image->at(0, 1, 0));
}

TEST(DecodePng, Rgb8) {
  const std::string png = EncodeFixture(2, 1, SPNG_COLOR_TYPE_TRUECOLOR, 8,
                                        {255, 0, 51, 0, 102, 255});
  auto image = DecodePng(png, "rgb.png");
  ASSERT_TRUE(image.ok()) << image.status();
  ExpectRgb(*image, {1, 0, 0.2f, 0, 0.4f, 1});
}

TEST(DecodePng, Rgba8DropsAlpha) {
  const std::string png = EncodeFixture(2, 1, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA,
                                        8, {255, 0, 51, 255, 0, 102, 255, 0});
  auto image = DecodePng(png, "rgba.png");
  ASSERT_TRUE(image.ok()) << image.status();
  ExpectRgb(*image, {1, 0, 0.2f, 0, 0.4f, 1});
}

TEST(DecodePng, Rgba16AndGrayAlpha8) {
  const uint16_t samples[4] = {65535, 0x8000, 0, 1234};
  std::vector<uint8_t> bytes(sizeof(samples));
  std::memcpy(bytes.data(), samples, sizeof(samples));
  auto rgba16 =
      DecodePng(EncodeFixture(1, 1, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 16, bytes),
                "rgba16.png");
  ASSERT_TRUE(rgba16.ok()) << rgba16.status();
  ExpectRgb(*rgba16, {1, 0x8000 / 65535.0f, 0});

  auto gray_alpha = DecodePng(
      EncodeFixture(1, 1, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 8, {102, 7}),
      "ga.png");
  ASSERT_TRUE(gray_alpha.ok()) << gray_alpha.status();
  ExpectRgb(*gray_alpha, {0.4f, 0.4f, 0.4f});
}

TEST(DecodePng, PaletteIsExpanded) {
  const std::string png =
      EncodeFixture(3, 1, SPNG_COLOR_TYPE_INDEXED, 8, {2, 0, 1},
                    {255, 0, 0, 0, 255, 0, 0, 0, 51});
  auto image = DecodePng(png, "palette.png");
  ASSERT_TRUE(image.ok()) << image.status();
  ExpectRgb(*image, {0, 0, 0.2f, 1, 0, 0, 0, 1, 0});
}

TEST(DecodePng, CorruptDataNamesTheFile) {
  const std::string png = EncodeFixture(16, 16, SPNG_COLOR_TYPE_GRAYSCALE, 8,
                                        std::vector<uint8_t>(256, 7));
  ASSERT_GT(png.size(), 60u);

  auto truncated = DecodePng(png.substr(0, png.size() / 2), "images/cut.png");
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(truncated.status().message(), HasSubstr("images/cut.png: "));

  auto not_png = DecodePng("this is not a PNG file at all", "images/txt.png");
  ASSERT_FALSE(not_png.ok());
  EXPECT_THAT(not_png.status().message(),
              HasSubstr("images/txt.png: not a readable PNG"));

  std::string bad_crc = png;
  bad_crc[20] ^= 0x55;  // Inside IHDR, whose CRC then fails.
  auto crc = DecodePng(bad_crc, "images/crc.png");
  ASSERT_FALSE(crc.ok());
  EXPECT_THAT(crc.status().message(), HasSubstr("images/crc.png: "));
}

TEST(DecodePng, RefusesHugeImagesBeforeAllocating) {
  // 9000x8000 one-bit pixels: a few kilobytes of PNG that would decode to
  // 72 megapixels (over a gigabyte as floats).
  const int width = 9000;
  const int height = 8000;
  const std::string png =
      EncodeFixture(width, height, SPNG_COLOR_TYPE_GRAYSCALE, 1,
                    std::vector<uint8_t>((width + 7) / 8 * height, 0));
  ASSERT_FALSE(png.empty());
  ASSERT_LT(png.size(), 1u << 20);
  auto huge = DecodePng(png, "images/huge.png");
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(huge.status().message(),
              HasSubstr("images/huge.png: 9000x8000 pixels is more than"));
}

TEST(ReadPng, MissingFileIsNotFoundNamingThePath) {
  auto image = ReadPng("/nonexistent/images/00000001_000.png");
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(image.status().message(),
              HasSubstr("/nonexistent/images/00000001_000.png: cannot open"));
}

TEST(EncodePng8, RoundTripsGrayAndRgb) {
  const std::vector<uint8_t> gray = {0, 10, 20, 30, 40, 250};
  auto png = EncodePng8(gray.data(), 3, 2, 1);
  ASSERT_TRUE(png.ok()) << png.status();
  auto image = DecodePng(*png, "gray");
  ASSERT_TRUE(image.ok()) << image.status();
  for (int i = 0; i < 6; ++i) {
    EXPECT_FLOAT_EQ(image->at(2, i / 3, i % 3), gray[i] / 255.0f) << i;
  }
  const std::vector<uint8_t> rgb = {1, 2, 3, 4, 5, 6};
  image = DecodePng(*EncodePng8(rgb.data(), 2, 1, 3), "rgb");
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_FLOAT_EQ(image->at(1, 0, 1), 5 / 255.0f);
  EXPECT_FALSE(EncodePng8(rgb.data(), 2, 1, 2).ok());
}

Image Gradient(int channels, int height, int width) {
  Image image(channels, height, width);
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    image.pixels[i] = static_cast<float>(i % 251) / 251.0f;
  }
  return image;
}

TEST(ResizeBilinear, HalfPixelCentresByHand) {
  Image image(1, 2, 2);
  image.pixels = {0, 1, 2, 3};
  const Image up = ResizeBilinear(image, 4, 4);
  const std::vector<float> expected = {0.0f, 0.25f, 0.75f, 1.0f,  //
                                       0.5f, 0.75f, 1.25f, 1.5f,  //
                                       1.5f, 1.75f, 2.25f, 2.5f,  //
                                       2.0f, 2.25f, 2.75f, 3.0f};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_FLOAT_EQ(up.pixels[i], expected[i]) << "index " << i;
  }
  // Halving averages 2x2 blocks.
  const Image down = ResizeBilinear(up, 2, 2);
  EXPECT_FLOAT_EQ(down.pixels[0], (0.0f + 0.25f + 0.5f + 0.75f) / 4);
  EXPECT_FLOAT_EQ(down.pixels[3], (2.25f + 2.5f + 2.75f + 3.0f) / 4);
  // Non-square output.
  const Image wide = ResizeBilinear(image, 1, 3);
  EXPECT_EQ(wide.height, 1);
  EXPECT_EQ(wide.width, 3);
  EXPECT_FLOAT_EQ(wide.pixels[1], 1.5f);
}

TEST(ResizeBilinear, SameSizeIsExactCopy) {
  const Image image = Gradient(3, 5, 7);
  const Image same = ResizeBilinear(image, 5, 7);
  EXPECT_EQ(same.pixels, image.pixels);
}

TEST(NormalizeImageNet, UsesImageNetStatistics) {
  Image image(3, 1, 2);
  image.pixels = {0.485f, 1.0f, 0.456f, 0.0f, 0.406f, 0.5f};
  NormalizeImageNet(&image);
  EXPECT_NEAR(image.at(0, 0, 0), 0.0f, 1e-6);
  EXPECT_NEAR(image.at(0, 0, 1), (1.0f - 0.485f) / 0.229f, 1e-5);
  EXPECT_NEAR(image.at(1, 0, 0), 0.0f, 1e-6);
  EXPECT_NEAR(image.at(1, 0, 1), -0.456f / 0.224f, 1e-5);
  EXPECT_NEAR(image.at(2, 0, 0), 0.0f, 1e-6);
  EXPECT_NEAR(image.at(2, 0, 1), (0.5f - 0.406f) / 0.225f, 1e-5);
}

TEST(FlipHorizontal, MirrorsRows) {
  Image image(1, 2, 3);
  image.pixels = {1, 2, 3, 4, 5, 6};
  FlipHorizontal(&image);
  EXPECT_EQ(image.pixels, (std::vector<float>{3, 2, 1, 6, 5, 4}));
}

TEST(LoadModelInput, SkipsResamplingAtModelSize) {
  std::vector<uint8_t> gray(8 * 8);
  for (size_t i = 0; i < gray.size(); ++i)
    gray[i] = static_cast<uint8_t>(i * 4);
  const std::string path = TempPath("model_size.png");
  ASSERT_TRUE(WritePng8(path, gray.data(), 8, 8, 1).ok());

  ImageOptions options;
  options.image_size = 8;
  options.normalize = false;
  auto image = LoadModelInput(path, options);
  ASSERT_TRUE(image.ok()) << image.status();
  for (int c = 0; c < 3; ++c) {
    for (int i = 0; i < 64; ++i) {
      EXPECT_EQ(image->at(c, i / 8, i % 8), gray[i] / 255.0f)
          << "channel " << c << " pixel " << i;
    }
  }

  options.normalize = true;
  image = LoadModelInput(path, options);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_NEAR(image->at(1, 7, 7), (gray[63] / 255.0f - 0.456f) / 0.224f, 1e-5);
}

TEST(LoadModelInput, ResizesOtherSizesToTheModelSquare) {
  std::vector<uint8_t> gray(6 * 4, 200);
  const std::string path = TempPath("other_size.png");
  ASSERT_TRUE(WritePng8(path, gray.data(), 6, 4, 1).ok());
  ImageOptions options;
  options.image_size = 5;
  options.normalize = false;
  auto image = LoadModelInput(path, options);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->channels, 3);
  EXPECT_EQ(image->height, 5);
  EXPECT_EQ(image->width, 5);
  for (float v : image->pixels) EXPECT_FLOAT_EQ(v, 200 / 255.0f);
}

TEST(WriteStringToFile, ReplacesAtomicallyAndReportsBadPaths) {
  const std::string path = TempPath("atomic.txt");
  ASSERT_TRUE(WriteStringToFile(path, "first").ok());
  ASSERT_TRUE(WriteStringToFile(path, "second", Durability::kUnsynced).ok());
  EXPECT_EQ(*ReadFileToString(path), "second");
  for (const auto& entry :
       std::filesystem::directory_iterator(::testing::TempDir())) {
    EXPECT_THAT(entry.path().filename().string(),
                Not(HasSubstr("atomic.txt.tmp")));
  }
  const absl::Status status = WriteStringToFile("/nonexistent/dir/x.txt", "x");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("/nonexistent/dir/x.txt"));
}

TEST(ReadFileToString, RefusesSpecialFilesWithoutReadingThem) {
  // /dev/zero never ends: reading it once filled memory.
  absl::StatusOr<std::string> zero = ReadFileToString("/dev/zero");
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(),
              HasSubstr("/dev/zero: not a regular file (a character device)"));
  const std::string dir = TempPath("read_dir");
  std::filesystem::create_directories(dir);
  EXPECT_THAT(ReadFileToString(dir).status().message(),
              HasSubstr("not a regular file (a directory)"));
  // Opening a FIFO for reading waits for a writer unless told not to.
  const std::string fifo = dir + "/fifo.png";
  std::filesystem::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THAT(ReadFileToString(fifo).status().message(),
              HasSubstr("not a regular file (a FIFO)"));
  std::filesystem::remove_all(dir);
}

TEST(ReadFileToString, RefusesFilesOverTheSizeCap) {
  const std::string path = TempPath("capped.bin");
  WriteBytes(path, std::string(100, 'x'));
  EXPECT_EQ(ReadFileToString(path, 100)->size(), 100u);
  absl::StatusOr<std::string> over = ReadFileToString(path, 99);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(over.status().message(),
              HasSubstr("capped.bin: 100 bytes is more than the 99 bytes"));
}

TEST(ChestXrayDataset, ImagesMustBeRegularFilesInTheImagesFolder) {
  const std::string images = TempPath("dataset_images");
  std::filesystem::remove_all(images);
  std::filesystem::create_directories(images);
  // A symlink inside the folder is followed, but must end at a regular file.
  std::filesystem::create_symlink("/dev/zero", images + "/zero.png");
  std::vector<DataEntry> entries(3);
  entries[0].image_index = "zero.png";
  entries[1].image_index = "/dev/zero";
  entries[2].image_index = "../dataset_images/zero.png";
  ChestXrayDataset dataset(images, entries, ImageOptions());
  EXPECT_THAT(dataset.LoadImage(0, false).status().message(),
              HasSubstr("zero.png: not a regular file (a character device)"));
  EXPECT_THAT(dataset.LoadImage(1, false).status().message(),
              HasSubstr("\"/dev/zero\" is an absolute path"));
  EXPECT_THAT(dataset.LoadImage(2, false).status().message(),
              HasSubstr("contains a path separator"));
  std::filesystem::remove_all(images);
}

}  // namespace
}  // namespace kolo::chexnet
