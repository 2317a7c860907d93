// A rank dies (SIGKILL) in the middle of a training-like loop of
// allreduces: between steps, or ("mid-collective" as the second argument)
// at a moment chosen by a timer, usually inside a collective; or ("stop")
// it is stopped by SIGSTOP at such a moment and stays alive but silent
// (its pid goes to the file named by KOLO_TEST_STOP_PID_FILE, so the
// driving script can kill it afterwards). Every survivor must see its pending
// and new operations fail with Aborted within 10 seconds, shut kolo down
// without hanging, and exit non-zero. Prints "peer-failure-ok rank R" per
// survivor for the driving script (tests/runtime/peer_failure_test.sh).
// "mid-broadcast" is "mid-collective" with 16 MiB broadcasts from the
// victim (on one host, read by every rank straight from the victim's
// buffer), each result checked.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kolo/kolo.h"

int main(int argc, char** argv) {
  const int victim = argc > 1 ? std::atoi(argv[1]) : 1;
  const std::string when = argc > 2 ? argv[2] : "between-steps";
  const bool stop = when == "stop";
  const bool broadcast = when == "mid-broadcast";
  const bool mid_collective = when == "mid-collective" || broadcast || stop;
  if (!kolo::Init().ok()) return 2;
  const int rank = kolo::Rank();
  // Large enough that most of the time goes into the data plane.
  const int64_t elements = mid_collective ? (int64_t{4} << 20) : 4096;
  std::vector<float> gradient(elements, 1.0f);
  kolo::Tensor t{gradient.data(), kolo::DataType::kFloat32, {elements}};
  if (mid_collective && rank == victim) {
    std::thread([stop] {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      if (stop) {
        if (const char* path = std::getenv("KOLO_TEST_STOP_PID_FILE")) {
          if (FILE* f = std::fopen(path, "w")) {
            std::fprintf(f, "%d\n", static_cast<int>(getpid()));
            std::fclose(f);
          }
        }
        raise(SIGSTOP);
        return;
      }
      raise(SIGKILL);
    }).detach();
  }
  using Clock = std::chrono::steady_clock;
  auto last_success = Clock::now();
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (int step = 0; Clock::now() < deadline; ++step) {
    if (!mid_collective && step == 50 && rank == victim) {
      std::printf("rank %d: killing itself\n", rank);
      std::fflush(stdout);
      raise(SIGKILL);
    }
    if (broadcast) {
      std::fill(gradient.begin(), gradient.end(),
                rank == victim ? static_cast<float>(step) : -1.0f);
    }
    const kolo::Status status =
        broadcast ? kolo::Broadcast(absl::StrCat("weights.", step % 10), t,
                                  victim)
                  : kolo::Allreduce(absl::StrCat("grad.", step % 10), t, t);
    if (status.ok() && broadcast &&
        (gradient.front() != step || gradient.back() != step)) {
      std::printf("rank %d: step %d: broadcast gave %g ... %g\n", rank, step,
                  gradient.front(), gradient.back());
      return 4;
    }
    if (status.ok()) {
      last_success = Clock::now();
      continue;
    }
    const double seconds =
        std::chrono::duration<double>(Clock::now() - last_success).count();
    std::printf("rank %d: step %d failed after %.1f s: %s\n", rank, step,
                seconds, status.ToString().c_str());
    // New operations fail the same way, at once.
    const kolo::Status again = kolo::Allreduce("after", t, t);
    const bool ok = status.code() == absl::StatusCode::kAborted &&
                    again.code() == absl::StatusCode::kAborted &&
                    seconds < 10.0;
    if (ok) std::printf("peer-failure-ok rank %d\n", rank);
    std::fflush(stdout);
    (void)kolo::Shutdown();  // must not hang
    return 3;
  }
  std::printf("rank %d: no failure observed within 60 s\n", rank);
  return 1;
}
