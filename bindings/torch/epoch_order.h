// The epoch order shared by DistributedSampler and elastic::ElasticSampler
// (internal to the adapter; the rule is documented in kolo/torch.h).
#ifndef KOLO_BINDINGS_TORCH_EPOCH_ORDER_H_
#define KOLO_BINDINGS_TORCH_EPOCH_ORDER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kolo {
namespace torch {
namespace internal {

// 0..dataset_size-1 permuted by a Fisher-Yates shuffle driven by
// std::mt19937_64 seeded with seed + epoch, with rejection sampling for the
// bounded draws (see DistributedSampler in kolo/torch.h).
std::vector<size_t> ShuffledEpochOrder(size_t dataset_size, uint64_t seed,
                                       int64_t epoch);

}  // namespace internal
}  // namespace torch
}  // namespace kolo

#endif  // KOLO_BINDINGS_TORCH_EPOCH_ORDER_H_
