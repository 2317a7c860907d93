// Parsers for the two ways of naming hosts: -H "a:2,b:2" and an Open MPI
// style hostfile ("HOST [slots=N]" per line, '#' comments).
//
// Both follow Open MPI's meaning: a host without a slot count has one slot,
// and a host named twice gets the sum of its slots (kept at its first
// position, which decides the rank order). Errors name the entry or the line.
#ifndef KOLO_LAUNCHER_HOST_LIST_H_
#define KOLO_LAUNCHER_HOST_LIST_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "launch_options.h"

namespace kolo {
namespace launcher {

// Parses the value of -H, e.g. "node1:4,node2:4" or "localhost".
absl::StatusOr<std::vector<HostSlots>> ParseHostList(absl::string_view flag);

// Parses the contents of a hostfile; `path` only appears in error messages.
absl::StatusOr<std::vector<HostSlots>> ParseHostfile(absl::string_view text,
                                                     absl::string_view path);

// "a:2,b:2": the -H form of a host list (what Open MPI and Hydra accept).
std::string FormatHostList(const std::vector<HostSlots>& hosts);

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_HOST_LIST_H_
