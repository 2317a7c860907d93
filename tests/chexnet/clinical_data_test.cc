// Tests of the clinical side of the CheXNet example that need no LibTorch:
// BBox_List_2017.csv, the synthetic generator's boxes, the localization
// scores, .npy files, heat map overlays and DICOM input.
//
// The DICOM cases come from make_dicom_fixtures.py (pydicom, a CTest
// fixture) in $KOLO_CHEXNET_DICOM_DIR; without them those tests skip.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/data/dicom_io.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/image_file.h"
#include "examples/chexnet/data/png_io.h"
#include "examples/chexnet/data/synthetic.h"
#include "examples/chexnet/metrics/heatmap_png.h"
#include "examples/chexnet/metrics/localization.h"
#include "examples/chexnet/metrics/npy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo::chexnet {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// ---- BBox_List_2017.csv ----------------------------------------------------

TEST(BBoxList, ReadsTheNihFileWithItsQuirks) {
  const std::string contents =
      "\xEF\xBB\xBFImage Index,Finding Label,Bbox [x,y,w,h],,,\r\n"
      "00013118_008.png,Atelectasis,225.084745762712,547.019216763771,"
      "86.7796610169491,79.1864406779661\r\n"
      "\n"
      "00014716_007.png,Infiltrate,665.6,395.5,163.5,248.8,,,\n"
      "00029817_009.png,Cardiomegaly,100,200,300,400,\n";
  absl::StatusOr<std::vector<FindingBox>> boxes =
      ParseBBoxListCsv(contents, "BBox_List_2017.csv");
  ASSERT_TRUE(boxes.ok()) << boxes.status();
  ASSERT_EQ(boxes->size(), 3u);
  EXPECT_EQ((*boxes)[0].image_index, "00013118_008.png");
  EXPECT_EQ((*boxes)[0].finding, 0);
  EXPECT_DOUBLE_EQ((*boxes)[0].box.x, 225.084745762712);
  EXPECT_DOUBLE_EQ((*boxes)[0].box.height, 79.1864406779661);
  EXPECT_EQ((*boxes)[0].line, 2);
  EXPECT_EQ((*boxes)[1].finding, 3) << "Infiltrate is Infiltration";
  EXPECT_EQ((*boxes)[1].line, 4);
  EXPECT_EQ((*boxes)[2].finding, 1);
}

TEST(BBoxList, WritesWhatItReads) {
  std::vector<FindingBox> boxes(2);
  boxes[0] = {"00000001_000.png", 3, {1.5, 2, 30, 40.25}, 0};
  boxes[1] = {"00000002_001.png", 7, {0, 0, 5, 6}, 0};
  const std::string csv = FormatBBoxListCsv(boxes);
  EXPECT_THAT(csv, ::testing::StartsWith(
                       "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                       "00000001_000.png,Infiltrate,1.5,2,30,40.25\n"));
  absl::StatusOr<std::vector<FindingBox>> back = ParseBBoxListCsv(csv, "x");
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[1].finding, 7);
  EXPECT_DOUBLE_EQ((*back)[0].box.height, 40.25);
}

TEST(BBoxList, BadRowsNameTheFileAndLine) {
  const std::string header = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n";
  struct Case {
    std::string row;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"a.png,Fracture,1,2,3,4\n", "unknown finding \"Fracture\""},
           {"a.png,Mass,1,2,3\n", "expected image, finding, x, y, w, h"},
           {"a.png,Mass,1,two,3,4\n", "y \"two\" is not a number"},
           {"a.png,Mass,1,2,0,4\n", "has no area"},
           {"a.png,Mass,1,2,3,4,5\n", "unexpected text \"5\""},
           {",Mass,1,2,3,4\n", "empty image name"}}) {
    absl::StatusOr<std::vector<FindingBox>> boxes =
        ParseBBoxListCsv(header + c.row, "boxes.csv");
    ASSERT_FALSE(boxes.ok()) << c.row;
    EXPECT_THAT(boxes.status().message(), HasSubstr("boxes.csv:2: "));
    EXPECT_THAT(boxes.status().message(), HasSubstr(c.message));
  }
  EXPECT_THAT(ParseBBoxListCsv("x,y\n", "boxes.csv").status().message(),
              HasSubstr("boxes.csv:1: expected the header"));
}

TEST(BBoxList, UnknownImageIsNamed) {
  absl::StatusOr<std::vector<FindingBox>> boxes = ParseBBoxListCsv(
      "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
      "00000001_000.png,Mass,1,2,3,4\n"
      "99999999_000.png,Nodule,1,2,3,4\n",
      "boxes.csv");
  ASSERT_TRUE(boxes.ok());
  std::vector<DataEntry> entries(1);
  entries[0].image_index = "00000001_000.png";
  const absl::Status status = CheckBoxImagesKnown(*boxes, entries, "boxes.csv");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("boxes.csv:3: image \"99999999_000.png\" is not in"));
}

// ---- the synthetic generator's boxes ---------------------------------------

// Every pixel the finding changed lies inside its box, and the box is tight.
TEST(SyntheticBoxes, EncloseExactlyWhatTheFindingChanged) {
  const int size = 64;
  for (int finding = 0; finding < kNumBoxedFindings; ++finding) {
    for (uint64_t seed : {3u, 17u}) {
      LabelVector labels{};
      labels[finding] = 1;
      const std::vector<FindingBox> boxes =
          SyntheticFindingBoxes("x.png", labels, {finding}, size, seed);
      ASSERT_EQ(boxes.size(), 1u) << kLabelNames[finding];
      const BoundingBox& box = boxes[0].box;
      // The rendered difference includes the noise stream, which is the same
      // in both renders (the same seed), so it cancels.
      const std::vector<uint8_t> with =
          RenderSyntheticImage(labels, size, seed);
      const std::vector<uint8_t> without =
          RenderSyntheticImage(LabelVector{}, size, seed);
      int inside = 0, outside = 0;
      for (int y = 0; y < size; ++y) {
        for (int x = 0; x < size; ++x) {
          const int change =
              std::abs(int(with[y * size + x]) - int(without[y * size + x]));
          if (change <= 6) continue;  // Beyond the 0.02 region threshold.
          const bool in = x >= box.x && x < box.x + box.width && y >= box.y &&
                          y < box.y + box.height;
          (in ? inside : outside) += 1;
        }
      }
      EXPECT_GT(inside, 0) << kLabelNames[finding] << " seed " << seed;
      EXPECT_EQ(outside, 0) << kLabelNames[finding] << " seed " << seed
                            << ": changed pixels outside the box";
      EXPECT_LT(box.area(), 0.5 * size * size) << kLabelNames[finding];
    }
  }
}

TEST(SyntheticBoxes, DataSetWritesBoxesOfTestImages) {
  const fs::path dir = fs::path(::testing::TempDir()) / "synthetic_boxes";
  fs::remove_all(dir);
  SyntheticOptions options;
  options.out_dir = dir.string();
  options.num_images = 80;
  options.image_size = 48;
  options.seed = 4;
  absl::StatusOr<SyntheticSummary> summary = GenerateSyntheticDataset(options);
  ASSERT_TRUE(summary.ok()) << summary.status();
  absl::StatusOr<std::vector<FindingBox>> boxes =
      ReadBBoxListCsv((dir / kBBoxList).string());
  ASSERT_TRUE(boxes.ok()) << boxes.status();
  EXPECT_EQ(static_cast<int>(boxes->size()), summary->num_boxes);
  const std::string test_list =
      *ReadFileToString((dir / "test_list.txt").string());
  std::array<int, kNumLabels> per_finding{};
  for (const FindingBox& box : *boxes) {
    EXPECT_THAT(test_list, HasSubstr(box.image_index + "\n"));
    EXPECT_LT(box.finding, kNumBoxedFindings);
    EXPECT_LE(box.box.x + box.box.width, 48);
    ++per_finding[box.finding];
  }
  for (int c = 0; c < kNumBoxedFindings; ++c) {
    EXPECT_GE(per_finding[c], 1)
        << kLabelNames[c] << ": every split has >= 2 positives";
  }
}

// ---- localization scores ---------------------------------------------------

TEST(Localization, PeakOfAPlateauIsItsMiddle) {
  std::vector<float> map(10 * 8, 0.0f);
  for (int y = 2; y <= 3; ++y) {
    for (int x = 6; x <= 9; ++x) map[y * 10 + x] = 5.0f;
  }
  const HeatMapPeak peak = FindPeak(map.data(), 10, 8);
  EXPECT_DOUBLE_EQ(peak.x, 8.0);
  EXPECT_DOUBLE_EQ(peak.y, 3.0);
}

TEST(Localization, BoxesCoverEachConnectedRegion) {
  std::vector<float> map(12 * 10, 0.0f);
  map[1 * 12 + 1] = 1.0f;  // a single pixel
  for (int y = 5; y <= 7; ++y) {
    for (int x = 6; x <= 9; ++x) map[y * 12 + x] = 0.9f;
  }
  map[8 * 12 + 10] = 0.9f;  // diagonal neighbour: same region
  map[0 * 12 + 11] = 0.5f;  // below 180/255 of the range
  std::vector<BoundingBox> boxes = BoxesFromHeatMap(map.data(), 12, 10, 180);
  ASSERT_EQ(boxes.size(), 2u);
  EXPECT_DOUBLE_EQ(boxes[0].x, 1);
  EXPECT_DOUBLE_EQ(boxes[0].width, 1);
  EXPECT_DOUBLE_EQ(boxes[1].x, 6);
  EXPECT_DOUBLE_EQ(boxes[1].y, 5);
  EXPECT_DOUBLE_EQ(boxes[1].width, 5);
  EXPECT_DOUBLE_EQ(boxes[1].height, 4);
  EXPECT_TRUE(
      BoxesFromHeatMap(std::vector<float>(4, 2.0f).data(), 2, 2, 180).empty());
}

TEST(Localization, IouAndIobb) {
  const BoundingBox truth{0, 0, 10, 10};
  const BoundingBox detected{5, 0, 10, 10};
  EXPECT_DOUBLE_EQ(IntersectionOverUnion(detected, truth), 50.0 / 150.0);
  EXPECT_DOUBLE_EQ(IntersectionOverDetected(detected, truth), 0.5);
  EXPECT_DOUBLE_EQ(IntersectionOverDetected({2, 2, 2, 2}, truth), 1.0);
  EXPECT_DOUBLE_EQ(IntersectionOverUnion({20, 20, 1, 1}, truth), 0.0);
}

TEST(Localization, AccumulatorScoresHitsMissesAndFalsePositives) {
  LocalizationAccumulator accumulator;
  // Image a: a blob on the Mass box and a second, false blob.
  std::vector<float> map(100 * 100, 0.0f);
  for (int y = 20; y < 30; ++y) {
    for (int x = 20; x < 30; ++x) map[y * 100 + x] = 1.0f;
  }
  for (int y = 80; y < 84; ++y) {
    for (int x = 80; x < 84; ++x) map[y * 100 + x] = 0.95f;
  }
  accumulator.Add("a.png", 4, map.data(), 100, 100, {25, 25},
                  {{18, 18, 20, 20}});
  // Image b: the map points away from the box.
  std::vector<float> away(100 * 100, 0.0f);
  away[90 * 100 + 5] = 1.0f;
  accumulator.Add("b.png", 4, away.data(), 100, 100, {5.5, 90.5},
                  {{40, 40, 10, 10}});
  const LocalizationMetrics& m = accumulator.metrics();
  EXPECT_EQ(m.images, 2);
  const FindingLocalization& mass = m.findings[4];
  EXPECT_EQ(mass.boxes, 2);
  EXPECT_EQ(mass.pairs, 2);
  EXPECT_EQ(mass.pointing_hits, 1);
  // T(IoBB) = 0.1: a's box is localized by the first blob (IoBB 1), the
  // second blob is a false positive; b's single-pixel box is one more.
  EXPECT_EQ(mass.iobb[0].localized, 1);
  EXPECT_EQ(mass.iobb[0].false_positives, 2);
  // IoU of the 10x10 blob with the 20x20 box is 0.25.
  EXPECT_EQ(mass.iou[1].localized, 1);  // T(IoU) = 0.2
  EXPECT_EQ(mass.iou[2].localized, 0);  // T(IoU) = 0.3
  const std::string table = FormatLocalizationTable(m);
  EXPECT_THAT(table, HasSubstr("Mass"));
  EXPECT_THAT(table, HasSubstr("0.500 (0.435)"));  // beside Wang et al.
  const nlohmann::json json = LocalizationToJson(m);
  EXPECT_EQ(json["findings"][0]["name"], "Mass");
  EXPECT_DOUBLE_EQ(json["findings"][0]["pointing_accuracy"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(json["findings"][0]["iobb"][0]["afp"].get<double>(), 1.0);
}

// ---- .npy and overlays -----------------------------------------------------

TEST(Npy, HeaderAndData) {
  const std::vector<float> values = {1.0f, -2.5f, 3.25f, 0.0f, 5.0f, 6.0f};
  const std::string npy = EncodeNpyFloat32(values.data(), 2, 3);
  ASSERT_GT(npy.size(), 10u);
  EXPECT_EQ(npy.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_length =
      static_cast<uint8_t>(npy[8]) | static_cast<uint8_t>(npy[9]) << 8;
  EXPECT_EQ((10 + header_length) % 64, 0u);
  const std::string header = npy.substr(10, header_length);
  EXPECT_THAT(header, HasSubstr("'descr': '<f4'"));
  EXPECT_THAT(header, HasSubstr("'shape': (2, 3)"));
  EXPECT_EQ(header.back(), '\n');
  ASSERT_EQ(npy.size(), 10 + header_length + values.size() * 4);
  float back[6];
  std::memcpy(back, npy.data() + 10 + header_length, sizeof(back));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back[i], values[i]) << i;
}

TEST(HeatmapPng, OverlayShowsTheMapOverTheImage) {
  Image image(3, 32, 32);
  for (float& p : image.pixels) p = 0.5f;
  std::vector<float> map(32 * 32, 0.0f);
  for (int y = 0; y < 8; ++y) {
    for (int x = 24; x < 32; ++x) map[y * 32 + x] = 2.0f;
  }
  HeatmapOverlay overlay;
  overlay.image = &image;
  overlay.map = map.data();
  overlay.finding = "Pleural_Thickening";
  overlay.probability = 0.8734;
  overlay.caption = "GRAD-CAM";
  absl::StatusOr<std::string> png = RenderHeatmapPng(overlay);
  ASSERT_TRUE(png.ok()) << png.status();
  absl::StatusOr<Image> decoded = DecodePng(*png, "overlay");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  // Magnified 8x to 256, below a 40-pixel header, 8 pixels from the left.
  ASSERT_GE(decoded->width, 8 + 256);
  ASSERT_EQ(decoded->height, 40 + 256 + 8);
  auto rgb = [&](int x, int y) {
    return std::array<float, 3>{decoded->at(0, y, x), decoded->at(1, y, x),
                                decoded->at(2, y, x)};
  };
  const auto hot = rgb(8 + 28 * 8, 40 + 4 * 8);
  EXPECT_GT(hot[0], hot[2] + 0.2f) << "red where the map is at its maximum";
  const auto cold = rgb(8 + 4 * 8, 40 + 28 * 8);
  EXPECT_NEAR(cold[0], 0.5f, 0.01f) << "the X-ray untouched where it is 0";
  EXPECT_NEAR(cold[0], cold[2], 0.01f);
}

// ---- DICOM -----------------------------------------------------------------

std::string DicomDir() {
  const char* dir = std::getenv("KOLO_CHEXNET_DICOM_DIR");
  return dir == nullptr ? "" : dir;
}

// Within one 16-bit output step (DCMTK renders to 16 bits) of pydicom.
constexpr float kDicomTolerance = 1.0f / 65535.0f + 1e-6f;

TEST(Dicom, PixelsEqualWhatPydicomComputes) {
  if (!DicomSupported()) GTEST_SKIP() << "this build has no DICOM support";
  const fs::path manifest_path = fs::path(DicomDir()) / "manifest.json";
  if (!fs::exists(manifest_path)) {
    GTEST_SKIP() << manifest_path << " is missing: it is written by "
                 << "tests/chexnet/make_dicom_fixtures.py, which needs "
                 << "python3 with pydicom (python3-pydicom)";
  }
  const nlohmann::json manifest =
      nlohmann::json::parse(*ReadFileToString(manifest_path.string()));
  int compared = 0;
  for (const nlohmann::json& c : manifest["cases"]) {
    if (!c.contains("expected")) continue;
    const std::string file = c["file"];
    absl::StatusOr<Image> image = ReadImage(file);
    ASSERT_TRUE(image.ok()) << image.status();
    const int rows = c["shape"][0], columns = c["shape"][1];
    ASSERT_EQ(image->height, rows) << file;
    ASSERT_EQ(image->width, columns) << file;
    std::vector<float> expected(rows * columns);
    std::ifstream(c["expected"].get<std::string>(), std::ios::binary)
        .read(reinterpret_cast<char*>(expected.data()),
              expected.size() * sizeof(float));
    float worst = 0;
    for (int y = 0; y < rows; ++y) {
      for (int x = 0; x < columns; ++x) {
        const float want = expected[y * columns + x];
        for (int ch = 0; ch < 3; ++ch) {
          const float got = image->at(ch, y, x);
          worst = std::max(worst, std::abs(got - want));
          ASSERT_NEAR(got, want, kDicomTolerance)
              << file << " at row " << y << ", column " << x << ", channel "
              << ch;
        }
      }
    }
    std::cout << c["name"].get<std::string>()
              << ": max abs difference vs pydicom " << worst << "\n";
    ++compared;
  }
  EXPECT_GE(compared, 7);
}

TEST(Dicom, RefusedFilesNameTheFileAndTheReason) {
  if (!DicomSupported()) GTEST_SKIP() << "this build has no DICOM support";
  const fs::path manifest_path = fs::path(DicomDir()) / "manifest.json";
  if (!fs::exists(manifest_path)) GTEST_SKIP() << manifest_path << " missing";
  const nlohmann::json manifest =
      nlohmann::json::parse(*ReadFileToString(manifest_path.string()));
  int refused = 0;
  for (const nlohmann::json& c : manifest["cases"]) {
    if (!c.contains("error")) continue;
    const std::string file = c["file"];
    absl::StatusOr<Image> image = ReadImage(file);
    ASSERT_FALSE(image.ok()) << file;
    EXPECT_THAT(image.status().message(), HasSubstr(file));
    EXPECT_THAT(image.status().message(),
                HasSubstr(c["error"].get<std::string>()));
    std::cout << image.status().message() << "\n";
    ++refused;
  }
  EXPECT_EQ(refused, 4);
}

TEST(Dicom, BuildWithoutDcmtkSaysSo) {
  if (DicomSupported()) GTEST_SKIP() << "this build reads DICOM";
  std::string bytes(128, '\0');
  bytes += "DICM";
  absl::StatusOr<Image> image = DecodeImage(bytes, "scan.dcm");
  ASSERT_FALSE(image.ok());
  EXPECT_THAT(image.status().message(),
              HasSubstr("scan.dcm: this build has no DICOM support"));
}

TEST(ImageFile, PngIsStillPngWhateverItsName) {
  const uint8_t pixels[4] = {0, 255, 128, 64};
  absl::StatusOr<std::string> png = EncodePng8(pixels, 2, 2, 1);
  ASSERT_TRUE(png.ok());
  absl::StatusOr<Image> image = DecodeImage(*png, "misnamed.dcm");
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_FLOAT_EQ(image->at(0, 0, 1), 1.0f);
  EXPECT_TRUE(HasImageExtension("a/B.DCM"));
  EXPECT_TRUE(HasImageExtension("x.png"));
  EXPECT_FALSE(HasImageExtension("notes.txt"));
}

}  // namespace
}  // namespace kolo::chexnet
