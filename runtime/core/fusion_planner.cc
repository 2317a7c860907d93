// Implementation of the fusion planner.
#include "runtime/core/fusion_planner.h"

#include <string>
#include <tuple>

#include "absl/container/flat_hash_map.h"

namespace kolo {
namespace {

using FusionKey =
    std::tuple<int, int, int, double, double, int, int, std::string>;

// The device kind, not the index: the request is the reference rank's, and
// every rank runs the batch on its own GPU. CPU and CUDA tensors never share
// a batch (they run on different data planes). Allreduces of any group fuse
// with each other; allgathers and reducescatters only within their group.
FusionKey KeyOf(const Response& r) {
  const Request& request = r.tensors.front().request;
  return {static_cast<int>(r.op),
          static_cast<int>(r.dtype),
          static_cast<int>(r.reduce_op),
          r.prescale,
          r.postscale,
          r.contributors,
          static_cast<int>(request.device.kind),
          r.op == OpType::kAllreduce ? std::string() : request.group_key};
}

// Bytes a tensor takes in the fusion buffer, or -1 when it never fuses. A
// fused allgather holds this rank's inputs and everything gathered, a fused
// reducescatter the inputs and this rank's share: at most twice the gathered
// or input bytes.
int64_t FusionBytes(const Response& r) {
  if (r.error_code != 0 || r.tensors.size() != 1) return -1;
  const ResponseTensor& tensor = r.tensors.front();
  switch (r.op) {
    case OpType::kAllreduce:
      return ResponseTensorBytes(tensor);
    case OpType::kAllgather:
    case OpType::kReducescatter: {
      const Request& request = tensor.request;
      if (request.group_size < 2 || request.device.kind != Device::kCpu) {
        return -1;
      }
      if (r.op == OpType::kReducescatter)
        return 2 * ResponseTensorBytes(tensor);
      int64_t rows = 0;
      for (int64_t d : tensor.first_dims) rows += d;
      int64_t row_elements = 1;
      for (size_t i = 1; i < request.shape.size(); ++i) {
        row_elements *= request.shape[i];
      }
      return 2 * rows * row_elements * DataTypeSize(request.dtype);
    }
    default:
      return -1;
  }
}

}  // namespace

int64_t ResponseTensorBytes(const ResponseTensor& tensor) {
  return tensor.request.num_elements() * DataTypeSize(tensor.request.dtype);
}

std::vector<Response> PlanFusion(std::vector<Response> singles,
                                 int64_t threshold_bytes) {
  if (singles.size() < 2) return singles;  // nothing to fuse
  std::vector<Response> plan;
  plan.reserve(singles.size());
  // The open batch for each key: its index in plan and its bytes so far.
  absl::flat_hash_map<FusionKey, std::pair<size_t, int64_t>> open;
  for (Response& single : singles) {
    const int64_t bytes = FusionBytes(single);
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
