// Reads the weights files PyTorch users have: torch.save(model.state_dict(),
// path) from Python, without Python.
//
// LibTorch's own torch::pickle_load cannot read these files in LibTorch 1.13
// (a state_dict is a collections.OrderedDict; pytorch/pytorch#100741), and
// torch::load reads TorchScript archives only. ReadStateDict therefore opens
// the file itself and interprets its pickle with a small, closed interpreter
// that never runs Python code (torch_pickle.h, which also says how it stays
// safe on hostile files).
//
// Accepted:
//  - the zip format of torch.save (PyTorch >= 1.6): <archive>/data.pkl plus
//    one record per storage under <archive>/data/;
//  - the legacy format (torch.save(..., _use_new_zipfile_serialization=False)
//    and every file saved by PyTorch < 1.6, e.g. torchvision's downloadable
//    ImageNet weights): magic number, protocol version, system info, the
//    object, the storage keys, then the raw storages;
//  - pickle protocols 2 to 5; a top-level OrderedDict or dict of tensors, or a
//    training checkpoint dict whose "state_dict" entry is one.
// Keys are returned as saved (see load_weights.h for "module." prefixes and
// legacy names). Errors name the file and, for pickle problems, the opcode
// and its byte offset.
#ifndef KOLO_EXAMPLES_CHEXNET_MODELS_STATE_DICT_READER_H_
#define KOLO_EXAMPLES_CHEXNET_MODELS_STATE_DICT_READER_H_

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace kolo {
namespace chexnet {

// A state_dict's entries in file order. Tensors are on the CPU, keep the
// saved dtype and share storage exactly as the saved tensors did.
using StateDict = std::vector<std::pair<std::string, ::torch::Tensor>>;

// Reads a file written by torch.save(state_dict, path). Any file is safe to
// give: every error is a Status naming the file, and storages are checked
// against the bytes in the file before memory is allocated for them.
// Errors: NotFound (no such file), InvalidArgument (cannot open it, not a
// regular file, not a torch.save file, not a state_dict, unsupported or
// oversized pickle content), DataLoss (truncated or inconsistent archive),
// ResourceExhausted (a legacy file larger than memory).
absl::StatusOr<StateDict> ReadStateDict(const std::string& path);

}  // namespace chexnet
}  // namespace kolo

#endif  // KOLO_EXAMPLES_CHEXNET_MODELS_STATE_DICT_READER_H_
