// Names, bus-bandwidth factors and buffer layouts of the benchmarked
// collectives.
#include "bench/collective.h"

#include <algorithm>

namespace kolo::bench {
namespace {

// Collectives whose buffers are divided into one equal share per rank.
bool Partitioned(Collective collective) {
  return collective == Collective::kAllgather ||
         collective == Collective::kReducescatter ||
         collective == Collective::kAlltoall;
}

}  // namespace

const std::vector<Collective>& AllCollectives() {
  static const std::vector<Collective> collectives = {
      Collective::kAllreduce, Collective::kAllgather, Collective::kBroadcast,
      Collective::kReducescatter, Collective::kAlltoall};
  return collectives;
}

const char* CollectiveName(Collective collective) {
  switch (collective) {
    case Collective::kAllreduce:
      return "allreduce";
    case Collective::kAllgather:
      return "allgather";
    case Collective::kBroadcast:
      return "broadcast";
    case Collective::kReducescatter:
      return "reducescatter";
    case Collective::kAlltoall:
      return "alltoall";
  }
  return "unknown";
}

std::optional<Collective> ParseCollective(std::string_view name) {
  for (Collective collective : AllCollectives()) {
    if (name == CollectiveName(collective)) return collective;
  }
  return std::nullopt;
}

bool Reduces(Collective collective) {
  return collective == Collective::kAllreduce ||
         collective == Collective::kReducescatter;
}

double BusBandwidthFactor(Collective collective, int ranks) {
  const double n = ranks;
  switch (collective) {
    case Collective::kAllreduce:
      return 2.0 * (n - 1) / n;
    case Collective::kAllgather:
    case Collective::kReducescatter:
    case Collective::kAlltoall:
      return (n - 1) / n;
    case Collective::kBroadcast:
      return 1.0;
  }
  return 1.0;
}

int64_t CountForBytes(Collective collective, int64_t bytes,
                      int64_t element_size, int ranks) {
  const int64_t elements = bytes / element_size;
  if (Partitioned(collective)) {
    return std::max<int64_t>(ranks, elements / ranks * ranks);
  }
  return std::max<int64_t>(1, elements);
}

Layout MakeLayout(Collective collective, int64_t count, int ranks,
                  int tensors) {
  Layout layout;
  layout.collective = collective;
  layout.ranks = ranks;
  layout.count = count;
  // Parts are cut in units: single elements, or for partitioned collectives
  // one element per rank (so every part divides evenly among the ranks).
  int64_t units = count;
  switch (collective) {
    case Collective::kAllreduce:
    case Collective::kBroadcast:
      layout.input_count = count;
      layout.output_count = count;
      break;
    case Collective::kAllgather:
      layout.input_count = count / ranks;
      layout.output_count = count;
      units = count / ranks;
      break;
    case Collective::kAlltoall:
      layout.input_count = count;
      layout.output_count = count;
      units = count / ranks;
      break;
    case Collective::kReducescatter:
      layout.input_count = count;
      layout.output_count = count / ranks;
      units = count / ranks;
      break;
  }
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(tensors, units));
  int64_t unit_offset = 0;
  for (int64_t p = 0; p < parts; ++p) {
    // The first units % parts parts take one unit more.
    const int64_t part_units = units / parts + (p < units % parts ? 1 : 0);
    Part part;
    switch (collective) {
      case Collective::kAllreduce:
      case Collective::kBroadcast:
        part = {unit_offset, part_units, unit_offset, part_units};
        break;
      case Collective::kAllgather:
        part = {unit_offset, part_units, unit_offset * ranks,
                part_units * ranks};
        break;
      case Collective::kAlltoall:
        part = {unit_offset * ranks, part_units * ranks, unit_offset * ranks,
                part_units * ranks};
        break;
      case Collective::kReducescatter:
        part = {unit_offset * ranks, part_units * ranks, unit_offset,
                part_units};
        break;
    }
    layout.parts.push_back(part);
    unit_offset += part_units;
  }
  return layout;
}

}  // namespace kolo::bench
