// Fuzzes the torch.save format parser (examples/chexnet/models/
// torch_pickle.h) that chexnet_predict and chexnet_train run on downloaded
// weights files: any bytes must give either an error of the documented kinds
// or a layout whose tensor views lie within their storages and whose legacy
// storages lie within the file, never a crash, a leak or an escaped
// exception.
//
// Input: a whole file, read both as a legacy torch.save file and as the
// data.pkl record of a zip-format one.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "absl/strings/string_view.h"
#include "examples/chexnet/models/torch_pickle.h"

namespace {

using kolo::chexnet::StateDictLayout;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "torch_pickle_fuzzer: %s\n", what);
  std::abort();
}

// Checks a parse's result; `file_size` is set for legacy files, whose
// storages must lie within them.
void Check(const absl::StatusOr<StateDictLayout>& layout,
           const uint64_t* file_size) {
  if (!layout.ok()) {
    const absl::StatusCode code = layout.status().code();
    if (code != absl::StatusCode::kInvalidArgument &&
        code != absl::StatusCode::kDataLoss &&
        code != absl::StatusCode::kUnimplemented) {
      Fail("an error of an undocumented kind");
    }
    return;
  }
  std::vector<bool> used(layout->storages.size(), false);
  for (const kolo::chexnet::TensorRecord& tensor : layout->tensors) {
    if (tensor.storage >= layout->storages.size()) {
      Fail("a tensor names a storage that is not in the layout");
    }
    used[tensor.storage] = true;
    const int64_t numel = layout->storages[tensor.storage].numel;
    if (tensor.sizes.size() != tensor.strides.size() || tensor.offset < 0) {
      Fail("a malformed tensor view was accepted");
    }
    // Recomputed independently in 128 bits, where nothing overflows.
    __int128 last = tensor.offset;
    __int128 elements = 1;
    for (size_t i = 0; i < tensor.sizes.size(); ++i) {
      if (tensor.sizes[i] < 0 || tensor.strides[i] < 0) {
        Fail("a negative size or stride was accepted");
      }
      if (tensor.sizes[i] > 0) {
        last += static_cast<__int128>(tensor.sizes[i] - 1) * tensor.strides[i];
      }
      elements *= tensor.sizes[i];
      if (elements > INT64_MAX) Fail("a tensor has more than 2^63 elements");
    }
    if (elements > 0 ? last >= numel : tensor.offset > numel) {
      Fail("a tensor view reaches past its storage");
    }
  }
  for (size_t i = 0; i < used.size(); ++i) {
    if (!used[i]) Fail("a storage no tensor uses is in the layout");
    const kolo::chexnet::StorageRecord& storage = layout->storages[i];
    const __int128 bytes = static_cast<__int128>(storage.numel) *
                           kolo::chexnet::ElementSize(storage.type);
    if (storage.numel < 0 || bytes > INT64_MAX) {
      Fail("a storage's size overflows");
    }
    if (file_size != nullptr && storage.file_offset + bytes > *file_size) {
      Fail("a legacy storage reaches past the end of the file");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  const uint64_t file_size = size;
  Check(kolo::chexnet::ParseLegacyFile(bytes, "weights.pth"), &file_size);
  Check(kolo::chexnet::ParseZipPickle(bytes, "weights.pt"), nullptr);
  return 0;
}
