// Fuzzes kolorun's command-line parser (launcher/command_line.h): any
// argument vector must give either an InvalidArgument error or options that
// keep LaunchOptions' promises (the command is the arguments' tail), never a
// crash or an escaped exception.
//
// Input: the arguments after argv[0], each ended by a NUL byte, as
// /proc/<pid>/cmdline stores them (a missing final NUL is tolerated).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "command_line.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "kolorun_cli_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args;
  const char* text = reinterpret_cast<const char*>(data);
  size_t start = 0;
  for (size_t i = 0; i <= size; ++i) {
    if (i == size || text[i] == '\0') {
      if (i > start || i < size) args.emplace_back(text + start, i - start);
      start = i + 1;
    }
  }

  absl::StatusOr<kolo::launcher::ParsedCommandLine> parsed =
      kolo::launcher::ParseCommandLine(args);
  if (!parsed.ok()) {
    if (parsed.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail("a bad command line is not InvalidArgument");
    }
    return 0;
  }
  if (parsed->help) {
    if (parsed->help_text.empty()) Fail("--help without help text");
    return 0;
  }
  const kolo::launcher::LaunchOptions& options = parsed->options;
  // With a discovery script the rank count comes from discovery; -np is
  // then optional.
  const bool discovered =
      options.elastic.has_value() && !options.elastic->discovery_script.empty();
  if (options.num_proc < 1 && !discovered) Fail("accepted -np below 1");
  if (options.elastic.has_value()) {
    const kolo::launcher::ElasticOptions& e = *options.elastic;
    if (e.min_np < 1) Fail("accepted --min-np below 1");
    if (e.max_np > 0 && e.min_np > e.max_np) Fail("accepted --min-np > --max-np");
    if (!discovered && e.max_np != options.num_proc) {
      Fail("a fixed elastic job whose --max-np is not -np");
    }
    if (!options.rank_monitor) Fail("elastic mode without the rank monitor");
  }
  if (options.command.empty()) Fail("accepted a command line without command");
  if (!options.hosts_flag.empty() && !options.hostfile.empty()) {
    Fail("accepted both -H and --hostfile");
  }
  // The command is the arguments' tail, untouched (an unknown flag before
  // -np once made kolorun take it from the wrong place).
  if (options.command.size() > args.size() ||
      !std::equal(options.command.rbegin(), options.command.rend(),
                  args.rbegin())) {
    Fail("the command is not the tail of the arguments");
  }
  return 0;
}
