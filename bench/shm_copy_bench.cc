// shm_copy_bench: what moving bytes between two processes of one host costs,
// the ways kolo's shared-memory plane can do it. Two tables:
//
// 1. Per size, process_vm_readv from another process (what
//    KOLO_SHM_SINGLE_COPY_BYTES turns on: one copy straight from the peer's
//    buffer) against memcpy within one process. Median of many repetitions;
//    the source buffer is touched once beforehand, so both read warm pages.
// 2. A hand-over between two processes on different CPUs (where there are
//    two), from the moment the writer starts until the reader has every
//    byte: "one piece" copies everything into shared memory, raises a flag
//    and the reader copies it out (kolo's slot rounds); "pipelined" does
//    the same in 32 KiB chunks through a 256 KiB ring with a count per chunk
//    (kolo's pipelined broadcast), so that the reader copies one chunk out
//    while the writer copies the next in; "readv" has the reader read the
//    writer's buffer with process_vm_readv once the writer says where it
//    is. The three alternate repetition by repetition.
//
// Usage: shm_copy_bench [MAX_BYTES]   (default 64 MiB, sizes from 4 KiB x4;
//                                      the hand-over up to 4 MiB)
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

namespace {

double Seconds() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The hand-over's shared state: control words, then the ring or the whole
// message.
struct alignas(64) Word {
  std::atomic<uint64_t> value{0};
};
struct Control {
  Word ready;    // the reader is waiting for repetition `ready`
  Word posted;   // one piece, readv: the writer's data for repetition `posted`
                 // are in (or where the reader can read them)
  Word written;  // pipelined: chunks the writer has put in
  Word read;     // chunks the reader has taken out
  Word done;     // the reader finished repetition `done`, at `end_ns`
  Word end_ns;
};
constexpr size_t kHandOverMax = size_t{4} << 20;
constexpr size_t kChunk = 32 << 10;
constexpr size_t kRingChunks = 8;
enum Mode { kOnePiece, kPipelined, kReadv, kModes };

uint64_t NowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return uint64_t(t.tv_sec) * 1000000000 + t.tv_nsec;
}

void WaitFor(const Word& word, uint64_t at_least) {
  while (word.value.load(std::memory_order_acquire) < at_least) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
}

void Pin(int cpu) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0 || CPU_COUNT(&set) < 2) {
    return;  // one CPU: both share it
  }
  int seen = 0;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set) || seen++ != cpu) continue;
    CPU_ZERO(&set);
    CPU_SET(c, &set);
    sched_setaffinity(0, sizeof(set), &set);
    return;
  }
}

// The reader's side of repetition `rep` (1-based) of `n` bytes in `mode`;
// `chunks` counts the ring's chunks so far (both sides count alike).
void ReadOne(Control* control, char* shared, char* destination, size_t n,
             Mode mode, uint64_t rep, uint64_t* chunks, pid_t writer,
             const char* writer_buffer) {
  control->ready.value.store(rep, std::memory_order_release);
  if (mode == kOnePiece) {
    WaitFor(control->posted, rep);
    std::memcpy(destination, shared, n);
  } else if (mode == kPipelined) {
    for (size_t offset = 0; offset < n; offset += kChunk, ++*chunks) {
      WaitFor(control->written, *chunks + 1);
      std::memcpy(destination + offset, shared + (*chunks % kRingChunks) * kChunk,
                  std::min(kChunk, n - offset));
      control->read.value.store(*chunks + 1, std::memory_order_release);
    }
  } else {
    WaitFor(control->posted, rep);
    iovec local{destination, n};
    iovec remote{const_cast<char*>(writer_buffer), n};
    if (process_vm_readv(writer, &local, 1, &remote, 1, 0) !=
        static_cast<ssize_t>(n)) {
      std::memset(destination, 0, n);  // the writer reports it
    }
  }
  control->end_ns.value.store(NowNs(), std::memory_order_relaxed);
  control->done.value.store(rep, std::memory_order_release);
}

// The writer's side; returns the hand-over's time in seconds.
double WriteOne(Control* control, char* shared, const char* source, size_t n,
                Mode mode, uint64_t rep, uint64_t* chunks) {
  WaitFor(control->ready, rep);
  const uint64_t start = NowNs();
  if (mode == kOnePiece) {
    std::memcpy(shared, source, n);
    control->posted.value.store(rep, std::memory_order_release);
  } else if (mode == kPipelined) {
    for (size_t offset = 0; offset < n; offset += kChunk, ++*chunks) {
      if (*chunks >= kRingChunks) WaitFor(control->read, *chunks - kRingChunks + 1);
      std::memcpy(shared + (*chunks % kRingChunks) * kChunk, source + offset,
                  std::min(kChunk, n - offset));
      control->written.value.store(*chunks + 1, std::memory_order_release);
    }
  } else {
    control->posted.value.store(rep, std::memory_order_release);
  }
  WaitFor(control->done, rep);
  return (control->end_ns.value.load(std::memory_order_relaxed) - start) / 1e9;
}

// Table 2. Returns non-zero when a hand-over delivered wrong bytes.
int HandOver(size_t max_bytes) {
  const size_t limit = std::min(max_bytes, kHandOverMax);
  // The whole message (one piece) or the ring, whichever is larger.
  const size_t shared_bytes = std::max(limit, kRingChunks * kChunk);
  void* mapped = mmap(nullptr, sizeof(Control) + shared_bytes,
                      PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) {
    std::perror("shm_copy_bench: mmap");
    return 1;
  }
  Control* control = new (mapped) Control();
  char* shared = static_cast<char*>(mapped) + sizeof(Control);
  std::vector<char> source(limit);
  for (size_t i = 0; i < limit; ++i) source[i] = static_cast<char>(i % 251);
  std::vector<char> destination(limit, 0);
  const pid_t writer = getpid();
  // Every size and mode in the same order on both sides.
  std::vector<std::pair<size_t, int>> plan;
  for (size_t n = 4096; n <= limit; n *= 4) {
    const int reps = n < (size_t{1} << 20) ? 1000 : 200;
    plan.emplace_back(n, reps);
  }
  const pid_t reader = fork();
  if (reader < 0) {
    std::perror("shm_copy_bench: fork");
    return 1;
  }
  uint64_t rep = 0, chunks = 0;
  if (reader == 0) {
    // Spinning for a writer that is gone would never end.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != writer) _exit(1);
    Pin(1);
    int wrong = 0;
    for (const auto& [n, reps] : plan) {
      for (int i = 0; i < reps * kModes; ++i) {
        ReadOne(control, shared, destination.data(), n, Mode(i % kModes), ++rep,
                &chunks, writer, source.data());
        if (std::memcmp(destination.data(), source.data(), n) != 0) wrong = 1;
        std::memset(destination.data(), 0, n);
      }
    }
    _exit(wrong);
  }
  Pin(0);
  std::printf("\n%12s %14s %14s %14s   (hand-over between two processes, "
              "median us)\n",
              "bytes", "one piece", "pipelined", "readv");
  for (const auto& [n, reps] : plan) {
    std::vector<double> times[kModes];
    for (int i = 0; i < reps * kModes; ++i) {
      const Mode mode = Mode(i % kModes);
      times[mode].push_back(
          WriteOne(control, shared, source.data(), n, mode, ++rep, &chunks));
    }
    std::printf("%12zu %14.1f %14.1f %14.1f\n", n, Median(times[kOnePiece]) * 1e6,
                Median(times[kPipelined]) * 1e6, Median(times[kReadv]) * 1e6);
  }
  int status = 0;
  waitpid(reader, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "shm_copy_bench: a hand-over delivered wrong bytes\n");
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t max_bytes =
      argc > 1 ? std::strtoull(argv[1], nullptr, 10) : size_t{64} << 20;
  if (max_bytes < 4096) {
    std::fprintf(stderr, "shm_copy_bench: MAX_BYTES must be at least 4096\n");
    return 2;
  }
  std::vector<char> source(max_bytes, 1);
  std::vector<char> destination(max_bytes, 2);
  // The child is a copy of this process: the same addresses hold the same
  // (warm) source buffer there.
  const pid_t child = fork();
  if (child < 0) {
    std::perror("shm_copy_bench: fork");
    return 1;
  }
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pause();
    _exit(0);
  }
  int status = 0;
  std::printf("%12s %14s %10s %14s %10s %8s\n", "bytes", "readv us",
              "GB/s", "memcpy us", "GB/s", "ratio");
  for (size_t n = 4096; n <= max_bytes; n *= 4) {
    const int reps = n < (size_t{1} << 20) ? 2000 : n < (size_t{16} << 20) ? 200 : 20;
    std::vector<double> readv_s, memcpy_s;
    for (int i = 0; i < reps; ++i) {
      iovec local{destination.data(), n};
      iovec remote{source.data(), n};
      const double t0 = Seconds();
      const ssize_t got = process_vm_readv(child, &local, 1, &remote, 1, 0);
      const double t1 = Seconds();
      if (got != static_cast<ssize_t>(n)) {
        std::fprintf(stderr,
                     "shm_copy_bench: process_vm_readv: %s (single copy is "
                     "refused on this host: kolo keeps two copies)\n",
                     got < 0 ? std::strerror(errno) : "short read");
        status = 1;
        break;
      }
      std::memcpy(destination.data(), source.data(), n);
      const double t2 = Seconds();
      readv_s.push_back(t1 - t0);
      memcpy_s.push_back(t2 - t1);
    }
    if (status != 0) break;
    const double r = Median(readv_s), m = Median(memcpy_s);
    std::printf("%12zu %14.1f %10.1f %14.1f %10.1f %8.2f\n", n, r * 1e6,
                n / r / 1e9, m * 1e6, n / m / 1e9, r / m);
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  std::printf("# ratio = readv / memcpy time; single copy pays off where it "
              "is below 2 (two memcpys) by more than a barrier's cost\n");
  if (status != 0) return status;
  std::fflush(stdout);
  return HandOver(max_bytes);
}
