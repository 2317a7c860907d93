// Atomic file replacement: temp file, fsync, rename, directory fsync.
#include "examples/chexnet/train/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kolo::chexnet {
namespace {

absl::Status ErrnoStatus(const std::string& path, const char* what, int err) {
  return absl::InternalError(
      absl::StrCat(path, ": ", what, ": ", std::strerror(err)));
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

std::string AtomicTempPath(const std::string& path) {
  return path + ".tmp";
}

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Open(
    const std::string& path) {
  std::string temp_path = AtomicTempPath(path);
  const int fd =
      ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(temp_path, "cannot create", errno);
  return std::unique_ptr<AtomicFileWriter>(
      new AtomicFileWriter(path, std::move(temp_path), fd));
}

AtomicFileWriter::AtomicFileWriter(std::string path, std::string temp_path,
                                   int fd)
    : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

absl::Status AtomicFileWriter::Append(const void* data, size_t size) {
  if (!status_.ok()) return status_;
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, bytes, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      status_ = ErrnoStatus(temp_path_, "cannot write", errno);
      return status_;
    }
    bytes += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Commit() {
  if (!status_.ok()) return status_;
  if (committed_ || fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": already committed"));
  }
  if (::fsync(fd_) != 0) return ErrnoStatus(temp_path_, "fsync failed", errno);
  const int close_result = ::close(fd_);
  fd_ = -1;
  if (close_result != 0) return ErrnoStatus(temp_path_, "close failed", errno);
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    return ErrnoStatus(path_, "cannot rename into place", errno);
  }
  committed_ = true;
  // Make the rename durable too; a failure here does not undo it.
  const std::string dir = DirectoryOf(path_);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoStatus(dir, "cannot open directory", errno);
  const int sync_result = ::fsync(dir_fd);
  const int sync_errno = errno;
  ::close(dir_fd);
  if (sync_result != 0) return ErrnoStatus(dir, "fsync failed", sync_errno);
  return absl::OkStatus();
}

}  // namespace kolo::chexnet
