// kolorun's command-line parsing: every flag, the command boundary, errors
// and --help.
#include "command_line.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kolo {
namespace launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

LaunchOptions Parse(const std::vector<std::string>& args) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(args);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed.ok() && parsed->help);
  return parsed.ok() ? parsed->options : LaunchOptions{};
}

std::string ParseError(const std::vector<std::string>& args) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(args);
  EXPECT_FALSE(parsed.ok()) << "accepted: " << testing::PrintToString(args);
  return parsed.ok() ? "" : std::string(parsed.status().message());
}

TEST(CommandLine, ParsesEveryFlag) {
  const LaunchOptions o = Parse({"-np",
                                 "8",
                                 "-H",
                                 "a:4,b:4",
                                 "--mpi-args",
                                 "--mca btl tcp,self",
                                 "-x",
                                 "A=1",
                                 "-x",
                                 "B",
                                 "--fusion-threshold-mb",
                                 "32",
                                 "--cycle-time-ms",
                                 "2.5",
                                 "--cache-capacity",
                                 "0",
                                 "--timeline-filename",
                                 "tl.json",
                                 "--stall-check-seconds",
                                 "30",
                                 "--stall-shutdown-seconds",
                                 "90",
                                 "--autotune",
                                 "--cpu-operations",
                                 "hierarchical",
                                 "--gpu-operations",
                                 "nccl",
                                 "--log-level",
                                 "info",
                                 "--output-filename",
                                 "out",
                                 "--start-timeout",
                                 "45",
                                 "--verbose",
                                 "--dry-run",
                                 "--no-rank-monitor",
                                 "./train",
                                 "--lr",
                                 "0.1"});
  EXPECT_EQ(o.num_proc, 8);
  EXPECT_EQ(o.hosts_flag, "a:4,b:4");
  EXPECT_EQ(o.host_slots, (std::vector<HostSlots>{{"a", 4}, {"b", 4}}));
  EXPECT_THAT(o.mpi_args, ElementsAre("--mca", "btl", "tcp,self"));
  EXPECT_THAT(o.env_exports, ElementsAre("A=1", "B"));
  EXPECT_EQ(o.fusion_threshold_mb, 32);
  EXPECT_EQ(o.cycle_time_ms, "2.5");
  EXPECT_EQ(o.cache_capacity, 0);
  EXPECT_EQ(o.timeline_filename, "tl.json");
  EXPECT_EQ(o.stall_check_seconds, 30);
  EXPECT_EQ(o.stall_shutdown_seconds, 90);
  EXPECT_TRUE(o.autotune);
  EXPECT_EQ(o.cpu_operations, "hierarchical");
  EXPECT_EQ(o.gpu_operations, "nccl");
  EXPECT_EQ(o.log_level, "info");
  EXPECT_EQ(o.output_filename, "out");
  EXPECT_EQ(o.start_timeout_seconds, 45);
  EXPECT_TRUE(o.verbose);
  EXPECT_TRUE(o.dry_run);
  EXPECT_FALSE(o.rank_monitor);
  EXPECT_THAT(o.command, ElementsAre("./train", "--lr", "0.1"));
}

TEST(CommandLine, DefaultsLeaveRuntimeSettingsUnset) {
  const LaunchOptions o = Parse({"-np", "2", "prog"});
  EXPECT_FALSE(o.fusion_threshold_mb || o.cycle_time_ms || o.cache_capacity ||
               o.timeline_filename || o.stall_check_seconds ||
               o.stall_shutdown_seconds || o.cpu_operations ||
               o.gpu_operations || o.log_level || o.output_filename ||
               o.start_timeout_seconds);
  EXPECT_FALSE(o.autotune || o.verbose || o.dry_run);
  EXPECT_TRUE(o.rank_monitor);
  EXPECT_TRUE(o.host_slots.empty());
  EXPECT_TRUE(o.hostfile.empty());
}

TEST(CommandLine, AcceptsTheUsualSpellingsOfTheRankCount) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"-np", "3", "p"},
        {"-np=3", "p"},
        {"-n", "3", "p"},
        {"--np", "3", "p"},
        {"--num-proc", "3", "p"},
        {"--num-proc=3", "p"}}) {
    EXPECT_EQ(Parse(args).num_proc, 3) << testing::PrintToString(args);
  }
  EXPECT_EQ(Parse({"-np", "2", "-hostfile", "h", "p"}).hostfile, "h");
}

TEST(CommandLine, TheCommandsOwnArgumentsAreNeverParsed) {
  const LaunchOptions o =
      Parse({"-np", "2", "python", "train.py", "-np", "7", "--verbose", "-x"});
  EXPECT_FALSE(o.verbose);
  EXPECT_THAT(o.command,
              ElementsAre("python", "train.py", "-np", "7", "--verbose", "-x"));
}

TEST(CommandLine, DoubleDashEndsTheFlags) {
  EXPECT_THAT(Parse({"-np", "2", "--", "--weird-program", "-v"}).command,
              ElementsAre("--weird-program", "-v"));
  EXPECT_THAT(Parse({"-np", "2", "--", "prog"}).command, ElementsAre("prog"));
}

TEST(CommandLine, ErrorsNameTheFlagAndValue) {
  EXPECT_THAT(ParseError({"-np", "2", "--bogus", "prog"}),
              HasSubstr("unknown flag '--bogus'"));
  EXPECT_THAT(ParseError({"-np", "2", "-q", "prog"}),
              HasSubstr("unknown flag '-q'"));
  EXPECT_THAT(ParseError({"prog"}), HasSubstr("-np N is required"));
  EXPECT_THAT(ParseError({"-np", "2"}), HasSubstr("no command given"));
  EXPECT_THAT(ParseError({"-np", "0", "prog"}), HasSubstr("0"));
  EXPECT_THAT(ParseError({"-np", "two", "prog"}), HasSubstr("two"));
  EXPECT_THAT(ParseError({"-np", "2", "--cpu-operations", "nccl", "prog"}),
              HasSubstr("nccl"));
  EXPECT_THAT(ParseError({"-np", "2", "--gpu-operations", "shm", "prog"}),
              HasSubstr("shm"));
  EXPECT_THAT(ParseError({"-np", "2", "--log-level", "loud", "prog"}),
              HasSubstr("loud"));
  EXPECT_THAT(ParseError({"-np", "2", "--fusion-threshold-mb", "-1", "prog"}),
              HasSubstr("-1"));
  EXPECT_THAT(ParseError({"-np", "2", "--cache-capacity", "-5", "prog"}),
              HasSubstr("-5"));
  EXPECT_THAT(ParseError({"-np", "2", "--stall-check-seconds", "x", "prog"}),
              HasSubstr("x"));
  EXPECT_THAT(ParseError({"-np", "2", "--start-timeout", "0", "prog"}),
              HasSubstr("0"));
  for (const char* bad : {"-1", "abc", "inf", "nan", "1e999"}) {
    EXPECT_THAT(ParseError({"-np", "2", "--cycle-time-ms", bad, "prog"}),
                HasSubstr(std::string("--cycle-time-ms: '") + bad + "'"));
  }
  EXPECT_THAT(ParseError({"-np", "2", "-H", "a:2,b:0", "prog"}),
              HasSubstr("-H entry 2 'b:0'"));
  EXPECT_THAT(ParseError({"-np", "2", "-H", "a", "--hostfile", "f", "prog"}),
              HasSubstr("excludes"));
  EXPECT_THAT(ParseError({"-np", "2", "--mpi-args", "--mca 'x", "prog"}),
              HasSubstr("unterminated single quote"));
  EXPECT_THAT(ParseError({"-np", "2", "--timeline-filename", "", "prog"}),
              HasSubstr("--timeline-filename"));
}

TEST(CommandLine, UnknownFlagAnywhereBeforeTheCommandIsNamed) {
  // CLI11 sets unknown flags aside and parses on: the command must not be
  // taken from the wrong place ("2" here, once).
  EXPECT_THAT(ParseError({"--no-such-flag", "-np", "2", "--", "true"}),
              HasSubstr("unknown flag '--no-such-flag'"));
  EXPECT_THAT(ParseError({"-np", "2", "--bogus", "--verbose", "prog"}),
              HasSubstr("unknown flag '--bogus'"));
  EXPECT_THAT(ParseError({"--bogus=3", "-np", "2", "prog", "x"}),
              HasSubstr("unknown flag '--bogus=3'"));
  EXPECT_THAT(ParseError({"-q", "-np", "2", "--", "prog"}),
              HasSubstr("unknown flag '-q'"));
}

TEST(CommandLine, MisspeltFlagsGetTheClosestKnownFlag) {
  EXPECT_THAT(ParseError({"--dryrun", "-np", "2", "prog"}),
              HasSubstr("unknown flag '--dryrun'; did you mean '--dry-run'?"));
  EXPECT_THAT(ParseError({"-np", "2", "--hostfle", "h", "prog"}),
              HasSubstr("did you mean '--hostfile'?"));
  EXPECT_THAT(ParseError({"-np", "2", "--host", "a:2", "prog"}),
              HasSubstr("did you mean '--hosts'?"));
  EXPECT_THAT(ParseError({"-np", "2", "--fusion-treshold-mb=64", "prog"}),
              HasSubstr("did you mean '--fusion-threshold-mb'?"));
  EXPECT_THAT(ParseError({"-np", "2", "--verbsoe", "prog"}),
              HasSubstr("did you mean '--verbose'?"));
  for (const char* far : {"--no-such-flag", "--xyz", "-q"}) {
    EXPECT_THAT(ParseError({"-np", "2", far, "prog"}),
                Not(HasSubstr("did you mean")))
        << far;
  }
}

TEST(CommandLine, CommandArgumentsPassThroughUntouched) {
  const LaunchOptions o =
      Parse({"-np", "2", "--verbose", "--", "prog", "--no-such-flag", "-np",
             "3", "--", "--dryrun", "-np=4", "-hostfile"});
  EXPECT_TRUE(o.verbose);
  EXPECT_EQ(o.num_proc, 2);
  EXPECT_THAT(o.command, ElementsAre("prog", "--no-such-flag", "-np", "3", "--",
                                     "--dryrun", "-np=4", "-hostfile"));
  EXPECT_THAT(Parse({"-np", "2", "prog", "--dryrun", "-np=4"}).command,
              ElementsAre("prog", "--dryrun", "-np=4"));
}

TEST(CommandLine, NormalisesChoicesToLowerCase) {
  const LaunchOptions o = Parse(
      {"-np", "2", "--log-level", "DEBUG", "--cpu-operations", "Ring",
       "--gpu-operations", "NCCL", "p"});
  EXPECT_EQ(o.log_level, "debug");
  EXPECT_EQ(o.cpu_operations, "ring");
  EXPECT_EQ(o.gpu_operations, "nccl");
}

TEST(CommandLine, HelpDocumentsEveryFlag) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine({"--help"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_TRUE(parsed->help);
  EXPECT_EQ(parsed->help_text, HelpText());
  for (const char* flag : {"-np",
                           "--num-proc",
                           "-H",
                           "--hostfile",
                           "--mpi-args",
                           "-x",
                           "--fusion-threshold-mb",
                           "--cycle-time-ms",
                           "--cache-capacity",
                           "--timeline-filename",
                           "--stall-check-seconds",
                           "--stall-shutdown-seconds",
                           "--autotune",
                           "--cpu-operations",
                           "--gpu-operations",
                           "--log-level",
                           "--output-filename",
                           "--start-timeout",
                           "--verbose",
                           "--dry-run",
                           "--no-rank-monitor",
                           "--rank-monitor",
                           "--announce-start",
                           "--help",
                           "COMMAND",
                           "KOLO_FUSION_THRESHOLD",
                           "KOLO_CYCLE_TIME_MS",
                           "KOLO_CACHE_CAPACITY",
                           "KOLO_TIMELINE",
                           "KOLO_STALL_CHECK_TIME_SECONDS",
                           "KOLO_STALL_SHUTDOWN_TIME_SECONDS",
                           "KOLO_AUTOTUNE",
                           "KOLO_CPU_OPERATIONS",
                           "KOLO_GPU_OPERATIONS",
                           "KOLO_LOG_LEVEL",
                           "slots=N"}) {
    EXPECT_THAT(parsed->help_text, HasSubstr(flag));
  }
  EXPECT_TRUE(ParseCommandLine({"-np", "2", "-h"})->help);
}

TEST(ShellWords, SplitsLikeAPosixShell) {
  struct Case {
    const char* text;
    std::vector<std::string> words;
  };
  const Case cases[] = {
      {"", {}},
      {"   ", {}},
      {"--mca btl tcp,self", {"--mca", "btl", "tcp,self"}},
      {"  a \t b\n", {"a", "b"}},
      {"'a b' c", {"a b", "c"}},
      {"\"a b\" c", {"a b", "c"}},
      {"a\\ b", {"a b"}},
      {"x'y z'w", {"xy zw"}},
      {"''", {""}},
      {"\"say \\\"hi\\\" \\\\ \\n\"", {"say \"hi\" \\ \\n"}},
      {"'it'\\''s'", {"it's"}},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<std::string>> words = SplitShellWords(c.text);
    ASSERT_TRUE(words.ok()) << c.text << ": " << words.status();
    EXPECT_EQ(*words, c.words) << "text: [" << c.text << "]";
  }
  for (const char* bad : {"'open", "\"open", "trailing\\"}) {
    EXPECT_FALSE(SplitShellWords(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace launcher
}  // namespace kolo
