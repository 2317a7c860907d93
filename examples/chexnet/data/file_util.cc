// Whole-file I/O with errors that name the file.
#include "examples/chexnet/data/file_util.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace kolo::chexnet {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

absl::Status ErrnoError(const std::string& path, absl::string_view what,
                        int err) {
  std::string message =
      absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) return ErrnoError(path, "cannot open", errno);
  std::string contents;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) {
    contents.append(buffer, n);
  }
  if (std::ferror(file.get())) return ErrnoError(path, "cannot read", errno);
  return contents;
}

absl::Status WriteStringToFile(const std::string& path,
                               absl::string_view contents) {
  const std::string temp_path = path + ".tmp";
  {
    FilePtr file(std::fopen(temp_path.c_str(), "wb"));
    if (file == nullptr) return ErrnoError(temp_path, "cannot create", errno);
    if (std::fwrite(contents.data(), 1, contents.size(), file.get()) !=
            contents.size() ||
        std::fflush(file.get()) != 0) {
      const int err = errno;
      file.reset();
      std::remove(temp_path.c_str());
      return ErrnoError(temp_path, "cannot write", err);
    }
    if (std::fclose(file.release()) != 0) {
      const int err = errno;
      std::remove(temp_path.c_str());
      return ErrnoError(temp_path, "cannot close", err);
    }
  }
  if (std::rename(temp_path.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(temp_path.c_str());
    return ErrnoError(path, "cannot rename into place", err);
  }
  return absl::OkStatus();
}

}  // namespace kolo::chexnet
