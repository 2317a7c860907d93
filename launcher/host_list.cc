// Host list and hostfile parsing for kolorun.
#include "host_list.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kolo {
namespace launcher {
namespace {

// Host names and IPv4 addresses. IPv6 literals are left out on purpose: their
// colons clash with "host:slots".
bool IsValidHostName(absl::string_view host) {
  if (host.empty() || host.front() == '-' || host.front() == '.') return false;
  for (char c : host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

// Slot counts are positive and small enough that sums cannot overflow.
bool ParseSlots(absl::string_view text, int* slots) {
  return absl::SimpleAtoi(text, slots) && *slots >= 1 && *slots <= 1 << 20 &&
         absl::ascii_isdigit(static_cast<unsigned char>(text.front()));
}

// Appends a host, or adds its slots to an earlier entry of the same name.
void AddHost(std::vector<HostSlots>* hosts, std::string host, int slots) {
  for (HostSlots& existing : *hosts) {
    if (existing.host == host) {
      existing.slots += slots;
      return;
    }
  }
  hosts->push_back(HostSlots{std::move(host), slots});
}

}  // namespace

absl::StatusOr<std::vector<HostSlots>> ParseHostList(absl::string_view flag) {
  std::vector<HostSlots> hosts;
  int index = 0;
  for (absl::string_view entry : absl::StrSplit(flag, ',')) {
    ++index;
    const std::string what = absl::StrCat("-H entry ", index, " '", entry, "'");
    std::vector<absl::string_view> parts = absl::StrSplit(entry, ':');
    if (parts.size() > 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": expected HOST or HOST:SLOTS"));
    }
    if (!IsValidHostName(parts[0])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": '", parts[0], "' is not a host name"));
    }
    int slots = 1;
    if (parts.size() == 2 && !ParseSlots(parts[1], &slots)) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": slots '", parts[1], "' must be a positive integer"));
    }
    AddHost(&hosts, std::string(parts[0]), slots);
  }
  return hosts;
}

absl::StatusOr<std::vector<HostSlots>> ParseHostfile(absl::string_view text,
                                                     absl::string_view path) {
  std::vector<HostSlots> hosts;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    const std::string where =
        absl::StrCat("hostfile ", path, " line ", line_number);
    absl::string_view content = line.substr(0, line.find('#'));
    std::vector<absl::string_view> tokens =
        absl::StrSplit(content, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (tokens.empty()) continue;
    if (!IsValidHostName(tokens[0])) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": '", tokens[0],
                       "' is not a host name (expected 'HOST ", "[slots=N]')"));
    }
    int slots = 1;
    if (tokens.size() > 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": unexpected '", tokens[2], "' (expected 'HOST [slots=N]')"));
    }
    if (tokens.size() == 2) {
      absl::string_view value = tokens[1];
      if (!absl::ConsumePrefix(&value, "slots=")) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": unexpected '", tokens[1],
                         "' (expected 'HOST [slots=N]')"));
      }
      if (!ParseSlots(value, &slots)) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": slots '", value, "' must be a positive integer"));
      }
    }
    AddHost(&hosts, std::string(tokens[0]), slots);
  }
  if (hosts.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("hostfile ", path, " names no hosts"));
  }
  return hosts;
}

std::string FormatHostList(const std::vector<HostSlots>& hosts) {
  return absl::StrJoin(hosts, ",", [](std::string* out, const HostSlots& h) {
    absl::StrAppend(out, h.host, ":", h.slots);
  });
}

}  // namespace launcher
}  // namespace kolo
