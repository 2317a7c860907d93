// Helpers shared by kolo's LibTorch tests: tensor comparisons whose failure
// messages name the index, the expected and the actual value, and checks
// across ranks.
#ifndef KOLO_TESTS_TORCH_TEST_UTIL_H_
#define KOLO_TESTS_TORCH_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <sstream>
#include <string>

#include "kolo/torch.h"

namespace kolo {
namespace torch {
namespace testing {

// |actual - expected| <= atol + rtol * |expected| element-wise (as
// torch::allclose), compared in float64.
inline ::testing::AssertionResult AllClose(const at::Tensor& actual,
                                           const at::Tensor& expected,
                                           double rtol, double atol) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << ", expected " << expected.sizes();
  }
  const at::Tensor a = actual.detach().to(at::kDouble).flatten();
  const at::Tensor e = expected.detach().to(at::kDouble).flatten();
  const at::Tensor bad = ((a - e).abs() > atol + rtol * e.abs()) | a.isnan();
  const int64_t count = bad.sum().item<int64_t>();
  if (count == 0) return ::testing::AssertionSuccess();
  const int64_t index = bad.nonzero()[0][0].item<int64_t>();
  return ::testing::AssertionFailure()
         << count << " of " << a.numel() << " elements differ; first at flat "
         << "index " << index << ": expected " << e[index].item<double>()
         << ", actual " << a[index].item<double>() << " (rtol " << rtol
         << ", atol " << atol << ")";
}

inline ::testing::AssertionResult Equal(const at::Tensor& actual,
                                        const at::Tensor& expected) {
  return AllClose(actual, expected, 0.0, 0.0);
}

// Whether `body` throws a c10::Error whose message contains `fragment`.
inline ::testing::AssertionResult ThrowsWith(const std::function<void()>& body,
                                             const std::string& fragment) {
  try {
    body();
  } catch (const c10::Error& e) {
    if (std::string(e.what()).find(fragment) != std::string::npos) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << "message lacks '" << fragment << "': " << e.what();
  }
  return ::testing::AssertionFailure() << "no c10::Error thrown";
}

// True when `tensor` is bit-for-bit the same on every rank (allgathers it).
inline ::testing::AssertionResult IdenticalAcrossRanks(
    const at::Tensor& tensor, const std::string& name) {
  const at::Tensor local = tensor.detach().flatten().contiguous();
  const at::Tensor all = allgather(local.unsqueeze(0), "identical." + name);
  for (int64_t r = 0; r < all.size(0); ++r) {
    if (!all[r].equal(local)) {
      ::testing::AssertionResult failure = Equal(all[r], local);
      return ::testing::AssertionFailure()
             << name << " differs between rank " << r << " and rank " << rank()
             << ": " << failure.message();
    }
  }
  return ::testing::AssertionSuccess();
}

// All parameters of `module`, flattened and concatenated.
inline at::Tensor FlatParameters(const ::torch::nn::Module& module) {
  std::vector<at::Tensor> flat;
  for (const at::Tensor& p : module.parameters()) {
    flat.push_back(p.detach().flatten());
  }
  return at::cat(flat);
}

}  // namespace testing
}  // namespace torch
}  // namespace kolo

#endif  // KOLO_TESTS_TORCH_TEST_UTIL_H_
