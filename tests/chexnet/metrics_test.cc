// Tests of AUROC, ROC curves, the reports (table, JSON, CSV) and the ROC plot.
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/png_io.h"
#include "examples/chexnet/data/random.h"
#include "examples/chexnet/metrics/auroc.h"
#include "examples/chexnet/metrics/bitmap_font.h"
#include "examples/chexnet/metrics/report.h"
#include "examples/chexnet/metrics/roc_plot.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo::chexnet {
namespace {

using ::testing::HasSubstr;

double AurocOf(std::vector<float> scores, std::vector<float> labels) {
  absl::StatusOr<double> auroc = Auroc(scores, labels);
  EXPECT_TRUE(auroc.ok()) << auroc.status();
  return auroc.ok() ? *auroc : -1.0;
}

TEST(Auroc, HandComputedValues) {
  // Pairs (positive, negative): (0.35, 0.1) right, (0.35, 0.4) wrong,
  // (0.8, 0.1) right, (0.8, 0.4) right: 3 of 4.
  EXPECT_DOUBLE_EQ(AurocOf({0.1f, 0.4f, 0.35f, 0.8f}, {0, 0, 1, 1}), 0.75);
  EXPECT_DOUBLE_EQ(AurocOf({0.1f, 0.2f, 0.3f}, {0, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(AurocOf({0.3f, 0.2f, 0.1f}, {0, 1, 1}), 0.0);
}

TEST(Auroc, TiesCountOneHalf) {
  // The positive at 0.5 ties both negatives (1/2 + 1/2); the positive at 0.9
  // beats both (2): U = 3 of 4 pairs.
  EXPECT_DOUBLE_EQ(AurocOf({0.5f, 0.5f, 0.5f, 0.9f}, {0, 1, 0, 1}), 0.75);
  // All scores equal: chance.
  EXPECT_DOUBLE_EQ(AurocOf({0.3f, 0.3f, 0.3f, 0.3f, 0.3f}, {1, 0, 0, 1, 0}),
                   0.5);
  // Mann-Whitney with average ranks: scores 1 1 2 2 2 3, positives at one of
  // the 1s, one of the 2s and the 3. Ranks: 1.5 1.5 4 4 4 6; R+ = 1.5+4+6 =
  // 11.5, U = 11.5 - 6 = 5.5, AUROC = 5.5 / 9.
  EXPECT_DOUBLE_EQ(AurocOf({1, 1, 2, 2, 2, 3}, {1, 0, 1, 0, 0, 1}), 5.5 / 9);
}

TEST(Auroc, UndefinedWithOneLabelValueIsNaN) {
  EXPECT_TRUE(std::isnan(AurocOf({0.1f, 0.9f}, {0, 0})));
  EXPECT_TRUE(std::isnan(AurocOf({0.1f, 0.9f}, {1, 1})));
  EXPECT_TRUE(std::isnan(AurocOf({}, {})));
}

TEST(Auroc, RejectsBadInput) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(Auroc(std::vector<float>{0.1f, nan}, std::vector<float>{0, 1})
                  .status()
                  .message(),
              HasSubstr("score 1 is nan"));
  EXPECT_THAT(Auroc(std::vector<float>{0.1f, 0.2f}, std::vector<float>{0, 0.5f})
                  .status()
                  .message(),
              HasSubstr("label 1 is 0.5"));
  EXPECT_FALSE(Auroc(std::vector<float>{0.1f}, std::vector<float>{0, 1}).ok());
}

TEST(RocCurve, PointsByHand) {
  auto roc = RocCurve(std::vector<float>{0.1f, 0.4f, 0.35f, 0.8f},
                      std::vector<float>{0, 0, 1, 1});
  ASSERT_TRUE(roc.ok()) << roc.status();
  const std::vector<std::array<double, 2>> expected = {
      {0, 0}, {0, 0.5}, {0.5, 0.5}, {0.5, 1}, {1, 1}};
  ASSERT_EQ(roc->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_DOUBLE_EQ((*roc)[i].false_positive_rate, expected[i][0]) << i;
    EXPECT_DOUBLE_EQ((*roc)[i].true_positive_rate, expected[i][1]) << i;
  }
  EXPECT_TRUE(std::isinf((*roc)[0].threshold));
  EXPECT_FLOAT_EQ((*roc)[1].threshold, 0.8f);
  EXPECT_FLOAT_EQ((*roc)[4].threshold, 0.1f);

  // Ties make one diagonal step.
  roc = RocCurve(std::vector<float>{0.5f, 0.5f}, std::vector<float>{0, 1});
  ASSERT_EQ(roc->size(), 2u);
  EXPECT_DOUBLE_EQ((*roc)[1].false_positive_rate, 1.0);
  EXPECT_DOUBLE_EQ((*roc)[1].true_positive_rate, 1.0);

  EXPECT_TRUE(
      RocCurve(std::vector<float>{0.5f}, std::vector<float>{1})->empty());
}

TEST(RocCurve, TrapezoidAreaEqualsAuroc) {
  const uint64_t seed = 31337;
  Rng rng(seed);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> scores(200), labels(200);
    for (size_t i = 0; i < scores.size(); ++i) {
      labels[i] = rng.Bernoulli(0.3) ? 1.0f : 0.0f;
      // Coarse scores so that ties are common.
      scores[i] = static_cast<float>(rng.UniformInt(10) + 3 * labels[i]) / 13;
    }
    auto roc = RocCurve(scores, labels);
    ASSERT_TRUE(roc.ok());
    double area = 0.0;
    for (size_t i = 1; i < roc->size(); ++i) {
      area +=
          ((*roc)[i].false_positive_rate - (*roc)[i - 1].false_positive_rate) *
          ((*roc)[i].true_positive_rate + (*roc)[i - 1].true_positive_rate) / 2;
    }
    EXPECT_NEAR(area, AurocOf(scores, labels), 1e-12)
        << "trial " << trial << " seed " << seed;
  }
}

// Six images: class c's scores rank positives perfectly for even c and
// inversely for odd c; Hernia (13) has no positive.
ChexnetMetrics SixImageMetrics() {
  constexpr int kRows = 6;
  std::vector<float> scores(kRows * kNumLabels), labels(kRows * kNumLabels);
  for (int row = 0; row < kRows; ++row) {
    for (int c = 0; c < kNumLabels; ++c) {
      const bool positive = c != 13 && row < 2;
      labels[row * kNumLabels + c] = positive ? 1.0f : 0.0f;
      const float rank = static_cast<float>(kRows - row) / kRows;
      scores[row * kNumLabels + c] = c % 2 == 0 ? rank : 1.0f - rank;
    }
  }
  absl::StatusOr<ChexnetMetrics> metrics =
      ComputeChexnetMetrics(scores, labels, kRows);
  EXPECT_TRUE(metrics.ok()) << metrics.status();
  return *metrics;
}

TEST(ComputeChexnetMetrics, PerClassAndMeanExcludingUndefined) {
  const ChexnetMetrics metrics = SixImageMetrics();
  EXPECT_EQ(metrics.num_images, 6);
  for (int c = 0; c < 13; ++c) {
    EXPECT_DOUBLE_EQ(metrics.classes[c].auroc, c % 2 == 0 ? 1.0 : 0.0)
        << kLabelNames[c];
    EXPECT_EQ(metrics.classes[c].positives, 2);
    EXPECT_EQ(metrics.classes[c].negatives, 4);
    EXPECT_FALSE(metrics.classes[c].roc.empty());
  }
  EXPECT_TRUE(std::isnan(metrics.classes[13].auroc));
  EXPECT_EQ(metrics.classes[13].positives, 0);
  EXPECT_TRUE(metrics.classes[13].roc.empty());
  EXPECT_EQ(metrics.num_defined, 13);
  // Seven perfect classes (0, 2, ..., 12) and six inverted ones.
  EXPECT_DOUBLE_EQ(metrics.mean_auroc, 7.0 / 13.0);
}

TEST(ComputeChexnetMetrics, ErrorsNameTheClassAndShape) {
  std::vector<float> scores(2 * kNumLabels, 0.5f), labels(2 * kNumLabels, 0);
  labels[kNumLabels + 4] = 2.0f;  // Row 1, Mass.
  auto metrics = ComputeChexnetMetrics(scores, labels, 2);
  ASSERT_FALSE(metrics.ok());
  EXPECT_THAT(metrics.status().message(),
              HasSubstr("class Mass (column 4): AUROC: label 1 is 2"));
  EXPECT_THAT(ComputeChexnetMetrics(scores, labels, 3).status().message(),
              HasSubstr("expected 3 x 14 = 42 scores and labels, got 28"));
  auto none = ComputeChexnetMetrics({}, {}, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->num_defined, 0);
  EXPECT_TRUE(std::isnan(none->mean_auroc));
}

TEST(Report, ReferenceNumbers) {
  EXPECT_DOUBLE_EQ(kChexnetPaper.per_class[0], 0.8094);
  EXPECT_DOUBLE_EQ(kChexnetPaper.per_class[13], 0.9164);
  EXPECT_DOUBLE_EQ(kChexnetPaper.mean, 0.841);
  EXPECT_DOUBLE_EQ(kWang2017.per_class[3], 0.609);
  EXPECT_DOUBLE_EQ(kWang2017.mean, 0.738);
}

TEST(Report, TableBesideThePublishedNumbers) {
  const std::string table = FormatAurocTable(SixImageMetrics());
  const std::vector<std::string> lines = absl::StrSplit(table, '\n');
  ASSERT_GE(lines.size(), 17u);
  EXPECT_THAT(lines[0], HasSubstr("CheXNet"));
  EXPECT_THAT(lines[0], HasSubstr("Wang2017"));
  EXPECT_EQ(lines[1],
            "Atelectasis            1.0000         2    0.8094     0.716");
  EXPECT_EQ(lines[2],
            "Cardiomegaly           0.0000         2    0.9248     0.807");
  EXPECT_EQ(lines[14],
            "Hernia                    n/a         0    0.9164     0.767");
  EXPECT_EQ(lines[15],
            "Mean (13 classes)      0.5385               0.841     0.738");
  EXPECT_THAT(lines[16], HasSubstr("Not in the mean"));
  EXPECT_THAT(lines[16], HasSubstr("among 6 images): Hernia"));
}

TEST(Report, JsonContent) {
  const nlohmann::json json = MetricsToJson(SixImageMetrics());
  EXPECT_EQ(json["num_images"], 6);
  EXPECT_DOUBLE_EQ(json["mean_auroc"].get<double>(), 7.0 / 13.0);
  EXPECT_EQ(json["num_classes_in_mean"], 13);
  EXPECT_EQ(json["classes_excluded_from_mean"],
            nlohmann::json::array({"Hernia"}));
  EXPECT_DOUBLE_EQ(json["reference_mean_auroc"]["chexnet_2017"].get<double>(),
                   0.841);
  ASSERT_EQ(json["classes"].size(), 14u);
  EXPECT_EQ(json["classes"][0]["name"], "Atelectasis");
  EXPECT_DOUBLE_EQ(json["classes"][0]["auroc"].get<double>(), 1.0);
  EXPECT_EQ(json["classes"][0]["positives"], 2);
  EXPECT_EQ(json["classes"][0]["negatives"], 4);
  EXPECT_DOUBLE_EQ(json["classes"][0]["chexnet_2017"].get<double>(), 0.8094);
  EXPECT_DOUBLE_EQ(json["classes"][0]["wang_2017"].get<double>(), 0.716);
  EXPECT_TRUE(json["classes"][13]["auroc"].is_null());

  // Written as a file it parses back to the same document.
  const std::string path =
      (std::filesystem::path(::testing::TempDir()) / "metrics.json").string();
  nlohmann::json with_run = json;
  with_run["epoch"] = 3;
  ASSERT_TRUE(WriteJsonFile(path, with_run).ok());
  EXPECT_EQ(nlohmann::json::parse(*ReadFileToString(path)), with_run);
}

TEST(Report, CsvContent) {
  const std::string csv = MetricsToCsv(SixImageMetrics());
  const std::vector<std::string> lines = absl::StrSplit(csv, '\n');
  ASSERT_EQ(lines.size(), 17u);  // Header, 14 classes, mean, "".
  EXPECT_EQ(lines[0], "class,auroc,positives,negatives,chexnet_2017,wang_2017");
  EXPECT_EQ(lines[1], "Atelectasis,1.000000,2,4,0.809400,0.716000");
  EXPECT_EQ(lines[2], "Cardiomegaly,0.000000,2,4,0.924800,0.807000");
  EXPECT_EQ(lines[14], "Hernia,nan,0,6,0.916400,0.767000");
  EXPECT_EQ(lines[15], "mean,0.538462,,,0.841000,0.738000");
  EXPECT_EQ(lines[16], "");
  const std::string path =
      (std::filesystem::path(::testing::TempDir()) / "metrics.csv").string();
  ASSERT_TRUE(WriteMetricsCsv(path, SixImageMetrics()).ok());
  EXPECT_EQ(*ReadFileToString(path), csv);
}

TEST(BitmapFont, GlyphsAndWidths) {
  // 'T': full top row, then the centre column.
  for (int x = 0; x < kGlyphWidth; ++x) EXPECT_TRUE(GlyphPixel('T', x, 0));
  EXPECT_TRUE(GlyphPixel('T', 2, 6));
  EXPECT_FALSE(GlyphPixel('T', 0, 6));
  // Lower case draws as upper case; unknown characters as '?'.
  for (int y = 0; y < kGlyphHeight; ++y) {
    for (int x = 0; x < kGlyphWidth; ++x) {
      EXPECT_EQ(GlyphPixel('e', x, y), GlyphPixel('E', x, y));
      EXPECT_EQ(GlyphPixel('~', x, y), GlyphPixel('?', x, y));
      EXPECT_FALSE(GlyphPixel(' ', x, y));
    }
  }
  EXPECT_EQ(TextWidth("", 1), 0);
  EXPECT_EQ(TextWidth("AB", 1), 11);
  EXPECT_EQ(TextWidth("AB", 2), 22);
}

// Pixels of exactly `color` inside the rectangle [x0, x1) x [y0, y1).
int CountColor(const Image& image, const std::array<uint8_t, 3>& color, int x0,
               int y0, int x1, int y1) {
  int count = 0;
  for (int y = y0; y < y1; ++y) {
    for (int x = x0; x < x1; ++x) {
      bool match = true;
      for (int c = 0; c < 3; ++c) {
        match = match && std::lround(image.at(c, y, x) * 255) == color[c];
      }
      count += match;
    }
  }
  return count;
}

TEST(RocPlot, PanelsInClassColours) {
  const ChexnetMetrics metrics = SixImageMetrics();
  RocPlotOptions options;
  options.panel_size = 150;
  auto png = RenderRocPlotPng(metrics, options);
  ASSERT_TRUE(png.ok()) << png.status();
  auto image = DecodePng(*png, "roc.png");
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->width, 600);
  ASSERT_EQ(image->height, 600 + kRocPlotTitleHeight);

  for (int c = 0; c < kNumLabels; ++c) {
    const int left = (c % 4) * 150;
    const int top = kRocPlotTitleHeight + (c / 4) * 150;
    // Below the title line, only the curve uses the class colour.
    const int curve_pixels = CountColor(*image, kClassColors[c], left, top + 16,
                                        left + 150, top + 150);
    if (c == 13) {
      EXPECT_EQ(curve_pixels, 0) << "undefined Hernia drew a curve";
    } else {
      // A perfect or inverted curve runs along two sides of the square.
      EXPECT_GT(curve_pixels, 200) << kLabelNames[c];
    }
    // The title is drawn in the class colour too.
    EXPECT_GT(
        CountColor(*image, kClassColors[c], left, top, left + 150, top + 16),
        20)
        << kLabelNames[c];
  }
  // The overlay panel draws every class in order, so the last perfect (12)
  // and the last inverted (11) curve are on top.
  for (int c : {11, 12}) {
    EXPECT_GT(CountColor(*image, kClassColors[c], 2 * 150,
                         kRocPlotTitleHeight + 3 * 150, 3 * 150,
                         kRocPlotTitleHeight + 4 * 150),
              100)
        << kLabelNames[c];
  }

  const std::string path =
      (std::filesystem::path(::testing::TempDir()) / "roc.png").string();
  ASSERT_TRUE(WriteRocPlot(path, metrics, options).ok());
  EXPECT_EQ(*ReadFileToString(path), *png);
  options.panel_size = 50;
  EXPECT_FALSE(RenderRocPlotPng(metrics, options).ok());
}

}  // namespace
}  // namespace kolo::chexnet
