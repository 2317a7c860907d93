// --weights FILE: copies a state_dict saved from Python into a ChexnetModel.
//
// Tensors are matched by name after normalising the file's keys:
//  - a leading "module." is stripped (checkpoints of nn.DataParallel and
//    DistributedDataParallel models);
//  - torchvision's legacy DenseNet names are renamed as torchvision does when
//    loading them: "...denselayer1.norm.1.weight" ->
//    "...denselayer1.norm1.weight" (the downloadable ImageNet files use these);
//  - the original CheXNet release (arnoweng/CheXNet model.pth.tar, a
//    DataParallel checkpoint) wraps torchvision's model in an attribute named
//    after the architecture and its head in nn.Sequential(Linear, Sigmoid):
//    a leading "densenet121." ("vgg16.") is stripped, and "classifier.0.weight"
//    matches the head "classifier.weight" (Predict applies the sigmoid).
// A training checkpoint dict is read through its "state_dict" entry
// (see state_dict_reader.h).
// Loading is all or nothing: every problem is collected and reported in one
// InvalidArgument error, and then the model is left unchanged. Problems are a
// model tensor the file lacks, a file tensor the model lacks, and a shape
// mismatch (the message names the key and both shapes), with two exceptions:
//  - the classifier head (ChexnetModel::head_prefix) is skipped when its
//    shape differs, so an ImageNet 1000-class file initialises a 14-finding
//    model's features while the head keeps its fresh initialisation;
//  - batch norm num_batches_tracked buffers absent from files saved before
//    PyTorch 0.4.1 keep their value, as in PyTorch.
// Skips are reported in LoadReport and logged by LoadWeights.
#ifndef KOLO_EXAMPLES_CHEXNET_MODELS_LOAD_WEIGHTS_H_
#define KOLO_EXAMPLES_CHEXNET_MODELS_LOAD_WEIGHTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "examples/chexnet/models/chexnet_model.h"
#include "examples/chexnet/models/state_dict_reader.h"

namespace kolo {
namespace chexnet {

// What a successful load did.
struct LoadReport {
  int64_t loaded = 0;                // model tensors overwritten from the file
  std::vector<std::string> skipped;  // model tensors left as they were
  std::vector<std::string> notes;    // one human-readable line per skip reason
};

// A file key without "module." prefixes and with legacy DenseNet names
// renamed (the model-independent part of the matching above).
std::string NormalizeStateDictKey(const std::string& key);

// Copies `state` into the parameters and buffers of *model (converting dtype
// and device as Tensor::copy_ does).
absl::StatusOr<LoadReport> LoadStateDict(const StateDict& state,
                                         ChexnetModel* model);

// ReadStateDict(path) then LoadStateDict; logs the report's notes at info
// level. Errors name the file.
absl::StatusOr<LoadReport> LoadWeights(const std::string& path,
                                       ChexnetModel* model);

}  // namespace chexnet
}  // namespace kolo

#endif  // KOLO_EXAMPLES_CHEXNET_MODELS_LOAD_WEIGHTS_H_
