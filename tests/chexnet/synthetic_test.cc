// Tests of chexnet_make_synthetic's library: the NIH layout, determinism,
// the class imbalance and the patient-level split.
#include "examples/chexnet/data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "examples/chexnet/data/data_entry.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/png_io.h"
#include "examples/chexnet/data/splits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo::chexnet {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string TempDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / name;
  fs::remove_all(dir);
  return dir.string();
}

SyntheticSummary Generate(const std::string& dir, int images, int size,
                          uint64_t seed) {
  SyntheticOptions options;
  options.out_dir = dir;
  options.num_images = images;
  options.image_size = size;
  options.seed = seed;
  absl::StatusOr<SyntheticSummary> summary = GenerateSyntheticDataset(options);
  EXPECT_TRUE(summary.ok()) << summary.status();
  return summary.ok() ? *summary : SyntheticSummary();
}

// Every file under `dir` (relative path -> contents).
std::map<std::string, std::string> ReadTree(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    files[fs::relative(entry.path(), dir).string()] =
        *ReadFileToString(entry.path().string());
  }
  return files;
}

std::vector<std::string> Lines(const std::string& contents) {
  std::vector<std::string> lines = absl::StrSplit(contents, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

TEST(SyntheticDataset, WritesTheNihLayout) {
  const std::string dir = TempDir("synthetic_layout");
  const SyntheticSummary summary = Generate(dir, 120, 48, 5);
  EXPECT_EQ(summary.num_images, 120);

  const std::string csv_2017 = *ReadFileToString(dir + "/Data_Entry_2017.csv");
  const std::string csv_2020 =
      *ReadFileToString(dir + "/Data_Entry_2017_v2020.csv");
  EXPECT_THAT(csv_2017,
              StartsWith("Image Index,Finding Labels,Follow-up #,Patient ID,"
                         "Patient Age,Patient Gender,View Position,"
                         "OriginalImage[Width,Height],"
                         "OriginalImagePixelSpacing[x,y],\n"));
  EXPECT_THAT(csv_2020,
              StartsWith("Image Index,Finding Labels,Follow-up #,Patient ID,"
                         "Patient Age,Patient Gender,View Position,"
                         "OriginalImage[Width,Height],"
                         "OriginalImagePixelSpacing[x,y]\n"));
  const std::vector<std::string> rows_2017 = Lines(csv_2017);
  const std::vector<std::string> rows_2020 = Lines(csv_2020);
  ASSERT_EQ(rows_2017.size(), 121u);
  ASSERT_EQ(rows_2020.size(), 121u);
  for (size_t i = 1; i < rows_2017.size(); ++i) {
    // The 2017 rows carry the empty twelfth column; otherwise identical.
    EXPECT_EQ(rows_2017[i], rows_2020[i] + ",") << "row " << i;
  }

  auto entries_2017 = ReadDataEntryCsv(dir + "/Data_Entry_2017.csv");
  auto entries_2020 = ReadDataEntryCsv(dir + "/Data_Entry_2017_v2020.csv");
  ASSERT_TRUE(entries_2017.ok()) << entries_2017.status();
  ASSERT_TRUE(entries_2020.ok()) << entries_2020.status();
  ASSERT_EQ(entries_2017->size(), 120u);

  const std::regex name_pattern(R"(\d{8}_\d{3}\.png)");
  std::map<int64_t, int> images_per_patient;
  for (size_t i = 0; i < entries_2017->size(); ++i) {
    const DataEntry& e = (*entries_2017)[i];
    EXPECT_EQ(e.image_index, (*entries_2020)[i].image_index);
    EXPECT_EQ(e.labels, (*entries_2020)[i].labels);
    EXPECT_TRUE(std::regex_match(e.image_index, name_pattern)) << e.image_index;
    EXPECT_EQ(std::stoll(e.image_index.substr(0, 8)), e.patient_id);
    EXPECT_EQ(std::stoi(e.image_index.substr(9, 3)), e.follow_up);
    EXPECT_GE(e.patient_age, 1);
    EXPECT_TRUE(e.patient_gender == "M" || e.patient_gender == "F");
    EXPECT_TRUE(e.view_position == "PA" || e.view_position == "AP");
    ++images_per_patient[e.patient_id];
    auto image = ReadPng(dir + "/images/" + e.image_index);
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->width, 48);
    EXPECT_EQ(image->height, 48);
    // Grayscale: all three decoded channels are equal.
    EXPECT_EQ(image->at(0, 24, 10), image->at(2, 24, 10));
  }
  EXPECT_EQ(static_cast<int>(images_per_patient.size()), summary.num_patients);
  EXPECT_GE(120.0 / summary.num_patients, 2.0) << "several images per patient";
  EXPECT_EQ(std::distance(fs::directory_iterator(dir + "/images"),
                          fs::directory_iterator()),
            120);

  // Official-style lists: sorted, disjoint, covering everything, ~80/20 by
  // patient.
  const std::vector<std::string> train_val =
      Lines(*ReadFileToString(dir + "/train_val_list.txt"));
  const std::vector<std::string> test =
      Lines(*ReadFileToString(dir + "/test_list.txt"));
  EXPECT_TRUE(std::is_sorted(train_val.begin(), train_val.end()));
  EXPECT_TRUE(std::is_sorted(test.begin(), test.end()));
  EXPECT_EQ(train_val.size() + test.size(), 120u);
  EXPECT_EQ(static_cast<int>(test.size()), summary.num_test);
  EXPECT_GE(test.size(), 20u);
  EXPECT_LE(test.size(), 36u);
  std::set<std::string> test_patients;
  for (const std::string& name : test) test_patients.insert(name.substr(0, 8));
  for (const std::string& name : train_val) {
    EXPECT_EQ(test_patients.count(name.substr(0, 8)), 0u)
        << "patient of " << name << " is in both lists";
  }
}

TEST(SyntheticDataset, SameSeedSameBytesDifferentSeedDifferentBytes) {
  const std::string a = TempDir("synthetic_seed_a");
  const std::string b = TempDir("synthetic_seed_b");
  const std::string c = TempDir("synthetic_seed_c");
  Generate(a, 60, 40, 11);
  Generate(b, 60, 40, 11);
  Generate(c, 60, 40, 12);
  const auto tree_a = ReadTree(a);
  const auto tree_b = ReadTree(b);
  const auto tree_c = ReadTree(c);
  ASSERT_EQ(tree_a.size(), 65u);  // 60 images, 2 CSVs, 2 lists, boxes.
  EXPECT_TRUE(tree_a == tree_b) << "same seed gave different files";
  int differing = 0;
  for (const auto& [name, contents] : tree_a) {
    auto it = tree_c.find(name);
    if (it == tree_c.end() || it->second != contents) ++differing;
  }
  EXPECT_GT(differing, 55) << "a different seed left most files unchanged";
  EXPECT_NE(tree_a.at("Data_Entry_2017.csv"), tree_c.at("Data_Entry_2017.csv"));
}

TEST(SyntheticDataset, RealSetImbalanceAndEveryClassInTheTestSplit) {
  const std::string dir = TempDir("synthetic_imbalance");
  const SyntheticSummary summary = Generate(dir, 1500, 32, 3);
  const double no_finding = static_cast<double>(summary.num_no_finding) / 1500;
  EXPECT_GT(no_finding, 0.5);
  EXPECT_LT(no_finding, 0.6);
  // Infiltration is the most frequent finding, Effusion and Atelectasis next,
  // and the rarest classes are floored at about 1%.
  for (int c = 0; c < kNumLabels; ++c) {
    if (c != 3) {
      EXPECT_GT(summary.positives[3], summary.positives[c]) << kLabelNames[c];
    }
    const double expected = std::max(kRealPrevalence[c], kMinPrevalence) * 1500;
    EXPECT_NEAR(summary.positives[c], expected, 4 * std::sqrt(expected) + 4)
        << kLabelNames[c];
    EXPECT_GE(summary.test_positives[c], kMinPositivesPerSplit)
        << kLabelNames[c];
  }
  // The summary agrees with the files.
  auto splits = LoadNihSplits(dir, SplitOptions());
  ASSERT_TRUE(splits.ok()) << splits.status();
  EXPECT_EQ(static_cast<int>(splits->test.size()), summary.num_test);
  EXPECT_EQ(static_cast<int>(splits->train.size() + splits->validation.size()),
            summary.num_train_val);
  for (int c = 0; c < kNumLabels; ++c) {
    int test_positives = 0;
    for (const DataEntry& e : splits->test) test_positives += e.labels[c] != 0;
    EXPECT_EQ(test_positives, summary.test_positives[c]) << kLabelNames[c];
  }
}

TEST(SyntheticDataset, SmallSetsStillCoverEveryClass) {
  const std::string dir = TempDir("synthetic_small");
  const SyntheticSummary summary = Generate(dir, 100, 32, 9);
  for (int c = 0; c < kNumLabels; ++c) {
    EXPECT_GE(summary.test_positives[c], kMinPositivesPerSplit)
        << kLabelNames[c];
    EXPECT_GE(summary.positives[c] - summary.test_positives[c],
              kMinPositivesPerSplit)
        << kLabelNames[c];
  }
  EXPECT_GT(summary.num_no_finding, 0);
}

TEST(SyntheticDataset, RejectsBadOptions) {
  SyntheticOptions options;
  options.out_dir = TempDir("synthetic_bad");
  options.num_images = 0;
  EXPECT_THAT(GenerateSyntheticDataset(options).status().message(),
              HasSubstr("--images"));
  options.num_images = 10;
  options.image_size = 16;
  EXPECT_THAT(GenerateSyntheticDataset(options).status().message(),
              HasSubstr("--size"));
  options.image_size = 64;
  options.out_dir = "/proc/forbidden/out";
  EXPECT_THAT(GenerateSyntheticDataset(options).status().message(),
              HasSubstr("/proc/forbidden/out/images"));
}

// Renders the same scene with and without each finding.
TEST(RenderSyntheticImage, EachFindingVisiblyChangesTheImage) {
  constexpr int kSize = 64;
  for (int c = 0; c < kNumLabels; ++c) {
    LabelVector with{};
    with[c] = 1.0f;
    const std::vector<uint8_t> normal =
        RenderSyntheticImage(LabelVector{}, kSize, 100 + c);
    const std::vector<uint8_t> abnormal =
        RenderSyntheticImage(with, kSize, 100 + c);
    int changed = 0;
    for (int i = 0; i < kSize * kSize; ++i) {
      changed += std::abs(normal[i] - abnormal[i]) > 40;
    }
    // Some pixels (the thinnest finding, Atelectasis's plate, covers ~0.4%
    // of the image) change by more than four times the noise.
    EXPECT_GE(changed, 12) << kLabelNames[c] << " is not visible";
  }
  // Deterministic per seed.
  EXPECT_EQ(RenderSyntheticImage(LabelVector{}, 32, 1),
            RenderSyntheticImage(LabelVector{}, 32, 1));
  EXPECT_NE(RenderSyntheticImage(LabelVector{}, 32, 1),
            RenderSyntheticImage(LabelVector{}, 32, 2));
}

}  // namespace
}  // namespace kolo::chexnet
