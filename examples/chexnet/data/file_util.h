// Whole-file reads and atomic file replacement, with errors that name the
// file and the reason.
#ifndef KOLO_EXAMPLES_CHEXNET_DATA_FILE_UTIL_H_
#define KOLO_EXAMPLES_CHEXNET_DATA_FILE_UTIL_H_

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kolo::chexnet {

// Closes a file descriptor when it goes out of scope.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// The largest file ReadFileToString reads unless told otherwise.
inline constexpr uint64_t kMaxReadFileBytes = uint64_t{1} << 30;  // 1 GiB

// Reads a regular file of at most `max_bytes` bytes. Errors: NotFound when
// it does not exist; InvalidArgument when it is not a regular file (a
// directory, a device such as /dev/zero, a FIFO: reading those may never end
// or never start) or is larger than `max_bytes`; Internal on I/O errors.
absl::StatusOr<std::string> ReadFileToString(
    const std::string& path, uint64_t max_bytes = kMaxReadFileBytes);

// What a finished atomic replacement promises after a crash of the machine.
enum class Durability {
  // The file and its directory are fsync'ed: the new contents survive a
  // power loss once Commit returns. For checkpoints and metrics.
  kSynced,
  // Rename only: readers still never see a partial file, but a machine
  // crash may lose the new contents. For outputs that are cheap to
  // regenerate (synthetic data sets: an fsync per image costs seconds).
  kUnsynced,
};

// Replaces a file so that readers see either the old contents or the
// complete new contents, never a partial file, even if the process dies
// half-way.
//
// The data goes to a temporary file "<path>.tmp.<16 random hex digits>" in
// the same directory (so the rename stays within one file system), created
// with O_EXCL | O_NOFOLLOW: it is always a new file of this writer, never one
// that another user placed or linked there beforehand. Commit() renames it
// over <path> (fsync'ing as `durability` says). A writer destroyed before
// Commit() removes its temporary file and leaves <path> as it was.
//
// Not thread-safe; concurrent writers of one path each get their own
// temporary file, and the last rename wins.
class AtomicFileWriter {
 public:
  // Creates the temporary file. Errors name <path>'s directory and reason.
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Open(
      const std::string& path, Durability durability = Durability::kSynced);
  ~AtomicFileWriter();

  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends to the temporary file. After an error the writer is unusable
  // (Commit fails).
  absl::Status Append(const void* data, size_t size);
  // fsync (kSynced), rename over the destination, fsync the directory
  // (kSynced).
  absl::Status Commit();

  const std::string& temp_path() const { return temp_path_; }

 private:
  AtomicFileWriter(std::string path, std::string temp_path, int fd,
                   Durability durability);

  std::string path_;
  std::string temp_path_;
  int fd_;
  Durability durability_;
  absl::Status status_;
  bool committed_ = false;
};

// Writes `contents` to `path` through an AtomicFileWriter.
absl::Status WriteStringToFile(const std::string& path,
                               absl::string_view contents,
                               Durability durability = Durability::kSynced);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_DATA_FILE_UTIL_H_
