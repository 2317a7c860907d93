// kolorun's elastic mode, the training side: the environment contract, the
// collective stop check and ElasticSampler (see kolo/elastic.h).
#include "kolo/elastic.h"

#include <sys/stat.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "epoch_order.h"
#include "kolo/torch.h"

namespace kolo {
namespace torch {
namespace elastic {
namespace {

// The elastic variables kolorun sets (the runtime's configuration table);
// a malformed one is an error naming it.
Options Environment() {
  StatusOr<Options> options = OptionsFromEnvironment();
  TORCH_CHECK(options.ok(), "kolo: ", options.status().message());
  return *std::move(options);
}

}  // namespace

int restart_count() { return static_cast<int>(Environment().elastic_restart); }

bool enabled() { return !Environment().elastic_stop_file.empty(); }

bool stop_requested(const ProcessSet& process_set) {
  const std::string stop_file = Environment().elastic_stop_file;
  if (stop_file.empty()) return false;
  struct stat info;
  const bool local = ::stat(stop_file.c_str(), &info) == 0;
  AllreduceOptions max;
  max.op = ReduceOp::kMax;
  const at::Tensor flag = at::full({1}, local ? 1.0f : 0.0f, at::kFloat);
  return allreduce(flag, "elastic.stop_requested", max, process_set)
             .item<float>() != 0;
}

ElasticSampler::ElasticSampler(size_t dataset_size, uint64_t seed)
    : dataset_size_(dataset_size), seed_(seed), epoch_samples_(dataset_size) {
  TORCH_CHECK(dataset_size >= 1,
              "kolo: ElasticSampler needs a data set of at least one sample");
  order_ = internal::ShuffledEpochOrder(dataset_size_, seed_, epoch_);
}

void ElasticSampler::set_epoch(int64_t epoch, size_t epoch_samples,
                               size_t cursor) {
  TORCH_CHECK(epoch >= 0, "kolo: epoch must not be negative, got ", epoch);
  TORCH_CHECK(epoch_samples <= dataset_size_, "kolo: epoch_samples ",
              epoch_samples, " exceeds the data set's ", dataset_size_,
              " samples");
  const size_t samples = epoch_samples == 0 ? dataset_size_ : epoch_samples;
  TORCH_CHECK(cursor <= samples, "kolo: cursor ", cursor,
              " is past the epoch's ", samples, " samples");
  if (epoch != epoch_) {
    order_ = internal::ShuffledEpochOrder(dataset_size_, seed_, epoch);
  }
  epoch_ = epoch;
  epoch_samples_ = samples;
  cursor_ = cursor;
}

std::vector<int64_t> ElasticSampler::StepShares(int64_t remaining,
                                                int world_size,
                                                int64_t batch_size) {
  TORCH_CHECK(world_size >= 1, "kolo: world_size must be at least 1, got ",
              world_size);
  TORCH_CHECK(batch_size >= 1, "kolo: batch_size must be at least 1, got ",
              batch_size);
  TORCH_CHECK(remaining >= 0, "kolo: remaining must not be negative, got ",
              remaining);
  std::vector<int64_t> shares(world_size, 0);
  int64_t rows = std::min<int64_t>(world_size * batch_size, remaining);
  if (remaining - rows == 1) ++rows;
  if (rows == 0) return shares;
  const int64_t filled =
      rows == 1 ? 1 : std::min<int64_t>(world_size, rows / 2);
  for (int64_t r = 0; r < filled; ++r) {
    shares[r] = rows / filled + (r < rows % filled ? 1 : 0);
  }
  return shares;
}

ElasticSampler::Step ElasticSampler::NextStep(int world_size, int rank,
                                              int64_t batch_size) {
  TORCH_CHECK(rank >= 0 && rank < world_size, "kolo: rank ", rank,
              " is not in [0, ", world_size, ")");
  const std::vector<int64_t> shares = StepShares(
      static_cast<int64_t>(epoch_samples_ - cursor_), world_size, batch_size);
  Step step;
  size_t begin = cursor_;
  for (int r = 0; r < world_size; ++r) {
    const size_t share = static_cast<size_t>(shares[r]);
    if (r == rank) {
      step.indices.assign(order_.begin() + begin,
                          order_.begin() + begin + share);
    }
    begin += share;
    step.rows += shares[r];
  }
  cursor_ = begin;
  return step;
}

int64_t ElasticSampler::steps_left(int world_size, int64_t batch_size) const {
  int64_t remaining = static_cast<int64_t>(epoch_samples_ - cursor_);
  int64_t steps = 0;
  while (remaining > 0) {
    const std::vector<int64_t> shares =
        StepShares(remaining, world_size, batch_size);
    for (int64_t share : shares) remaining -= share;
    ++steps;
  }
  return steps;
}

double ElasticSampler::epoch_fraction() const {
  return static_cast<double>(cursor_) / static_cast<double>(epoch_samples_);
}

void ElasticSampler::save(::torch::serialize::OutputArchive& archive) const {
  const auto write = [&archive](const char* key, int64_t value) {
    archive.write(key, at::tensor(value, at::kLong), /*is_buffer=*/true);
  };
  write("dataset_size", static_cast<int64_t>(dataset_size_));
  write("seed", static_cast<int64_t>(seed_));
  write("epoch", epoch_);
  write("epoch_samples", static_cast<int64_t>(epoch_samples_));
  write("cursor", static_cast<int64_t>(cursor_));
}

void ElasticSampler::load(::torch::serialize::InputArchive& archive) {
  const auto read = [&archive](const char* key) {
    at::Tensor value;
    TORCH_CHECK(
        archive.try_read(key, value, /*is_buffer=*/true) && value.numel() == 1,
        "kolo: the ElasticSampler archive has no entry '", key, "'");
    return value.item<int64_t>();
  };
  const int64_t dataset_size = read("dataset_size");
  TORCH_CHECK(dataset_size == static_cast<int64_t>(dataset_size_),
              "kolo: the ElasticSampler archive's dataset_size is ",
              dataset_size, "; this sampler's is ", dataset_size_);
  const int64_t seed = read("seed");
  TORCH_CHECK(static_cast<uint64_t>(seed) == seed_,
              "kolo: the ElasticSampler archive's seed is ",
              static_cast<uint64_t>(seed), "; this sampler's is ", seed_);
  const int64_t epoch = read("epoch");
  const int64_t epoch_samples = read("epoch_samples");
  const int64_t cursor = read("cursor");
  TORCH_CHECK(epoch >= 0, "kolo: the ElasticSampler archive's epoch is ",
              epoch);
  TORCH_CHECK(epoch_samples >= 1 && epoch_samples <= dataset_size,
              "kolo: the ElasticSampler archive's epoch_samples is ",
              epoch_samples, "; expected 1 to ", dataset_size);
  TORCH_CHECK(cursor >= 0 && cursor <= epoch_samples,
              "kolo: the ElasticSampler archive's cursor is ", cursor,
              "; expected 0 to epoch_samples ", epoch_samples);
  set_epoch(epoch, static_cast<size_t>(epoch_samples),
            static_cast<size_t>(cursor));
}

}  // namespace elastic
}  // namespace torch
}  // namespace kolo
