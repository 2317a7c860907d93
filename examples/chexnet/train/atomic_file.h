// AtomicFileWriter: replaces a file so that readers see either the old
// contents or the complete new contents, never a partial file, even if the
// process or the machine dies half-way.
//
// The data goes to "<path>.tmp" in the same directory (so the rename below
// stays within one file system), which is fsync'ed, renamed over <path>, and
// then the directory is fsync'ed so that the rename itself is durable. A
// writer destroyed before Commit() removes its temporary file and leaves
// <path> as it was.
//
// Not thread-safe; one writer per path at a time.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_ATOMIC_FILE_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_ATOMIC_FILE_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kolo::chexnet {

class AtomicFileWriter {
 public:
  // Creates (truncates) the temporary file. Errors name it.
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Open(
      const std::string& path);
  ~AtomicFileWriter();

  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends to the temporary file. After an error the writer is unusable
  // (Commit fails).
  absl::Status Append(const void* data, size_t size);
  // fsync, rename over the destination, fsync the directory.
  absl::Status Commit();

  const std::string& temp_path() const { return temp_path_; }

 private:
  AtomicFileWriter(std::string path, std::string temp_path, int fd);

  std::string path_;
  std::string temp_path_;
  int fd_;
  absl::Status status_;
  bool committed_ = false;
};

// The temporary path AtomicFileWriter uses for `path`.
std::string AtomicTempPath(const std::string& path);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_ATOMIC_FILE_H_
