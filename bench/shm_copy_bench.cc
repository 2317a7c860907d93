// shm_copy_bench: is single copy worth it on this host? Times, per size,
// process_vm_readv from another process (what KOLO_SHM_SINGLE_COPY_BYTES
// turns on: one copy straight from the peer's buffer) against memcpy within
// one process (what kolo's two-copy path does twice, through cache-sized
// shared slots). Median of many repetitions; the source buffer is touched
// once beforehand, so both read warm pages.
//
// Usage: shm_copy_bench [MAX_BYTES]   (default 64 MiB, sizes from 4 KiB x4)
#include <signal.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
  return status;
}
