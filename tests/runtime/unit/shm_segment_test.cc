// Tests of shared-memory segments: stale-segment cleanup decides by the
// creator's robust mutex, never by PIDs, so it removes a segment whose
// creator died during initialisation and leaves alone one whose creator is
// still starting; opening checks owner, mode and size.
#include "runtime/backend/shm/shm_segment.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <string>

#include "absl/strings/str_cat.h"

namespace kolo {
namespace {

std::string UniqueName(int local_rank) {
  std::random_device random;
  const uint64_t token = (uint64_t{random()} << 32) ^ random();
  return ShmSegmentName(getpid(), token, local_rank);
}

bool Exists(const std::string& name) {
  const int fd = shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) return false;
  close(fd);
  return true;
}

// Forks a child that creates `name` and then sleeps holding it; returns
// once the segment exists.
pid_t CreateInChild(const std::string& name) {
  int ready[2];
  EXPECT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  if (child == 0) {
    close(ready[0]);
    StatusOr<ShmSegment> segment = ShmSegment::Create(name, 4096);
    const char ok = segment.ok() ? 1 : 0;
    (void)!write(ready[1], &ok, 1);
    pause();  // until killed
    _exit(0);
  }
  close(ready[1]);
  char ok = 0;
  EXPECT_EQ(read(ready[0], &ok, 1), 1);
  close(ready[0]);
  EXPECT_EQ(ok, 1);
  return child;
}

TEST(ShmSegment, CleanupLeavesAStartingJobAloneAndRemovesACrashedOne) {
  const std::string name = UniqueName(0);
  const pid_t child = CreateInChild(name);
  // The creator lives (a job still starting): never removed, whatever its
  // PID looks like from here.
  RemoveStaleSegments();
  EXPECT_TRUE(Exists(name)) << "a starting job's segment was removed";
  // The creator dies before unlinking: removed.
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_GE(RemoveStaleSegments(), 1);
  EXPECT_FALSE(Exists(name)) << "a crashed job's segment was left behind";
}

TEST(ShmSegment, CleanupLeavesYoungHeaderlessFilesAlone) {
  // A segment being created (no header yet) is not garbage either.
  const std::string name = UniqueName(1);
  const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  RemoveStaleSegments();
  EXPECT_TRUE(Exists(name));
  shm_unlink(name.c_str());
}

TEST(ShmSegment, OpenChecksModeAndSize) {
  const std::string name = UniqueName(2);
  StatusOr<ShmSegment> own = ShmSegment::Create(name, 4096);
  ASSERT_TRUE(own.ok()) << own.status();
  // The expected size.
  EXPECT_TRUE(ShmSegment::Open(name, 4096).ok());
  // Another size: refused, not mapped short (which would SIGBUS later).
  StatusOr<ShmSegment> wrong_size = ShmSegment::Open(name, 8192);
  EXPECT_EQ(wrong_size.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(wrong_size.status().message().find("expected owner"),
            std::string::npos)
      << wrong_size.status();
  // Another mode: refused.
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  fchmod(fd, 0644);
  close(fd);
  EXPECT_FALSE(ShmSegment::Open(name, 4096).ok());
  own->Unlink();
  EXPECT_FALSE(Exists(name));
}

}  // namespace
}  // namespace kolo
