// kolorun's elastic policy (elastic.h) and its flags: discovery output,
// launch sizes, resizes, cool-downs, restarts and who is blamed for a
// failure. No processes are started.
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "command_line.h"
#include "elastic.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo {
namespace launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

HostSlots H(const std::string& host, int slots) { return {host, slots}; }

ElasticOptions Options(int min_np, int max_np) {
  ElasticOptions o;
  o.discovery_script = "discover";
  o.min_np = min_np;
  o.max_np = max_np;
  o.max_restarts = 2;
  o.host_cooldown_seconds = 10;
  return o;
}

TEST(ElasticDiscovery, ParsesHostsSlotsCommentsAndRepeats) {
  absl::StatusOr<std::vector<HostSlots>> hosts = ParseDiscoveryOutput(
      "# the pool\nnode1:4\n\n  node2  \nnode1:2\n", "s");
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  EXPECT_THAT(*hosts, ElementsAre(H("node1", 6), H("node2", 1)));
  EXPECT_THAT(*ParseDiscoveryOutput("", "s"), ElementsAre());
}

TEST(ElasticDiscovery, GarbageNamesTheScriptAndTheLine) {
  for (const char* bad : {"a:2\nb:x\n", "a:2\nb:0\n", "a:2\na,b\n",
                          "a\n\x01\x02 boom\n", "a\nb:2:3\n"}) {
    absl::StatusOr<std::vector<HostSlots>> hosts =
        ParseDiscoveryOutput(bad, "/opt/discover.sh");
    ASSERT_FALSE(hosts.ok()) << bad;
    EXPECT_THAT(std::string(hosts.status().message()),
                HasSubstr("--host-discovery-script /opt/discover.sh: line 2"));
  }
}

TEST(ElasticPolicy, PlansUpToMaxNpFillingHostsInOrder) {
  ElasticPolicy policy(Options(2, 5));
  std::optional<ElasticLaunch> launch =
      policy.Plan({H("a", 2), H("b", 2), H("c", 2)});
  ASSERT_TRUE(launch.has_value());
  EXPECT_EQ(launch->num_proc, 5);
  EXPECT_THAT(launch->hosts, ElementsAre(H("a", 2), H("b", 2), H("c", 1)));
  EXPECT_FALSE(policy.Plan({H("a", 1)}).has_value());  // below --min-np
  EXPECT_FALSE(policy.Plan({}).has_value());
  ElasticPolicy unlimited(Options(1, 0));
  EXPECT_EQ(unlimited.Plan({H("a", 3), H("b", 4)})->num_proc, 7);
}

TEST(ElasticPolicy, ResizesWhenSlotsAppearOrAHostInUseGoes) {
  ElasticPolicy policy(Options(1, 4));
  const ElasticLaunch running = *policy.Plan({H("a", 2)});
  EXPECT_EQ(policy.ResizeReason(running, {H("a", 2)}), std::nullopt);
  EXPECT_THAT(policy.ResizeReason(running, {H("a", 2), H("b", 1)}),
              Optional(HasSubstr("3 slots are available")));
  EXPECT_THAT(policy.ResizeReason(running, {H("b", 4)}),
              Optional(HasSubstr("host a is no longer in the discovered")));
  EXPECT_THAT(policy.ResizeReason(running, {H("a", 1), H("b", 1)}),
              Optional(HasSubstr("host a now has 1 slot (2 in use)")));
  // At --max-np already: more slots change nothing.
  const ElasticLaunch full = *policy.Plan({H("a", 4)});
  EXPECT_EQ(policy.ResizeReason(full, {H("a", 4), H("b", 4)}), std::nullopt);
}

TEST(ElasticPolicy, FailedHostsCoolDownThenReturn) {
  ElasticPolicy policy(Options(1, 0));
  const auto t0 = ElasticClock::now();
  policy.RecordFailure("b", t0);
  const std::vector<HostSlots> all = {H("a", 1), H("b", 1)};
  EXPECT_THAT(policy.Usable(all, t0 + std::chrono::seconds(9)),
              ElementsAre(H("a", 1)));
  EXPECT_THAT(policy.CoolingDown(t0 + std::chrono::seconds(9)),
              ElementsAre("b"));
  EXPECT_THAT(policy.Usable(all, t0 + std::chrono::seconds(11)),
              ElementsAre(H("a", 1), H("b", 1)));
  EXPECT_THAT(policy.CoolingDown(t0 + std::chrono::seconds(11)),
              ElementsAre());
}

TEST(ElasticPolicy, AFixedJobNeverCoolsItsHostsDown) {
  ElasticOptions fixed;
  fixed.min_np = fixed.max_np = 2;
  ElasticPolicy policy(fixed);
  const auto t0 = ElasticClock::now();
  policy.RecordFailure("a", t0);
  EXPECT_THAT(policy.Usable({H("a", 2)}, t0), ElementsAre(H("a", 2)));
}

TEST(ElasticPolicy, GivesUpAfterMaxRestarts) {
  ElasticPolicy policy(Options(1, 0));  // --max-restarts 2
  EXPECT_TRUE(policy.CountRestart());
  EXPECT_TRUE(policy.CountRestart());
  EXPECT_FALSE(policy.CountRestart());
  EXPECT_EQ(policy.restarts(), 3);
}

TEST(ElasticFailedHosts, BlamesKilledRanksFirstThenTheFirstErrorThenSilence) {
  const ElasticLaunch launch{{H("a", 2), H("b", 2)}, 4};
  // A kill -9 on b; a's rank 0 then failed on its own (peer died) and
  // rank 3's teardown SIGTERM does not count.
  EXPECT_THAT(FailedHosts(launch,
                          {"rank 0 on host x exited with status 1",
                           "rank 2 on host y was killed by signal 9 (Killed)",
                           "rank 3 on host y was killed by signal 15"},
                          {}),
              ElementsAre("b"));
  // Errors only: the first rank's host.
  EXPECT_THAT(FailedHosts(launch,
                          {"rank 3 on host y exited with status 2",
                           "rank 0 on host x exited with status 1"},
                          {}),
              ElementsAre("b"));
  // No report: the hosts of ranks that never started.
  EXPECT_THAT(FailedHosts(launch, {}, {"0", "1"}), ElementsAre("b"));
  EXPECT_THAT(FailedHosts(launch, {}, {}), ElementsAre());
  // Reports the placement does not know (rank 9, "rank ?") are ignored.
  EXPECT_THAT(FailedHosts(launch,
                          {"rank 9 on host z was killed by signal 9",
                           "rank ? on host z exited with status 1"},
                          {"0", "1", "2", "3"}),
              ElementsAre());
}

TEST(ElasticFlags, DiscoveryMakesNpOptionalAndSetsTheBounds) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(
      {"--host-discovery-script", "./d.sh", "--min-np", "2", "--max-np", "8",
       "--max-restarts", "3", "--host-cooldown", "5", "--elastic-timeout",
       "30", "--discovery-interval", "0.5", "./train"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const LaunchOptions& o = parsed->options;
  ASSERT_TRUE(o.elastic.has_value());
  EXPECT_EQ(o.num_proc, 0);
  EXPECT_EQ(o.elastic->discovery_script, "./d.sh");
  EXPECT_EQ(o.elastic->min_np, 2);
  EXPECT_EQ(o.elastic->max_np, 8);
  EXPECT_EQ(o.elastic->max_restarts, 3);
  EXPECT_EQ(o.elastic->host_cooldown_seconds, 5);
  EXPECT_EQ(o.elastic->elastic_timeout_seconds, 30);
  EXPECT_EQ(o.elastic->discovery_interval_seconds, 0.5);
  EXPECT_TRUE(o.elastic->resizable());
  EXPECT_THAT(o.command, ElementsAre("./train"));
}

TEST(ElasticFlags, MaxRestartsAloneKeepsAFixedJob) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(
      {"-np", "4", "-H", "a:2,b:2", "--max-restarts", "2", "./train"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_TRUE(parsed->options.elastic.has_value());
  EXPECT_EQ(parsed->options.elastic->min_np, 4);
  EXPECT_EQ(parsed->options.elastic->max_np, 4);
  EXPECT_FALSE(parsed->options.elastic->resizable());
  EXPECT_FALSE(ParseCommandLine({"-np", "2", "./train"})->options.elastic);
}

TEST(ElasticFlags, InconsistentFlagsAreRefusedNamingThem) {
  const auto error = [](const std::vector<std::string>& args) {
    absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(args);
    EXPECT_FALSE(parsed.ok());
    return parsed.ok() ? std::string() : std::string(parsed.status().message());
  };
  EXPECT_THAT(error({"--host-discovery-script", "d", "--min-np", "4",
                     "--max-np", "2", "t"}),
              HasSubstr("--min-np 4 is more than --max-np 2"));
  EXPECT_THAT(error({"--host-discovery-script", "d", "-H", "a", "t"}),
              HasSubstr("leave out -H and --hostfile"));
  EXPECT_THAT(error({"-np", "2", "--max-np", "4", "--max-restarts", "1", "t"}),
              HasSubstr("without --host-discovery-script the job never grows"));
  EXPECT_THAT(error({"-np", "2", "--host-cooldown", "5", "t"}),
              HasSubstr("--host-cooldown applies to elastic mode only"));
  EXPECT_THAT(error({"--host-discovery-script", "d", "--no-rank-monitor", "t"}),
              HasSubstr("elastic mode needs the rank monitor"));
  EXPECT_THAT(error({"--host-discovery-script", "d", "-np", "9", "--min-np",
                     "2", "--max-np", "4", "t"}),
              HasSubstr("-np 9 is outside --min-np 2 .. --max-np 4"));
  EXPECT_THAT(error({"--host-discovery-script", "d", "--discovery-interval",
                     "0", "t"}),
              HasSubstr("--discovery-interval"));
}

}  // namespace
}  // namespace launcher
}  // namespace kolo
