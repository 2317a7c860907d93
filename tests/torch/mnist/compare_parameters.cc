// compare_parameters: checks the MNIST drop-in's result. Usage:
//   compare_parameters REFERENCE RANK0 [RANK1 ...]
// Each file holds a std::vector<torch::Tensor> (torch::save). Every rank's
// parameters must equal rank 0's bit for bit, and the reference's within
// float rounding (rtol 1e-4, atol 1e-5). Prints the largest difference;
// exits 1 on a mismatch, naming the tensor and the first differing element.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace {

std::vector<torch::Tensor> Load(const char* path) {
  std::vector<torch::Tensor> tensors;
  torch::load(tensors, path);
  return tensors;
}

// Empty when close; otherwise what differs.
std::string Difference(const std::vector<torch::Tensor>& actual,
                       const std::vector<torch::Tensor>& expected, double rtol,
                       double atol) {
  if (actual.size() != expected.size()) {
    return std::to_string(actual.size()) + " tensors, expected " +
           std::to_string(expected.size());
  }
  for (size_t i = 0; i < actual.size(); ++i) {
    const torch::Tensor a = actual[i].flatten().to(torch::kDouble);
    const torch::Tensor e = expected[i].flatten().to(torch::kDouble);
    if (a.sizes() != e.sizes()) return "tensor " + std::to_string(i) + " shape";
    const torch::Tensor bad = (a - e).abs() > atol + rtol * e.abs();
    if (bad.any().item<bool>()) {
      const int64_t k = bad.nonzero()[0][0].item<int64_t>();
      return "tensor " + std::to_string(i) + " element " + std::to_string(k) +
             ": expected " + std::to_string(e[k].item<double>()) + ", got " +
             std::to_string(a[k].item<double>());
    }
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s REFERENCE RANK0 [RANK1 ...]\n", argv[0]);
    return 2;
  }
  const std::vector<torch::Tensor> reference = Load(argv[1]);
  const std::vector<torch::Tensor> rank0 = Load(argv[2]);
  bool identical = true;
  for (int r = 1; r + 2 < argc; ++r) {
    const std::string diff = Difference(Load(argv[r + 2]), rank0, 0, 0);
    if (!diff.empty()) {
      std::printf("rank %d differs from rank 0: %s\n", r, diff.c_str());
      identical = false;
    }
  }
  const std::string diff = Difference(rank0, reference, 1e-4, 1e-5);
  if (!diff.empty()) {
    std::printf("rank 0 differs from the single-process run: %s\n",
                diff.c_str());
  }
  double largest = 0;
  for (size_t i = 0; i < reference.size() && i < rank0.size(); ++i) {
    largest =
        std::max(largest, (rank0[i] - reference[i]).abs().max().item<double>());
  }
  std::printf(
      "%d ranks bit-identical: %s; equal to one process within tolerance: "
      "%s (largest difference %g)\n",
      argc - 2, identical ? "yes" : "no", diff.empty() ? "yes" : "no", largest);
  const int status = identical && diff.empty() ? 0 : 1;
  return status;
}
