// The rank monitor's report and announcement lines, and how kolorun finds
// them in tagged launcher output.
#include "rank_monitor.h"

#include <signal.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "job_runner.h"
#include "machine_facts.h"

namespace kolo {
namespace launcher {
namespace {

TEST(RankMonitor, TakesTheRankFromWhicheverProcessManagerSetIt) {
  EXPECT_EQ(
      RankFromEnvironment({{"OMPI_COMM_WORLD_RANK", "3"}, {"PMIX_RANK", "9"}}),
      "3");
  EXPECT_EQ(RankFromEnvironment({{"PMI_RANK", "5"}}), "5");
  EXPECT_EQ(RankFromEnvironment({{"PMIX_RANK", "6"}}), "6");
  EXPECT_EQ(RankFromEnvironment({{"SLURM_PROCID", "7"}}), "7");
  EXPECT_EQ(RankFromEnvironment({{"OMPI_COMM_WORLD_RANK", ""}}), "?");
  EXPECT_EQ(RankFromEnvironment({}), "?");
}

TEST(RankMonitor, ReportsAreFoundBehindRankTags) {
  const std::string exit_line = FormatRankExit("2", "kB", 3);
  EXPECT_EQ(exit_line, "kolorun: rank 2 on host kB exited with status 3");
  EXPECT_EQ(FindRankReport("[1,2]<stderr>:" + exit_line + "\n"),
            "rank 2 on host kB exited with status 3");
  EXPECT_EQ(FindRankReport("2: " + exit_line),
            "rank 2 on host kB exited with "
            "status 3");  // srun --label
  const std::string signal_line = FormatRankSignal("0", "n1", 9);
  EXPECT_EQ(FindRankReport("[0] " + signal_line),
            "rank 0 on host n1 was killed by signal 9 (Killed)");
  EXPECT_EQ(FindRankReport(RankReportPrefix("1", "h") + "cannot run 'x'"),
            "rank 1 on host h: cannot run 'x'");
  EXPECT_EQ(FindRankReport("[1,0]<stderr>:an ordinary error line"),
            std::nullopt);
  EXPECT_EQ(FindRankReport("kolorun: job failed"), std::nullopt);
}

TEST(RankMonitor, StartAnnouncementsCarryTheRank) {
  const std::string line = FormatStartAnnouncement("12", "kA");
  EXPECT_EQ(FindStartAnnouncement("[1,12]<stderr>:" + line + "\n"), "12");
  EXPECT_EQ(FindStartAnnouncement(line), "12");
  // Announcements and failure reports never match each other.
  EXPECT_EQ(FindRankReport(line), std::nullopt);
  EXPECT_EQ(FindStartAnnouncement(FormatRankExit("1", "h", 1)), std::nullopt);
}

TEST(JobRunner, FailureSummaryNamesTheFirstFailedRank) {
  EXPECT_EQ(JobFailureSummary({3 << 8, std::string("rank 2 on host kB exited "
                                                   "with status 3")},
                              "mpirun"),
            "kolorun: job failed with exit status 3; first failure: rank 2 on "
            "host kB exited with status 3");
  EXPECT_EQ(JobFailureSummary({1 << 8, std::nullopt}, "srun"),
            "kolorun: job failed with exit status 1; no rank reported a "
            "failure (see srun's messages above)");
  EXPECT_EQ(JobFailureSummary({9, std::nullopt}, "mpirun"),
            "kolorun: mpirun was killed by signal 9; no rank reported a "
            "failure (see mpirun's messages above)");
}

TEST(JobRunner, ExitCodeIsTheFirstFailedRanks) {
  const std::string exited = "rank 1 on host n1 exited with status 3";
  const std::string signalled =
      "rank 0 on host n1 was killed by signal 11 (Segmentation fault)";
  EXPECT_EQ(RankReportExitCode(exited), 3);
  EXPECT_EQ(RankReportExitCode(signalled), 139);
  EXPECT_EQ(RankReportExitCode("rank 0 on host n1: cannot run 'x': No such "
                               "file or directory"),
            std::nullopt);
  // srun exits 143 after --kill-on-bad-exit stopped the other tasks.
  EXPECT_EQ(JobExitCode({143 << 8, exited}), 3);
  EXPECT_EQ(JobFailureSummary({143 << 8, exited}, "srun"),
            "kolorun: job failed with exit status 3; first failure: " + exited);
  EXPECT_EQ(JobExitCode({3 << 8, exited}), 3);  // Open MPI's mpirun
  EXPECT_EQ(JobExitCode({139 << 8, signalled}), 139);
  EXPECT_EQ(JobExitCode({127 << 8, std::string("rank 0 on host n1: cannot "
                                               "run 'x': No such file")}),
            127);
  EXPECT_EQ(JobExitCode({1 << 8, std::nullopt}), 1);
  EXPECT_EQ(JobExitCode({0, exited}), 0);
  // A launcher killed by a signal (kolorun's own SIGTERM) keeps 128+N...
  EXPECT_EQ(JobExitCode({SIGTERM, exited}), 128 + SIGTERM);
  // ...unless kolorun stopped it because it kept a failed job running.
  const JobOutcome stopped{SIGTERM, exited, /*stopped_after_failure=*/true};
  EXPECT_EQ(JobExitCode(stopped), 3);
  EXPECT_EQ(JobFailureSummary(stopped, "mpiexec"),
            "kolorun: job failed with exit status 3; first failure: " + exited);
}

TEST(JobRunner, StartTimeoutMessageListsTheMissingRanks) {
  EXPECT_EQ(StartTimeoutMessage(5, 4, {"0", "2"}),
            "kolorun: only 2 of 4 ranks started within --start-timeout 5 s; "
            "not started: ranks 1, 3; stopping the job");
  EXPECT_EQ(StartTimeoutMessage(5, 2, {"0"}),
            "kolorun: only 1 of 2 ranks started within --start-timeout 5 s; "
            "not started: rank 1; stopping the job");
  EXPECT_THAT(StartTimeoutMessage(1, 40, {}),
              testing::HasSubstr("only 0 of 40 ranks started within "
                                 "--start-timeout 1 s; not started: ranks 0, "
                                 "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, "
                                 "14, 15, ...;"));
}

TEST(MachineFacts, CountsHyperthreadsOfACoreOnce) {
  EXPECT_EQ(CountPhysicalCores({{0, 0}, {0, 1}, {0, 0}, {0, 1}}), 2);
  EXPECT_EQ(CountPhysicalCores({{0, 0}, {1, 0}}), 2);  // two sockets
  EXPECT_EQ(CountPhysicalCores({}), 1);
}

}  // namespace
}  // namespace launcher
}  // namespace kolo
