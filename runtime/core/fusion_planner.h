// FusionPlanner: batches ready allreduces into fused collectives, the way
// LevelDB's group commit batches writes: tensors that share a dtype, reduce
// op, scale factors, contributor count and device kind (CPU or CUDA) are
// packed, in the order they became ready, into batches of at most the
// fusion buffer's size. A
// tensor larger than the buffer runs alone, directly in its own memory.
// The CPU members of a grouped allgather or reducescatter that share a dtype
// (and reduce op) are batched the same way, never with other groups; a
// batch may take twice their bytes (fusion_planner.cc says why).
// Other operations and failed responses pass through unchanged.
//
// The result only has to be deterministic: the coordinator plans, and every
// rank executes the plan in the same order.
#ifndef KOLO_RUNTIME_CORE_FUSION_PLANNER_H_
#define KOLO_RUNTIME_CORE_FUSION_PLANNER_H_

#include <cstdint>
#include <vector>

#include "runtime/wire/message.h"

namespace kolo {

// Bytes of the tensor a single-tensor response describes.
int64_t ResponseTensorBytes(const ResponseTensor& tensor);

// Fuses single-tensor responses. threshold_bytes = 0 disables fusion.
std::vector<Response> PlanFusion(std::vector<Response> singles,
                                 int64_t threshold_bytes);

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_FUSION_PLANNER_H_
