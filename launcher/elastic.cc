// kolorun's elastic policy (see elastic.h).
#include "elastic.h"

#include <signal.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "host_list.h"
#include "rank_monitor.h"

namespace kolo {
namespace launcher {
namespace {

// Placement as Plan makes it (and as the launch plan's -H keeps it): rank r
// on the host whose slots cover position r.
std::string HostOfRank(const ElasticLaunch& launch, int rank) {
  int first = 0;
  for (const HostSlots& host : launch.hosts) {
    if (rank < first + host.slots) return host.host;
    first += host.slots;
  }
  return "";
}

// The rank number of a report "rank R on host H ...", or -1.
int ReportRank(absl::string_view report) {
  if (!absl::ConsumePrefix(&report, "rank ")) return -1;
  int rank = -1;
  if (!absl::SimpleAtoi(report.substr(0, report.find(' ')), &rank)) return -1;
  return rank;
}

int SlotSum(const std::vector<HostSlots>& hosts) {
  int sum = 0;
  for (const HostSlots& host : hosts) sum += host.slots;
  return sum;
}

}  // namespace

absl::StatusOr<std::vector<HostSlots>> ParseDiscoveryOutput(
    absl::string_view text, absl::string_view script) {
  std::vector<HostSlots> hosts;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    absl::StatusOr<std::vector<HostSlots>> entry = ParseHostList(line);
    if (!entry.ok() || entry->size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--host-discovery-script ", script, ": line ", line_number, " '",
          absl::CHexEscape(line.substr(0, 200)),
          "' is not HOST or HOST:SLOTS (one host per line)"));
    }
    const HostSlots& host = entry->front();
    auto same = std::find_if(hosts.begin(), hosts.end(),
                             [&](const HostSlots& h) { return h.host == host.host; });
    if (same != hosts.end()) {
      same->slots += host.slots;
    } else {
      hosts.push_back(host);
    }
  }
  return hosts;
}

ElasticPolicy::ElasticPolicy(const ElasticOptions& options)
    : options_(options) {}

std::vector<HostSlots> ElasticPolicy::Usable(
    const std::vector<HostSlots>& discovered,
    ElasticClock::time_point now) const {
  std::vector<HostSlots> usable;
  for (const HostSlots& host : discovered) {
    auto it = cool_until_.find(host.host);
    if (it == cool_until_.end() || it->second <= now) usable.push_back(host);
  }
  return usable;
}

std::optional<ElasticLaunch> ElasticPolicy::Plan(
    const std::vector<HostSlots>& usable) const {
  int ranks = SlotSum(usable);
  if (options_.max_np > 0) ranks = std::min(ranks, options_.max_np);
  if (ranks < options_.min_np || ranks < 1) return std::nullopt;
  ElasticLaunch launch;
  launch.num_proc = ranks;
  for (const HostSlots& host : usable) {
    if (ranks == 0) break;
    const int here = std::min(host.slots, ranks);
    launch.hosts.push_back(HostSlots{host.host, here});
    ranks -= here;
  }
  return launch;
}

std::optional<std::string> ElasticPolicy::ResizeReason(
    const ElasticLaunch& running, const std::vector<HostSlots>& usable) const {
  for (const HostSlots& host : running.hosts) {
    auto it = std::find_if(usable.begin(), usable.end(),
                           [&](const HostSlots& h) { return h.host == host.host; });
    if (it == usable.end()) {
      return absl::StrCat("host ", host.host,
                          " is no longer in the discovered hosts");
    }
    if (it->slots < host.slots) {
      return absl::StrCat("host ", host.host, " now has ", it->slots,
                          " slot", it->slots == 1 ? "" : "s", " (", host.slots,
                          " in use)");
    }
  }
  std::optional<ElasticLaunch> best = Plan(usable);
  if (best && best->num_proc > running.num_proc) {
    return absl::StrCat(best->num_proc, " slots are available (",
                        DescribeHosts(usable), "), the job runs ",
                        running.num_proc, " ranks");
  }
  return std::nullopt;
}

void ElasticPolicy::RecordFailure(const std::string& host,
                                  ElasticClock::time_point now) {
  if (!options_.resizable()) return;
  cool_until_[host] =
      now + std::chrono::duration_cast<ElasticClock::duration>(
                std::chrono::duration<double>(options_.host_cooldown_seconds));
}

std::vector<std::string> ElasticPolicy::CoolingDown(
    ElasticClock::time_point now) const {
  std::vector<std::string> hosts;
  for (const auto& [host, until] : cool_until_) {
    if (until > now) hosts.push_back(host);
  }
  return hosts;
}

bool ElasticPolicy::CountRestart() {
  ++restarts_;
  return restarts_ <= options_.max_restarts;
}

std::set<std::string> FailedHosts(const ElasticLaunch& launch,
                                  const std::vector<std::string>& reports,
                                  const std::set<std::string>& started) {
  std::set<std::string> killed;
  // Only the first rank that exited with an error: the others usually
  // failed because of it (kolo aborts every rank's operations when a peer
  // dies).
  std::set<std::string> exited;
  for (const std::string& report : reports) {
    const int rank = ReportRank(report);
    if (rank < 0) continue;
    const std::string host = HostOfRank(launch, rank);
    if (host.empty()) continue;
    std::optional<int> code = RankReportExitCode(report);
    if (code && *code > 128 && *code != 128 + SIGTERM &&
        *code != 128 + SIGINT) {
      killed.insert(host);
    } else if (exited.empty()) {
      exited.insert(host);
    }
  }
  if (!killed.empty()) return killed;
  if (!exited.empty()) return exited;
  std::set<std::string> silent;
  if (started.empty()) return silent;  // nothing started: nothing to compare
  for (int rank = 0; rank < launch.num_proc; ++rank) {
    if (started.count(absl::StrCat(rank)) == 0) {
      silent.insert(HostOfRank(launch, rank));
    }
  }
  return silent;
}

std::string DescribeHosts(const std::vector<HostSlots>& hosts) {
  return hosts.empty() ? "none" : FormatHostList(hosts);
}

}  // namespace launcher
}  // namespace kolo
