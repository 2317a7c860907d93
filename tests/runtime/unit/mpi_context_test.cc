// MpiContext's checks that need no running MPI: the launcher/MPI mismatch
// check (with posed launcher variables) and the names of the MPI library
// and thread levels.
#include "runtime/common/mpi_context.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace kolo {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

Status Check(int world_size, const std::map<std::string, std::string>& env) {
  return CheckLauncherMatchesMpi(world_size, [&env](const char* name) {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(LauncherCheck, AloneUnderAnotherMpisLauncherIsAnError) {
  Status s = Check(1, {{"OMPI_COMM_WORLD_SIZE", "4"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("alone in MPI_COMM_WORLD, but Open MPI's mpirun "
                        "started 4 of them (OMPI_COMM_WORLD_SIZE=4)"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(MpiLibraryName()));

  s = Check(1, {{"PMI_SIZE", "2"}, {"PMI_RANK", "1"}});
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("a PMI launcher (MPICH's mpiexec/Hydra, or srun "
                        "--mpi=pmi2) started 2 of them (PMI_SIZE=2)"));

  s = Check(1, {{"SLURM_STEP_NUM_TASKS", "3"}, {"SLURM_NTASKS", "3"}});
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("srun started 3 of them (SLURM_STEP_NUM_TASKS=3)"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("srun --mpi=pmix"));
}

TEST(LauncherCheck, TheProcesssOwnLauncherIsBelievedBeforeSlurm) {
  // mpirun inside an srun step of 2 tasks, starting 1 rank: fine.
  EXPECT_TRUE(
      Check(1, {{"OMPI_COMM_WORLD_SIZE", "1"}, {"SLURM_STEP_NUM_TASKS", "2"}})
          .ok());
  EXPECT_TRUE(
      Check(1, {{"PMI_SIZE", "1"}, {"SLURM_STEP_NUM_TASKS", "2"}}).ok());
}

TEST(LauncherCheck, MatchingOrAbsentLaunchersPass) {
  EXPECT_TRUE(Check(4, {{"OMPI_COMM_WORLD_SIZE", "4"}}).ok());
  EXPECT_TRUE(Check(2, {{"PMI_SIZE", "2"}}).ok());
  EXPECT_TRUE(Check(1, {}).ok());  // a singleton started by hand
  EXPECT_TRUE(Check(1, {{"PMI_SIZE", "1"}}).ok());
  // The batch script of an sbatch job sees SLURM_NTASKS but is no step.
  EXPECT_TRUE(Check(1, {{"SLURM_NTASKS", "4"}, {"SLURM_PROCID", "0"}}).ok());
  EXPECT_TRUE(Check(1, {{"PMI_SIZE", ""}}).ok());
  EXPECT_TRUE(Check(1, {{"PMI_SIZE", "many"}}).ok());
}

TEST(MpiNames, LibraryAndThreadLevels) {
  EXPECT_THAT(MpiLibraryName(),
              AnyOf(StartsWith("Open MPI 4"), StartsWith("MPICH 4")));
  EXPECT_THAT(MpiLibraryName(), Not(HasSubstr("\n")));
  EXPECT_STREQ(ThreadLevelName(MPI_THREAD_SINGLE), "MPI_THREAD_SINGLE");
  EXPECT_STREQ(ThreadLevelName(MPI_THREAD_FUNNELED), "MPI_THREAD_FUNNELED");
  EXPECT_STREQ(ThreadLevelName(MPI_THREAD_SERIALIZED), "MPI_THREAD_SERIALIZED");
  EXPECT_STREQ(ThreadLevelName(MPI_THREAD_MULTIPLE), "MPI_THREAD_MULTIPLE");
}

}  // namespace
}  // namespace kolo
