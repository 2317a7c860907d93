// main() of the multi-rank LibTorch tests: every rank runs the same gtest
// sequence between one kolo init and one shutdown.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "kolo/torch.h"

namespace {

class KoloEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { kolo::torch::init(); }
  void TearDown() override { kolo::torch::shutdown(); }
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Ranks share two cores; one intra-op thread each.
  at::set_num_threads(1);
  ::testing::AddGlobalTestEnvironment(new KoloEnvironment);
  return RUN_ALL_TESTS();
}
