// autotune_bench: a many-small-tensors workload (gradients that become ready
// one after another, as during backward) timed in steps per second. Run it
// once with the defaults and once with KOLO_AUTOTUNE=1 (run_autotune_bench.sh
// does both, in one run, and prints the ratio).
//
// usage: autotune_bench [--tensors N] [--elements N] [--gap-us N]
//                       [--sequential] [--warmup-seconds S] [--seconds S]
// --sequential waits for each tensor before computing the next (a chain of
// small dependent reductions, e.g. layer-wise synchronisation), so every
// negotiation round trip is on the critical path.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "kolo/kolo.h"

namespace {

using Clock = std::chrono::steady_clock;

// Work between two gradients, without sleeping (a sleep would yield the CPU
// and hide the runtime's own latency).
void Compute(int microseconds) {
  const auto end = Clock::now() + std::chrono::microseconds(microseconds);
  volatile double x = 1;
  while (Clock::now() < end) x = x * 1.0000001 + 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kolo autotune benchmark: many small tensors"};
  int tensors = 64;
  int elements = 256;
  int gap_us = 20;
  double warmup_seconds = 8;
  double seconds = 6;
  bool sequential = false;
  app.add_option("--tensors", tensors, "tensors per step")->check(CLI::PositiveNumber);
  app.add_option("--elements", elements, "float32 elements per tensor")->check(CLI::PositiveNumber);
  app.add_option("--gap-us", gap_us, "compute between tensors (us)")->check(CLI::NonNegativeNumber);
  app.add_option("--warmup-seconds", warmup_seconds, "untimed (autotune searches here)");
  app.add_option("--seconds", seconds, "timed");
  app.add_flag("--sequential", sequential, "wait for each tensor before the next");
  CLI11_PARSE(app, argc, argv);

  if (kolo::Status s = kolo::Init(); !s.ok()) {
    std::fprintf(stderr, "autotune_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  std::vector<std::vector<float>> grads(tensors, std::vector<float>(elements));
  auto step = [&] {
    std::vector<kolo::Handle> handles;
    for (int k = 0; k < tensors; ++k) {
      Compute(gap_us);
      kolo::Tensor t{grads[k].data(), kolo::DataType::kFloat32, {elements}};
      auto h = kolo::AllreduceAsync(absl::StrCat("grad.", k), t, t);
      if (!h.ok()) {
        std::fprintf(stderr, "autotune_bench: %s\n", h.status().ToString().c_str());
        std::exit(1);
      }
      handles.push_back(*h);
      if (sequential && !handles.back().Wait().ok()) std::exit(1);
    }
    for (auto& h : handles) {
      if (kolo::Status s = h.Wait(); !s.ok()) {
        std::fprintf(stderr, "autotune_bench: %s\n", s.ToString().c_str());
        std::exit(1);
      }
    }
  };
  // Every rank runs the same number of steps: rank 0 decides when time is up.
  auto run_for = [&](double limit) {
    int64_t steps = 0;
    const auto start = Clock::now();
    for (;;) {
      int32_t go = std::chrono::duration<double>(Clock::now() - start).count() < limit;
      kolo::Tensor flag{&go, kolo::DataType::kInt32, {1}};
      if (!kolo::Broadcast("bench.go", flag, 0).ok()) std::exit(1);
      if (!go) break;
      step();
      ++steps;
    }
    return std::make_pair(steps, std::chrono::duration<double>(Clock::now() - start).count());
  };
  run_for(warmup_seconds);
  const auto [steps, elapsed] = run_for(seconds);
  if (kolo::Rank() == 0) {
    const char* autotune = std::getenv("KOLO_AUTOTUNE");
    std::printf("autotune_bench: ranks %d, tensors %d x %d floats, gap %d us%s, "
                "autotune %s: %.1f steps/s (%lld steps in %.2f s)\n",
                kolo::Size(), tensors, elements, gap_us,
                sequential ? ", sequential" : "",
                autotune ? autotune : "0", steps / elapsed,
                static_cast<long long>(steps), elapsed);
  }
  return kolo::Shutdown().ok() ? 0 : 1;
}
