// Multi-rank test of kolo::torch::elastic::stop_requested: each rank has its
// own stop-file path (as each host has its own under kolorun), and a file
// present for one rank only stops every rank.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "kolo/torch.h"

namespace kolo {
namespace torch {
namespace elastic {
namespace {

namespace fs = std::filesystem;

TEST(ElasticStopRequested, AFileOnAnyRanksHostStopsEveryRank) {
  char pattern[] = "/tmp/kolo-elastic-test-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const fs::path dir(pattern);
  const fs::path stop_file = dir / ("stop.rank" + std::to_string(rank()));
  ASSERT_EQ(::setenv("KOLO_ELASTIC_STOP_FILE", stop_file.c_str(), 1), 0);
  ASSERT_TRUE(enabled());

  EXPECT_FALSE(stop_requested()) << "rank " << rank() << ": no file anywhere";
  // Only the last rank's host gets the file.
  if (rank() == size() - 1) std::ofstream(stop_file).put('\n');
  EXPECT_TRUE(stop_requested())
      << "rank " << rank() << ": the last rank's file exists";
  // Still true at the next boundary, and false once the file is gone.
  EXPECT_TRUE(stop_requested()) << "rank " << rank();
  fs::remove(stop_file);
  EXPECT_FALSE(stop_requested()) << "rank " << rank();

  ::unsetenv("KOLO_ELASTIC_STOP_FILE");
  EXPECT_FALSE(stop_requested()) << "not in elastic mode";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace elastic
}  // namespace torch
}  // namespace kolo
