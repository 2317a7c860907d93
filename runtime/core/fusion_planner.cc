// Implementation of the fusion planner.
#include "runtime/core/fusion_planner.h"

#include <tuple>

#include "absl/container/flat_hash_map.h"

namespace kolo {
namespace {

using FusionKey = std::tuple<int, int, double, double, int, int>;

// The device kind, not the index: the request is the reference rank's, and
// every rank runs the batch on its own GPU. CPU and CUDA tensors never share
// a batch (they run on different data planes).
FusionKey KeyOf(const Response& r) {
  const Device& device = r.tensors.front().request.device;
  return {static_cast<int>(r.dtype),
          static_cast<int>(r.reduce_op),
          r.prescale,
          r.postscale,
          r.contributors,
          static_cast<int>(device.kind)};
}

bool Fusible(const Response& r) {
  return r.op == OpType::kAllreduce && r.error_code == 0 &&
         r.tensors.size() == 1;
}

}  // namespace

int64_t ResponseTensorBytes(const ResponseTensor& tensor) {
  return tensor.request.num_elements() * DataTypeSize(tensor.request.dtype);
}

std::vector<Response> PlanFusion(std::vector<Response> singles,
                                 int64_t threshold_bytes) {
  std::vector<Response> plan;
  plan.reserve(singles.size());
  // The open batch for each key: its index in plan and its bytes so far.
  absl::flat_hash_map<FusionKey, std::pair<size_t, int64_t>> open;
  for (Response& single : singles) {
    const int64_t bytes =
        Fusible(single) ? ResponseTensorBytes(single.tensors.front()) : -1;
    if (bytes < 0 || bytes >= threshold_bytes) {
      plan.push_back(std::move(single));
      continue;
    }
    const FusionKey key = KeyOf(single);
    auto it = open.find(key);
    if (it != open.end() && it->second.second + bytes <= threshold_bytes) {
      plan[it->second.first].tensors.push_back(
          std::move(single.tensors.front()));
      it->second.second += bytes;
      continue;
    }
    open[key] = {plan.size(), bytes};
    plan.push_back(std::move(single));
  }
  return plan;
}

}  // namespace kolo
