// The torch.save file formats without LibTorch: a closed pickle interpreter
// and the layouts of the zip and legacy containers, reduced to a description
// of the state_dict (tensor names, strided views, storages) that
// state_dict_reader.cc turns into tensors. Kept free of LibTorch so that the
// part that reads untrusted bytes can be fuzzed on its own
// (fuzz/torch_pickle_fuzzer.cc).
//
// The interpreter never runs Python code: it knows the containers (dict,
// OrderedDict, list, tuple), scalars and strings, and the tensor rebuild
// functions and storage types torch.save emits; any other class becomes an
// opaque value that is an error only if it ends up where a tensor is
// expected.
//
// Any input is safe to parse: every object lives in one arena that is freed
// without recursion (so deep or cyclic object graphs cannot overflow the
// stack), nothing recurses over the object graph, dictionaries are hashed,
// and PickleLimits bounds what a file can make the reader build. Every
// tensor view is checked to lie within its storage, and in legacy files every
// storage is checked against the bytes that follow the pickles, before
// anything is allocated for tensor data. Errors name the file and, for pickle
// problems, the opcode and its byte offset.
#ifndef KOLO_EXAMPLES_CHEXNET_MODELS_TORCH_PICKLE_H_
#define KOLO_EXAMPLES_CHEXNET_MODELS_TORCH_PICKLE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kolo {
namespace chexnet {

// What one file may make the reader build. The defaults are far above what
// real state_dicts need (DenseNet-121's pickle holds about 20000 objects,
// nested 6 deep) and keep the reader's memory within a few hundred MiB.
struct PickleLimits {
  // Values created (every opcode that pushes a new value creates one).
  size_t max_objects = size_t{1} << 21;
  // Items and entries held by containers, counting copies.
  size_t max_elements = size_t{1} << 23;
  // Nesting of containers, counted as they are built.
  size_t max_depth = 1000;
  // Entries of the pickle machine's stack, marks and memo.
  size_t max_stack = size_t{1} << 21;
};

// The element types of torch.save storages.
enum class StorageType {
  kFloat32,
  kFloat64,
  kFloat16,
  kBFloat16,
  kInt64,
  kInt32,
  kInt16,
  kInt8,
  kUInt8,
  kBool,
};

// Bytes per element of `type`.
int64_t ElementSize(StorageType type);

// One storage (a flat array of elements) the state_dict's tensors view.
struct StorageRecord {
  // Zip files: the record "data/<key>"; legacy files: the key in the storage
  // list.
  std::string key;
  StorageType type = StorageType::kFloat32;
  int64_t numel = 0;  // numel * ElementSize(type) fits an int64_t
  // Legacy files only: where the elements start in the file (checked to lie
  // within it).
  uint64_t file_offset = 0;
};

// One state_dict entry: a strided view of storages[storage], checked to stay
// within its numel elements.
struct TensorRecord {
  std::string name;
  size_t storage = 0;
  int64_t offset = 0;  // in elements
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;  // in elements, one per size
};

struct StateDictLayout {
  std::vector<StorageRecord> storages;  // each one referenced at least once
  std::vector<TensorRecord> tensors;    // in file order
};

// Interprets the data.pkl record of a zip-format torch.save file (PyTorch >=
// 1.6). The root object is a state_dict (an OrderedDict or dict of tensors)
// or a training checkpoint dict whose "state_dict" entry is one. `path`
// names the file in errors: InvalidArgument for content that is not a
// state_dict or not supported, DataLoss for a truncated pickle.
absl::StatusOr<StateDictLayout> ParseZipPickle(
    absl::string_view pickle, const std::string& path,
    const PickleLimits& limits = PickleLimits());

// Interprets a whole legacy torch.save file (torch.save(...,
// _use_new_zipfile_serialization=False) and every file saved by PyTorch <
// 1.6): magic number, protocol version, system info, the object, the storage
// keys, then each storage's element count and raw elements. The storages'
// file_offset is set. Errors as ParseZipPickle; Unimplemented for big-endian
// files.
absl::StatusOr<StateDictLayout> ParseLegacyFile(
    absl::string_view file, const std::string& path,
    const PickleLimits& limits = PickleLimits());

}  // namespace chexnet
}  // namespace kolo

#endif  // KOLO_EXAMPLES_CHEXNET_MODELS_TORCH_PICKLE_H_
