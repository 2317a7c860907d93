// Checkpoints of the chaos test's model: written atomically, validated
// before use.
//
// File layout (native byte order; the file is read on the machine that
// wrote it):
//   magic "KOLOCKPT", u32 version, u32 header bytes (96), i64 step (updates
//   applied), i32 world size, i32 batch, u64 seed, i64 parameter count,
//   32-byte SHA-256 digest, 16 zero bytes; then the parameters as float32.
// The digest covers the header (with the digest field zeroed) and the
// parameters, so a torn, truncated or altered file is detected.
//
// A checkpoint is written to a unique temporary file in the target folder
// (O_EXCL | O_NOFOLLOW), fsynced, renamed over `ckpt-<step>.kolo` and the
// folder fsynced: a crash at any moment leaves either the previous files or
// the new one, never a partial checkpoint under a checkpoint's name.
#ifndef KOLO_TESTS_CHAOS_CHECKPOINT_H_
#define KOLO_TESTS_CHAOS_CHECKPOINT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "kolo/status.h"

namespace kolo {
namespace chaos {

struct CheckpointMeta {
  int64_t step = 0;
  int32_t world_size = 0;
  int32_t batch = 0;
  uint64_t seed = 0;
};

struct Checkpoint {
  CheckpointMeta meta;
  std::string digest_hex;
  std::vector<float> params;
};

// The digest a checkpoint of these parameters would carry.
std::string CheckpointDigest(const CheckpointMeta& meta,
                             const std::vector<float>& params);

// Writes dir/ckpt-<step>.kolo atomically and returns its path; removes the
// folder's older checkpoints beyond the newest `keep`.
StatusOr<std::string> WriteCheckpoint(const std::string& dir,
                                      const CheckpointMeta& meta,
                                      const std::vector<float>& params,
                                      int keep);

// Reads and validates one checkpoint file: size, magic, version, parameter
// count and digest. InvalidArgument/DataLoss name the file and the fault.
StatusOr<Checkpoint> ReadCheckpoint(const std::string& path);

// The checkpoint files in `dir`, newest step first.
std::vector<std::string> ListCheckpoints(const std::string& dir);

// Removes temporary files that a writer killed mid-write left in `dir`.
void RemoveStaleTemporaries(const std::string& dir);

}  // namespace chaos
}  // namespace kolo

#endif  // KOLO_TESTS_CHAOS_CHECKPOINT_H_
