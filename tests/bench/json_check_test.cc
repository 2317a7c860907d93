// Checks the JSON that a kolo_bench smoke run wrote (path in argv[1]): it
// parses, it holds a row for every collective, and every measured column
// ran without error and matched the reference.
#include <fstream>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace {

std::string g_json_path;

nlohmann::json Load() {
  std::ifstream file(g_json_path);
  EXPECT_TRUE(file.good()) << "cannot open " << g_json_path;
  return nlohmann::json::parse(file);
}

TEST(KoloBenchJson, Parses) {
  nlohmann::json json;
  ASSERT_NO_THROW(json = Load());
  EXPECT_EQ(json.at("tool"), "kolo_bench");
  EXPECT_EQ(json.at("ranks"), 2);
  EXPECT_EQ(json.at("exit_code"), 0);
}

TEST(KoloBenchJson, EveryCollectiveHasKoloRows) {
  const nlohmann::json json = Load();
  std::set<std::string> collectives;
  for (const nlohmann::json& row : json.at("rows")) {
    if (row.at("implementation") == "kolo") {
      collectives.insert(row.at("collective").get<std::string>());
    }
  }
  EXPECT_EQ(collectives,
            (std::set<std::string>{"allreduce", "allgather", "broadcast",
                                   "reducescatter", "alltoall"}));
}

TEST(KoloBenchJson, EveryMeasuredColumnIsRight) {
  const nlohmann::json json = Load();
  ASSERT_FALSE(json.at("rows").empty());
  int checked = 0;
  for (const nlohmann::json& row : json.at("rows")) {
    const std::string where =
        row.at("implementation").get<std::string>() + " " +
        row.at("collective").get<std::string>() + " " +
        std::to_string(row.at("size_bytes").get<int64_t>()) + " bytes";
    for (const char* placement : {"out_of_place", "in_place"}) {
      const nlohmann::json& m = row.at(placement);
      if (m.is_null()) continue;
      EXPECT_FALSE(m.contains("error"))
          << where << " " << placement << ": " << m.dump();
      if (row.at("implementation") == "membound") continue;
      ASSERT_TRUE(m.at("wrong").is_number()) << where << " " << placement;
      EXPECT_EQ(m.at("wrong").get<int64_t>(), 0) << where << " " << placement;
      EXPECT_GT(m.at("time_us").get<double>(), 0) << where << " " << placement;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
  EXPECT_EQ(json.at("wrong_total"), 0);
  EXPECT_EQ(json.at("failed_operations"), 0);
}

TEST(KoloBenchJson, TargetsAreReportedAsMeasuredOrNot) {
  const nlohmann::json json = Load();
  ASSERT_FALSE(json.at("targets").empty());
  for (const nlohmann::json& target : json.at("targets")) {
    if (target.at("measured").get<bool>()) {
      EXPECT_TRUE(target.at("value").is_number()) << target.dump();
      EXPECT_TRUE(target.at("pass").is_boolean()) << target.dump();
    } else {
      EXPECT_TRUE(target.at("value").is_null()) << target.dump();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s KOLO_BENCH_JSON\n", argv[0]);
    return 2;
  }
  g_json_path = argv[1];
  return RUN_ALL_TESTS();
}
