// torch.save files read into tensors. The container formats and the pickle
// are interpreted by torch_pickle.h, without LibTorch; this file reads the
// file and the storages' bytes and builds the tensors. See
// state_dict_reader.h.
#include "examples/chexnet/models/state_dict_reader.h"

#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/models/torch_pickle.h"

namespace kolo {
namespace chexnet {
namespace {

torch::Dtype ToDtype(StorageType type) {
  switch (type) {
    case StorageType::kFloat32:
      return torch::kFloat32;
    case StorageType::kFloat64:
      return torch::kFloat64;
    case StorageType::kFloat16:
      return torch::kFloat16;
    case StorageType::kBFloat16:
      return torch::kBFloat16;
    case StorageType::kInt64:
      return torch::kInt64;
    case StorageType::kInt32:
      return torch::kInt32;
    case StorageType::kInt16:
      return torch::kInt16;
    case StorageType::kInt8:
      return torch::kInt8;
    case StorageType::kUInt8:
      return torch::kUInt8;
    case StorageType::kBool:
      return torch::kBool;
  }
  return torch::kUInt8;
}

absl::Status CheckLittleEndianHost() {
  const uint16_t probe = 1;
  uint8_t first;
  std::memcpy(&first, &probe, 1);
  if (first != 1) {
    return absl::UnimplementedError(
        "reading torch.save files needs a little-endian host");
  }
  return absl::OkStatus();
}

std::string WithoutBacktrace(const std::exception& e) {
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    return error->what_without_backtrace();
  }
  return e.what();
}

// Reads exactly `n` bytes at `offset`; false at the end of the file or on an
// error.
bool ReadAt(int fd, uint64_t offset, void* buffer, size_t n) {
  char* out = static_cast<char*>(buffer);
  while (n > 0) {
    const ssize_t got = ::pread(fd, out, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    out += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<size_t>(got);
  }
  return true;
}

// The zip reader reads through the descriptor already checked to be a
// regular file, instead of opening the path again.
class FileReadAdapter : public caffe2::serialize::ReadAdapterInterface {
 public:
  FileReadAdapter(int fd, uint64_t size) : fd_(fd), size_(size) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n,
              const char* what) const override {
    TORCH_CHECK(pos <= size_ && n <= size_ - pos && ReadAt(fd_, pos, buf, n),
                "cannot read ", n, " bytes at offset ", pos, " (", what, ")");
    return n;
  }

 private:
  int fd_;
  uint64_t size_;
};

// The state_dict's tensors as views of `storages` (one flat CPU tensor per
// layout.storages entry).
StateDict BuildStateDict(const StateDictLayout& layout,
                         const std::vector<torch::Tensor>& storages) {
  StateDict state;
  state.reserve(layout.tensors.size());
  for (const TensorRecord& tensor : layout.tensors) {
    state.emplace_back(tensor.name,
                       storages[tensor.storage].as_strided(
                           tensor.sizes, tensor.strides, tensor.offset));
  }
  return state;
}

absl::StatusOr<StateDict> ReadZipFile(const std::string& path, int fd,
                                      uint64_t file_size) {
  try {
    caffe2::serialize::PyTorchStreamReader reader(
        std::make_shared<FileReadAdapter>(fd, file_size));
    if (reader.hasRecord("byteorder")) {
      auto [data, size] = reader.getRecord("byteorder");
      const std::string order(static_cast<const char*>(data.get()), size);
      if (order != "little") {
        return absl::UnimplementedError(absl::StrCat(path, ": byte order \"",
                                                     order.substr(0, 16),
                                                     "\" is not supported"));
      }
    }
    if (!reader.hasRecord("data.pkl")) {
      return absl::InvalidArgumentError(absl::StrCat(
          path,
          " is a zip archive without data.pkl: not a torch.save file "
          "(a TorchScript archive? load it with torch::jit::load)"));
    }
    auto [pickle, pickle_size] = reader.getRecord("data.pkl");
    absl::StatusOr<StateDictLayout> layout = ParseZipPickle(
        absl::string_view(static_cast<const char*>(pickle.get()), pickle_size),
        path);
    if (!layout.ok()) return layout.status();

    std::vector<torch::Tensor> storages;
    for (const StorageRecord& storage : layout->storages) {
      const std::string record = "data/" + storage.key;
      if (!reader.hasRecord(record)) {
        return absl::DataLossError(
            absl::StrCat(path, ": storage record ", record, " is missing"));
      }
      // torch.save stores records uncompressed: a storage must fit in the
      // bytes that follow its record's start, which is checked before its
      // memory is allocated.
      const uint64_t expected =
          static_cast<uint64_t>(storage.numel) * ElementSize(storage.type);
      const uint64_t offset = reader.getRecordOffset(record);
      if (offset > file_size || expected > file_size - offset) {
        return absl::DataLossError(absl::StrCat(
            path, ": storage record ", record, " needs ", expected,
            " bytes but the file ends ",
            file_size - std::min(offset, file_size),
            " bytes after its start (truncated, or a compressed archive, "
            "which torch.save never writes)"));
      }
      auto [data, size] = reader.getRecord(record);
      if (size != expected) {
        return absl::DataLossError(
            absl::StrCat(path, ": storage record ", record, " has ", size,
                         " bytes, expected ", storage.numel, " x ",
                         ElementSize(storage.type)));
      }
      // The tensor adopts the record's buffer: no copy.
      auto owner = std::make_shared<at::DataPtr>(std::move(data));
      storages.push_back(torch::from_blob(
          owner->get(), {storage.numel}, [owner](void*) {},
          torch::TensorOptions().dtype(ToDtype(storage.type))));
    }
    return BuildStateDict(*layout, storages);
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat(path,
                     ": cannot read the torch.save zip archive (truncated or "
                     "corrupt?): ",
                     WithoutBacktrace(e)));
  }
}

absl::StatusOr<StateDict> ReadLegacyFile(const std::string& path, int fd,
                                         uint64_t file_size) {
  try {
    std::string bytes(file_size, '\0');
    if (!ReadAt(fd, 0, bytes.data(), bytes.size())) {
      return absl::DataLossError(absl::StrCat(
          "cannot read ", path, ": ", errno != 0 ? std::strerror(errno) : "",
          " (did it shrink while being read?)"));
    }
    absl::StatusOr<StateDictLayout> layout = ParseLegacyFile(bytes, path);
    if (!layout.ok()) return layout.status();
    std::vector<torch::Tensor> storages;
    for (const StorageRecord& storage : layout->storages) {
      torch::Tensor elements =
          torch::empty({storage.numel}, ToDtype(storage.type));
      std::memcpy(
          elements.data_ptr(), bytes.data() + storage.file_offset,
          static_cast<size_t>(storage.numel) * ElementSize(storage.type));
      storages.push_back(std::move(elements));
    }
    return BuildStateDict(*layout, storages);
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        path, ": cannot hold the legacy torch.save file in memory: ",
        WithoutBacktrace(e)));
  }
}

}  // namespace

absl::StatusOr<StateDict> ReadStateDict(const std::string& path) {
  if (absl::Status status = CheckLittleEndianHost(); !status.ok()) {
    return status;
  }
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is rejected
  // below like every other file that is not a regular one.
  FileDescriptor file(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (file.get() < 0) {
    const int err = errno;
    const std::string message = absl::StrCat("cannot open weights file ", path,
                                             ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    return absl::InvalidArgumentError(message);
  }
  struct stat info;
  if (::fstat(file.get(), &info) != 0 || !S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file: not a torch.save file"));
  }
  const uint64_t size = static_cast<uint64_t>(info.st_size);
  char head[4] = {0, 0, 0, 0};
  const bool has_head =
      size >= 2 && ReadAt(file.get(), 0, head, std::min<uint64_t>(size, 4));
  if (has_head && size >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) {
    return ReadZipFile(path, file.get(), size);
  }
  if (has_head && static_cast<uint8_t>(head[0]) == 0x80) {
    return ReadLegacyFile(path, file.get(), size);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, " is not a torch.save file (neither a zip archive nor a pickle)"));
}

}  // namespace chexnet
}  // namespace kolo
