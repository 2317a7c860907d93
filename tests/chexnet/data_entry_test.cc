// Tests of the NIH metadata parser, CSV splitting and the patient-level
// splits.
#include "examples/chexnet/data/data_entry.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "examples/chexnet/data/csv.h"
#include "examples/chexnet/data/labels.h"
#include "examples/chexnet/data/splits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo::chexnet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kHeader2017[] =
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,"
    "Patient Gender,View Position,OriginalImage[Width,Height],"
    "OriginalImagePixelSpacing[x,y],\n";
constexpr char kHeader2020[] =
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,"
    "Patient Gender,View Position,OriginalImage[Width,Height],"
    "OriginalImagePixelSpacing[x,y]\n";

LabelVector Labels(std::initializer_list<int> present) {
  LabelVector labels{};
  for (int i : present) labels[i] = 1.0f;
  return labels;
}

TEST(Labels, PaperOrder) {
  EXPECT_THAT(kLabelNames,
              ElementsAre("Atelectasis", "Cardiomegaly", "Effusion",
                          "Infiltration", "Mass", "Nodule", "Pneumonia",
                          "Pneumothorax", "Consolidation", "Edema", "Emphysema",
                          "Fibrosis", "Pleural_Thickening", "Hernia"));
  EXPECT_EQ(LabelIndex("Hernia"), 13);
  EXPECT_EQ(LabelIndex("hernia"), std::nullopt);
}

TEST(SplitCsvLine, QuotesCommasAndEmptyFields) {
  auto fields = SplitCsvLine(R"(a,"b,c","say ""hi""",,)");
  ASSERT_TRUE(fields.ok()) << fields.status();
  EXPECT_THAT(*fields, ElementsAre("a", "b,c", "say \"hi\"", "", ""));
  EXPECT_THAT(*SplitCsvLine(""), ElementsAre(""));
}

TEST(SplitCsvLine, RejectsBadQuoting) {
  EXPECT_THAT(SplitCsvLine(R"(a,"b)").status().message(),
              HasSubstr("unterminated quoted field starting at column 3"));
  EXPECT_THAT(SplitCsvLine(R"(a,"b"c)").status().message(),
              HasSubstr("after closing quote at column 6"));
  EXPECT_THAT(SplitCsvLine(R"(a,b"c)").status().message(),
              HasSubstr("quote inside an unquoted field at column 4"));
}

TEST(QuoteCsvField, RoundTrips) {
  EXPECT_EQ(QuoteCsvField("plain"), "plain");
  EXPECT_EQ(QuoteCsvField("a,\"b\""), "\"a,\"\"b\"\"\"");
  EXPECT_THAT(*SplitCsvLine(QuoteCsvField("a,\"b\"")), ElementsAre("a,\"b\""));
}

TEST(ParseFindingLabels, NamesNoFindingAndErrors) {
  EXPECT_EQ(*ParseFindingLabels("No Finding"), LabelVector{});
  EXPECT_EQ(*ParseFindingLabels("Cardiomegaly|Emphysema"), Labels({1, 10}));
  EXPECT_EQ(*ParseFindingLabels(" Hernia | Mass "), Labels({4, 13}));
  EXPECT_THAT(ParseFindingLabels("Cardiomegally").status().message(),
              HasSubstr("unknown label \"Cardiomegally\""));
  EXPECT_THAT(ParseFindingLabels("Mass|No Finding").status().message(),
              HasSubstr("\"No Finding\" combined with findings"));
  EXPECT_THAT(ParseFindingLabels("Mass||Edema").status().message(),
              HasSubstr("unknown label \"\""));
  EXPECT_FALSE(ParseFindingLabels("").ok());
  EXPECT_EQ(FormatFindingLabels(Labels({10, 1})), "Cardiomegaly|Emphysema");
  EXPECT_EQ(FormatFindingLabels(LabelVector{}), "No Finding");
}

TEST(ParseDataEntryCsv, Header2017WithTrailingCommas) {
  const std::string csv =
      std::string(kHeader2017) +
      "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,\n"
      "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,"
      "0.14300000000000002,0.14300000000000002,\n"
      "00000002_000.png,No Finding,0,2,81,F,AP,2500,2048,0.171,0.171\n";
  auto entries = ParseDataEntryCsv(csv, "Data_Entry_2017.csv");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 3u);
  const DataEntry& e = (*entries)[1];
  EXPECT_EQ(e.image_index, "00000001_001.png");
  EXPECT_EQ(e.labels, Labels({1, 10}));
  EXPECT_EQ(e.follow_up, 1);
  EXPECT_EQ(e.patient_id, 1);
  EXPECT_EQ(e.patient_age, 58);
  EXPECT_EQ(e.patient_gender, "M");
  EXPECT_EQ(e.view_position, "PA");
  EXPECT_EQ((*entries)[2].labels, LabelVector{});
  EXPECT_EQ((*entries)[2].patient_id, 2);
  EXPECT_EQ((*entries)[2].view_position, "AP");
}

TEST(ParseDataEntryCsv, Header2020QuotedFieldsCrlfBomAndSexSpelling) {
  const std::string csv =
      "\xEF\xBB\xBF"
      "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,"
      "Patient Sex,View Position,\"OriginalImage[Width,Height]\","
      "\"OriginalImagePixelSpacing[x,y]\"\r\n"
      "\"00000003_000.png\",\"Hernia|Mass\",0,\"3\",074Y,F,PA,\"2500,2048\","
      "\"0.168,0.168\"\r\n"
      "\r\n"
      "00000004_002.png,Pleural_Thickening,2,4,40,M,PA,2500,2048\r\n";
  auto entries = ParseDataEntryCsv(csv, "Data_Entry_2017_v2020.csv");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].image_index, "00000003_000.png");
  EXPECT_EQ((*entries)[0].labels, Labels({4, 13}));
  EXPECT_EQ((*entries)[0].patient_id, 3);
  EXPECT_EQ((*entries)[0].patient_age, 74);
  EXPECT_EQ((*entries)[0].patient_gender, "F");
  EXPECT_EQ((*entries)[1].labels, Labels({12}));
  EXPECT_EQ((*entries)[1].follow_up, 2);
}

TEST(ParseDataEntryCsv, V2020HeaderFromTheRealFile) {
  const std::string csv = std::string(kHeader2020) +
                          "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,"
                          "0.14300000000000002,0.14300000000000002\n";
  auto entries = ParseDataEntryCsv(csv, "v2020.csv");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].labels, Labels({1}));
  EXPECT_EQ((*entries)[0].patient_age, 57);
}

TEST(ParseDataEntryCsv, ErrorsNameFileAndLine) {
  struct Case {
    std::string row;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"00000001_000.png,Pneumonnia,0,1,58,M,PA,1,1,0.1,0.1,",
       "bad.csv:3: unknown label \"Pneumonnia\""},
      {"00000001_000.png,Mass,0,1,58,M,PA",
       "bad.csv:3: expected 11 fields, found 7"},
      {"00000001_000.png,Mass,0,1,58,M,PA,1,1,0.1,0.1,extra",
       "bad.csv:3: expected 11 fields, found 12"},
      {"00000001_000.png,Mass,0,P1,58,M,PA,1,1,0.1,0.1,",
       "bad.csv:3: \"Patient ID\" is not an integer: \"P1\""},
      {"00000001_000.png,Mass,x,1,58,M,PA,1,1,0.1,0.1,",
       "bad.csv:3: \"Follow-up #\" is not an integer"},
      {"00000001_000.png,Mass,0,1,old,M,PA,1,1,0.1,0.1,",
       "bad.csv:3: \"Patient Age\" is not an age: \"old\""},
      {",Mass,0,1,58,M,PA,1,1,0.1,0.1,", "bad.csv:3: empty \"Image Index\""},
      {"\"00000001_000.png,Mass,0,1,58,M,PA,1,1,0.1,0.1,",
       "bad.csv:3: unterminated quoted field"},
      {"00000009_000.png,Mass,0,9,58,M,PA,1,1,0.1,0.1,",
       "bad.csv:3: image \"00000009_000.png\" already listed on line 2"},
  };
  for (const Case& c : cases) {
    const std::string csv =
        std::string(kHeader2017) +
        "00000009_000.png,Edema,0,9,30,F,PA,1,1,0.1,0.1,\n" + c.row + "\n";
    auto entries = ParseDataEntryCsv(csv, "bad.csv");
    ASSERT_FALSE(entries.ok()) << "row accepted: " << c.row;
    EXPECT_EQ(entries.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(entries.status().message(), HasSubstr(c.expected))
        << "row: " << c.row;
  }
}

TEST(ParseDataEntryCsv, ImageIndexMustBeAFileNameInTheImagesFolder) {
  struct Case {
    std::string name;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"/dev/zero", "\"Image Index\" \"/dev/zero\" is an absolute path"},
      {"../../etc/passwd", "\"../../etc/passwd\" contains a path separator"},
      {"images/00000001_000.png", "contains a path separator"},
      {"..\\x.png", "contains a path separator"},
      {"..", "\"..\" is a directory"},
      {".", "\".\" is a directory"},
      {"\"a\tb.png\"", "\"a\\tb.png\" contains a control character"},
  };
  for (const Case& c : cases) {
    const std::string csv =
        std::string(kHeader2017) + c.name + ",Mass,0,1,58,M,PA,1,1,0.1,0.1,\n";
    auto entries = ParseDataEntryCsv(csv, "bad.csv");
    ASSERT_FALSE(entries.ok()) << "image index accepted: " << c.name;
    EXPECT_EQ(entries.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(entries.status().message(), HasSubstr("bad.csv:2: "));
    EXPECT_THAT(entries.status().message(), HasSubstr(c.expected));
    EXPECT_THAT(entries.status().message(),
                HasSubstr("must be a file name inside the images folder"));
  }
  EXPECT_TRUE(CheckImageFileName("00000001_000.png").ok());
  EXPECT_TRUE(CheckImageFileName("..png").ok());
}

TEST(ParseDataEntryCsv, RejectsHeaderWithoutRequiredColumns) {
  auto entries = ParseDataEntryCsv("Image,Labels\na.png,Mass\n", "other.csv");
  ASSERT_FALSE(entries.ok());
  EXPECT_THAT(entries.status().message(),
              HasSubstr("other.csv:1: header lacks column \"Image Index\", "
                        "\"Finding Labels\", \"Patient ID\""));
  EXPECT_THAT(ParseDataEntryCsv("", "empty.csv").status().message(),
              HasSubstr("empty.csv: empty file"));
}

TEST(ReadDataEntryCsv, MissingFileIsNotFound) {
  auto entries = ReadDataEntryCsv("/nonexistent/Data_Entry_2017.csv");
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(entries.status().message(),
              HasSubstr("/nonexistent/Data_Entry_2017.csv: cannot open"));
}

std::vector<DataEntry> ManyPatients(int patients, int images_each) {
  std::vector<DataEntry> entries;
  for (int p = 1; p <= patients; ++p) {
    for (int f = 0; f < images_each + p % 3; ++f) {
      DataEntry e;
      e.image_index = std::to_string(p) + "_" + std::to_string(f) + ".png";
      e.patient_id = p;
      e.follow_up = f;
      entries.push_back(e);
    }
  }
  return entries;
}

std::set<int64_t> PatientsOf(const std::vector<DataEntry>& entries) {
  std::set<int64_t> patients;
  for (const DataEntry& e : entries) patients.insert(e.patient_id);
  return patients;
}

TEST(SplitByPatient, NoPatientOnBothSidesAndFractionOfPatients) {
  const std::vector<DataEntry> entries = ManyPatients(200, 2);
  const PatientSplit split = SplitByPatient(entries, 0.1, 42);
  EXPECT_EQ(split.train.size() + split.validation.size(), entries.size());
  const std::set<int64_t> train = PatientsOf(split.train);
  const std::set<int64_t> validation = PatientsOf(split.validation);
  EXPECT_EQ(validation.size(), 20u);
  EXPECT_EQ(train.size(), 180u);
  for (int64_t p : validation) {
    EXPECT_EQ(train.count(p), 0u) << "patient " << p << " on both sides";
  }
  // Input order is kept on each side.
  for (size_t i = 1; i < split.train.size(); ++i) {
    EXPECT_LT(
        split.train[i - 1].patient_id * 100 + split.train[i - 1].follow_up,
        split.train[i].patient_id * 100 + split.train[i].follow_up);
  }
}

TEST(SplitByPatient, DeterministicBySeed) {
  const std::vector<DataEntry> entries = ManyPatients(100, 3);
  const std::set<int64_t> a =
      PatientsOf(SplitByPatient(entries, 0.2, 7).validation);
  const std::set<int64_t> b =
      PatientsOf(SplitByPatient(entries, 0.2, 7).validation);
  const std::set<int64_t> c =
      PatientsOf(SplitByPatient(entries, 0.2, 8).validation);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // The split does not depend on the order of the entries.
  std::vector<DataEntry> reversed(entries.rbegin(), entries.rend());
  EXPECT_EQ(PatientsOf(SplitByPatient(reversed, 0.2, 7).validation), a);
}

TEST(SplitByPatient, EdgeFractions) {
  const std::vector<DataEntry> entries = ManyPatients(3, 1);
  EXPECT_TRUE(SplitByPatient(entries, 0.0, 1).validation.empty());
  EXPECT_TRUE(SplitByPatient(entries, 1.0, 1).train.empty());
  // A tiny fraction still validates on one patient; a large one keeps one
  // patient for training.
  EXPECT_EQ(PatientsOf(SplitByPatient(entries, 0.01, 1).validation).size(), 1u);
  EXPECT_EQ(PatientsOf(SplitByPatient(entries, 0.99, 1).train).size(), 1u);
}

class NihLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::path(::testing::TempDir()) /
        ("nih_layout_" +
         std::string(
             ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void Write(const std::string& name, const std::string& contents) {
    std::ofstream(dir_ / name, std::ios::binary) << contents;
  }
  // Patients 1-10 with two images each; odd patients have a Mass.
  std::string Csv() {
    std::string csv = kHeader2017;
    for (int p = 1; p <= 10; ++p) {
      for (int f = 0; f < 2; ++f) {
        absl::StrAppendFormat(&csv,
                              "%08d_%03d.png,%s,%d,%d,50,M,PA,1,1,0.1,0.1,\n",
                              p, f, p % 2 ? "Mass" : "No Finding", f, p);
      }
    }
    return csv;
  }
  std::filesystem::path dir_;
};

TEST_F(NihLayoutTest, LoadsOfficialListsAndSplitsValidationByPatient) {
  Write("Data_Entry_2017.csv", Csv());
  Write("train_val_list.txt",
        "00000001_000.png\n00000001_001.png\n00000002_000.png\n"
        "00000002_001.png\n00000003_000.png\n00000003_001.png\n"
        "00000004_000.png\n00000004_001.png\n");
  Write("test_list.txt", "00000005_000.png\r\n00000005_001.png\r\n\r\n");
  SplitOptions options;
  options.validation_fraction = 0.25;
  options.seed = 3;
  auto splits = LoadNihSplits(dir_.string(), options);
  ASSERT_TRUE(splits.ok()) << splits.status();
  EXPECT_EQ(splits->metadata_csv, (dir_ / "Data_Entry_2017.csv").string());
  EXPECT_EQ(splits->test.size(), 2u);
  EXPECT_EQ(splits->test[0].image_index, "00000005_000.png");
  EXPECT_EQ(splits->train.size(), 6u);
  EXPECT_EQ(splits->validation.size(), 2u);
  EXPECT_EQ(PatientsOf(splits->validation).size(), 1u);
  EXPECT_EQ(PatientsOf(splits->validation).count(5), 0u);
  EXPECT_EQ(splits->train[0].labels, Labels({4}));
}

TEST_F(NihLayoutTest, PrefersV2020Metadata) {
  Write("Data_Entry_2017.csv", Csv());
  std::string v2020 = Csv();
  v2020.replace(0, std::string(kHeader2017).size(), kHeader2020);
  Write("Data_Entry_2017_v2020.csv", v2020);
  Write("train_val_list.txt", "00000001_000.png\n");
  Write("test_list.txt", "");
  auto splits = LoadNihSplits(dir_.string(), SplitOptions());
  ASSERT_TRUE(splits.ok()) << splits.status();
  EXPECT_EQ(splits->metadata_csv,
            (dir_ / "Data_Entry_2017_v2020.csv").string());
}

TEST_F(NihLayoutTest, ErrorsNameListFileAndLine) {
  Write("Data_Entry_2017.csv", Csv());
  Write("train_val_list.txt", "00000001_000.png\n00000077_000.png\n");
  Write("test_list.txt", "");
  auto splits = LoadNihSplits(dir_.string(), SplitOptions());
  ASSERT_FALSE(splits.ok());
  EXPECT_THAT(splits.status().message(),
              HasSubstr("train_val_list.txt:2: image \"00000077_000.png\" is "
                        "not in "));

  Write("train_val_list.txt", "00000001_000.png\n");
  Write("test_list.txt", "00000002_000.png\n00000001_000.png\n");
  splits = LoadNihSplits(dir_.string(), SplitOptions());
  ASSERT_FALSE(splits.ok());
  EXPECT_THAT(splits.status().message(),
              HasSubstr("test_list.txt:2: image \"00000001_000.png\" is also "
                        "listed in train_val_list.txt"));

  std::filesystem::remove(dir_ / "test_list.txt");
  splits = LoadNihSplits(dir_.string(), SplitOptions());
  EXPECT_EQ(splits.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(splits.status().message(), HasSubstr("test_list.txt"));
}

}  // namespace
}  // namespace kolo::chexnet
