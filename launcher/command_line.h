// kolorun's command line: flags (CLI11) followed by the command each rank
// runs.
//
// Everything up to the first argument that is not a kolorun flag (or up to
// "--") belongs to kolorun; the rest is the command, passed on untouched, so
// `kolorun -np 2 python train.py --lr 0.1` keeps --lr for train.py. Parsing
// does no I/O: the hostfile is read later (see LoadHosts in kolorun_main.cc).
#ifndef KOLO_LAUNCHER_COMMAND_LINE_H_
#define KOLO_LAUNCHER_COMMAND_LINE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "launch_options.h"

namespace kolo {
namespace launcher {

struct ParsedCommandLine {
  // True for -h/--help: print help_text and exit 0; options are unset.
  bool help = false;
  std::string help_text;
  LaunchOptions options;
};

// `args` excludes argv[0]. Fails (InvalidArgument, with a message naming the
// flag and the value at fault) on unknown flags, bad values and a missing
// -np or command. -H is parsed here; --hostfile only recorded.
absl::StatusOr<ParsedCommandLine> ParseCommandLine(
    const std::vector<std::string>& args);

// The text of `kolorun --help`.
std::string HelpText();

// Splits --mpi-args like a POSIX shell: whitespace separates words; single
// quotes keep everything literally; double quotes keep whitespace and
// honour \" \\ \$ \`; a backslash outside quotes escapes the next character.
// Fails on an unterminated quote or a trailing backslash.
absl::StatusOr<std::vector<std::string>> SplitShellWords(
    absl::string_view text);

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_COMMAND_LINE_H_
