// Whole-file I/O with errors that name the file; atomic replacement (a new
// temporary file, fsync, rename, directory fsync).
#include "examples/chexnet/data/file_util.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"

namespace kolo::chexnet {
namespace {

absl::Status ErrnoError(const std::string& path, absl::string_view what,
                        int err) {
  std::string message =
      absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

const char* FileTypeName(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// 64 random bits for a temporary file name; another writer's name (or a
// name someone planted) only costs a retry, as O_EXCL refuses it.
uint64_t RandomBits() {
  uint64_t bits = 0;
  if (::getrandom(&bits, sizeof(bits), GRND_NONBLOCK) ==
      static_cast<ssize_t>(sizeof(bits))) {
    return bits;
  }
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return (static_cast<uint64_t>(::getpid()) << 32) ^
         static_cast<uint64_t>(now.tv_nsec) ^
         (static_cast<uint64_t>(now.tv_sec) << 20);
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             uint64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused
  // below like every file that is not a regular one.
  FileDescriptor file(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (file.get() < 0) return ErrnoError(path, "cannot open", errno);
  struct stat info;
  if (::fstat(file.get(), &info) != 0) {
    return ErrnoError(path, "cannot stat", errno);
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a regular file (", FileTypeName(info.st_mode), ")"));
  }
  const uint64_t size = static_cast<uint64_t>(info.st_size);
  if (size > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", size, " bytes is more than the ", max_bytes,
                     " bytes allowed for this file"));
  }
  std::string contents;
  contents.reserve(size);
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = ::read(file.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(path, "cannot read", errno);
    if (n == 0) break;
    // The file may grow while it is read.
    if (contents.size() + static_cast<size_t>(n) > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": grew past the ", max_bytes,
                       " bytes allowed for this file while being read"));
    }
    contents.append(buffer, static_cast<size_t>(n));
  }
  return contents;
}

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Open(
    const std::string& path, Durability durability) {
  constexpr int kAttempts = 16;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::string temp_path =
        absl::StrCat(path, ".tmp.", absl::Hex(RandomBits(), absl::kZeroPad16));
    const int fd =
        ::open(temp_path.c_str(),
               O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) {
      return std::unique_ptr<AtomicFileWriter>(
          new AtomicFileWriter(path, std::move(temp_path), fd, durability));
    }
    if (errno != EEXIST) {
      return ErrnoError(
          path,
          absl::StrCat("cannot create a temporary file in ", DirectoryOf(path)),
          errno);
    }
  }
  return absl::AlreadyExistsError(
      absl::StrCat(path, ": ", kAttempts, " random temporary file names in ",
                   DirectoryOf(path), " were all taken"));
}

AtomicFileWriter::AtomicFileWriter(std::string path, std::string temp_path,
                                   int fd, Durability durability)
    : path_(std::move(path)),
      temp_path_(std::move(temp_path)),
      fd_(fd),
      durability_(durability) {}

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
      status_ = ErrnoError(temp_path_, "cannot write", errno);
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
  const bool synced = durability_ == Durability::kSynced;
  if (synced && ::fsync(fd_) != 0) {
    return ErrnoError(temp_path_, "fsync failed", errno);
  }
  const int close_result = ::close(fd_);
  fd_ = -1;
  if (close_result != 0) return ErrnoError(temp_path_, "close failed", errno);
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    return ErrnoError(path_, "cannot rename into place", errno);
  }
  committed_ = true;
  if (!synced) return absl::OkStatus();
  // Make the rename durable too; a failure here does not undo it.
  const std::string dir = DirectoryOf(path_);
  FileDescriptor dir_fd(
      ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0) {
    return ErrnoError(dir, "cannot open directory", errno);
  }
  if (::fsync(dir_fd.get()) != 0) return ErrnoError(dir, "fsync failed", errno);
  return absl::OkStatus();
}

absl::Status WriteStringToFile(const std::string& path,
                               absl::string_view contents,
                               Durability durability) {
  absl::StatusOr<std::unique_ptr<AtomicFileWriter>> writer =
      AtomicFileWriter::Open(path, durability);
  if (!writer.ok()) return writer.status();
  if (absl::Status status = (*writer)->Append(contents.data(), contents.size());
      !status.ok()) {
    return status;
  }
  return (*writer)->Commit();
}

}  // namespace kolo::chexnet
