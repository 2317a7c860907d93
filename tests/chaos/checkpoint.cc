#include "tests/chaos/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/chaos/regression_model.h"

namespace kolo {
namespace chaos {
namespace {

constexpr char kMagic[8] = {'K', 'O', 'L', 'O', 'C', 'K', 'P', 'T'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kHeaderBytes = 96;
constexpr size_t kDigestOffset = 48;
constexpr size_t kDigestBytes = 32;
constexpr int64_t kFileBytes =
    kHeaderBytes + kParamCount * static_cast<int64_t>(sizeof(float));
constexpr char kPrefix[] = "ckpt-";
constexpr char kSuffix[] = ".kolo";
constexpr char kTemporaryPrefix[] = ".ckpt-";

template <typename T>
void Put(unsigned char* header, size_t offset, T value) {
  std::memcpy(header + offset, &value, sizeof(T));
}
template <typename T>
T Get(const unsigned char* header, size_t offset) {
  T value;
  std::memcpy(&value, header + offset, sizeof(T));
  return value;
}

void EncodeHeader(const CheckpointMeta& meta, unsigned char* header) {
  std::memset(header, 0, kHeaderBytes);
  std::memcpy(header, kMagic, sizeof(kMagic));
  Put<uint32_t>(header, 8, kVersion);
  Put<uint32_t>(header, 12, kHeaderBytes);
  Put<int64_t>(header, 16, meta.step);
  Put<int32_t>(header, 24, meta.world_size);
  Put<int32_t>(header, 28, meta.batch);
  Put<uint64_t>(header, 32, meta.seed);
  Put<int64_t>(header, 40, kParamCount);
}

// SHA-256 of the header (digest field zero) and the parameters.
void Digest(const unsigned char* header, const std::vector<float>& params,
            unsigned char* digest) {
  unsigned char zeroed[kHeaderBytes];
  std::memcpy(zeroed, header, kHeaderBytes);
  std::memset(zeroed + kDigestOffset, 0, kDigestBytes);
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  EVP_DigestInit_ex(context, EVP_sha256(), nullptr);
  EVP_DigestUpdate(context, zeroed, kHeaderBytes);
  EVP_DigestUpdate(context, params.data(), params.size() * sizeof(float));
  unsigned int length = 0;
  EVP_DigestFinal_ex(context, digest, &length);
  EVP_MD_CTX_free(context);
}

std::string Hex(const unsigned char* bytes, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) absl::StrAppendFormat(&out, "%02x", bytes[i]);
  return out;
}

Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

Status WriteAll(int fd, const void* data, size_t size,
                const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("cannot write", path);
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// The step in a checkpoint file name, or -1 for any other name.
int64_t StepOfName(const std::string& name) {
  const size_t prefix = sizeof(kPrefix) - 1, suffix = sizeof(kSuffix) - 1;
  if (name.size() <= prefix + suffix || name.compare(0, prefix, kPrefix) != 0 ||
      name.compare(name.size() - suffix, suffix, kSuffix) != 0) {
    return -1;
  }
  int64_t step = 0;
  for (size_t i = prefix; i < name.size() - suffix; ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (int64_t{1} << 50)) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* entry = readdir(d)) names.emplace_back(entry->d_name);
  closedir(d);
  return names;
}

}  // namespace

std::string CheckpointDigest(const CheckpointMeta& meta,
                             const std::vector<float>& params) {
  unsigned char header[kHeaderBytes];
  EncodeHeader(meta, header);
  unsigned char digest[kDigestBytes];
  Digest(header, params, digest);
  return Hex(digest, kDigestBytes);
}

StatusOr<std::string> WriteCheckpoint(const std::string& dir,
                                      const CheckpointMeta& meta,
                                      const std::vector<float>& params,
                                      int keep) {
  unsigned char header[kHeaderBytes];
  EncodeHeader(meta, header);
  Digest(header, params, header + kDigestOffset);
  static std::atomic<int> counter{0};
  const std::string temporary =
      absl::StrFormat("%s/%s%lld.tmp-%d-%d", dir, kTemporaryPrefix,
                      static_cast<long long>(meta.step), getpid(), counter++);
  const std::string final_path =
      absl::StrFormat("%s/%s%08lld%s", dir, kPrefix,
                      static_cast<long long>(meta.step), kSuffix);
  const int fd =
      open(temporary.c_str(),
           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", temporary);
  Status status = WriteAll(fd, header, kHeaderBytes, temporary);
  if (status.ok()) {
    status =
        WriteAll(fd, params.data(), params.size() * sizeof(float), temporary);
  }
  if (status.ok() && fsync(fd) != 0)
    status = ErrnoError("cannot fsync", temporary);
  if (close(fd) != 0 && status.ok())
    status = ErrnoError("cannot close", temporary);
  if (status.ok() && rename(temporary.c_str(), final_path.c_str()) != 0) {
    status = ErrnoError("cannot rename to", final_path);
  }
  if (!status.ok()) {
    unlink(temporary.c_str());
    return status;
  }
  // The rename is durable once the folder is.
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoError("cannot open", dir);
  const bool synced = fsync(dir_fd) == 0;
  close(dir_fd);
  if (!synced) return ErrnoError("cannot fsync", dir);
  const std::vector<std::string> all = ListCheckpoints(dir);
  for (size_t i = static_cast<size_t>(keep); i < all.size(); ++i) {
    unlink(all[i].c_str());
  }
  return final_path;
}

StatusOr<Checkpoint> ReadCheckpoint(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path);
  struct stat info;
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file"));
  }
  if (info.st_size != kFileBytes) {
    close(fd);
    return absl::DataLossError(absl::StrCat(
        path, " has ", info.st_size, " bytes; a checkpoint has ", kFileBytes));
  }
  unsigned char header[kHeaderBytes];
  Checkpoint checkpoint;
  checkpoint.params.resize(kParamCount);
  bool complete = pread(fd, header, kHeaderBytes, 0) == kHeaderBytes;
  char* p = reinterpret_cast<char*>(checkpoint.params.data());
  size_t left = kParamCount * sizeof(float);
  off_t offset = kHeaderBytes;
  while (complete && left > 0) {
    const ssize_t n = pread(fd, p, left, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      complete = false;
      break;
    }
    p += n;
    left -= static_cast<size_t>(n);
    offset += n;
  }
  close(fd);
  if (!complete) return ErrnoError("cannot read", path);
  if (std::memcmp(header, kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError(absl::StrCat(path, " is not a checkpoint"));
  }
  if (Get<uint32_t>(header, 8) != kVersion ||
      Get<uint32_t>(header, 12) != kHeaderBytes ||
      Get<int64_t>(header, 40) != kParamCount) {
    return absl::DataLossError(absl::StrCat(
        path, ": unknown version, header size or parameter count"));
  }
  unsigned char digest[kDigestBytes];
  Digest(header, checkpoint.params, digest);
  if (std::memcmp(digest, header + kDigestOffset, kDigestBytes) != 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": digest mismatch (stored ",
                     Hex(header + kDigestOffset, kDigestBytes), ", computed ",
                     Hex(digest, kDigestBytes), ")"));
  }
  checkpoint.meta.step = Get<int64_t>(header, 16);
  checkpoint.meta.world_size = Get<int32_t>(header, 24);
  checkpoint.meta.batch = Get<int32_t>(header, 28);
  checkpoint.meta.seed = Get<uint64_t>(header, 32);
  checkpoint.digest_hex = Hex(digest, kDigestBytes);
  if (checkpoint.meta.step < 0 || checkpoint.meta.world_size < 1 ||
      checkpoint.meta.world_size > kMaxRanks || checkpoint.meta.batch < 1) {
    return absl::DataLossError(
        absl::StrCat(path, ": step, world size or batch out of range"));
  }
  return checkpoint;
}

std::vector<std::string> ListCheckpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  for (const std::string& name : Names(dir)) {
    const int64_t step = StepOfName(name);
    if (step >= 0) found.emplace_back(step, absl::StrCat(dir, "/", name));
  }
  std::sort(found.rbegin(), found.rend());
  std::vector<std::string> paths;
  for (auto& [step, path] : found) paths.push_back(std::move(path));
  return paths;
}

void RemoveStaleTemporaries(const std::string& dir) {
  const size_t prefix = sizeof(kTemporaryPrefix) - 1;
  for (const std::string& name : Names(dir)) {
    if (name.compare(0, prefix, kTemporaryPrefix) == 0 &&
        name.find(".tmp-") != std::string::npos) {
      unlink(absl::StrCat(dir, "/", name).c_str());
    }
  }
}

}  // namespace chaos
}  // namespace kolo
