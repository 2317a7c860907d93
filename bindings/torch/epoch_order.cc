// The samplers' epoch order (see epoch_order.h).
#include "epoch_order.h"

#include <limits>
#include <numeric>
#include <random>
#include <utility>

namespace kolo {
namespace torch {
namespace internal {
namespace {

// A uniform draw from [0, bound) by rejection, so that the result depends
// only on mt19937_64's output (std::uniform_int_distribution's algorithm is
// left to the standard library).
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() / bound * bound;
  uint64_t draw;
  do {
    draw = rng();
  } while (draw >= limit);
  return draw % bound;
}

}  // namespace

std::vector<size_t> ShuffledEpochOrder(size_t dataset_size, uint64_t seed,
                                       int64_t epoch) {
  std::vector<size_t> order(dataset_size);
  std::iota(order.begin(), order.end(), size_t{0});
  std::mt19937_64 rng(seed + static_cast<uint64_t>(epoch));
  for (size_t i = order.size(); i > 1; --i) {
    std::swap(order[i - 1], order[UniformBelow(rng, i)]);
  }
  return order;
}

}  // namespace internal
}  // namespace torch
}  // namespace kolo
