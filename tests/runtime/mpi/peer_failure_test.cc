// A rank dies (SIGKILL) in the middle of a training-like loop of
// allreduces: between steps, or ("mid-collective" as the second argument)
// at a moment chosen by a timer, usually inside a collective. Every survivor must see its pending and new operations fail
// with Aborted within 10 seconds, shut kolo down without hanging, and exit
// non-zero. Prints "peer-failure-ok rank R" per survivor for the driving
// script (tests/runtime/peer_failure_test.sh).
#include <signal.h>
#include <unistd.h>

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
  const bool mid_collective =
      argc > 2 && std::string(argv[2]) == "mid-collective";
  if (!kolo::Init().ok()) return 2;
  const int rank = kolo::Rank();
  // Large enough that most of the time goes into the data plane.
  const int64_t elements = mid_collective ? (int64_t{4} << 20) : 4096;
  std::vector<float> gradient(elements, 1.0f);
  kolo::Tensor t{gradient.data(), kolo::DataType::kFloat32, {elements}};
  if (mid_collective && rank == victim) {
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
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
    const kolo::Status status =
        kolo::Allreduce(absl::StrCat("grad.", step % 10), t, t);
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
