// autotune_bench: a many-small-tensors workload (gradients that become ready
// one after another, as during backward) timed in steps per second, after an
// untimed warm-up in which KOLO_AUTOTUNE=1 runs its search. Run it once with
// the defaults and once with KOLO_AUTOTUNE=1 (run_autotune_bench.sh does
// both, alternately, in one run, and prints the ratio).
//
// usage: autotune_bench [--tensors N] [--elements N] [--min-elements N]
//                       [--gap-us N] [--sequential] [--warmup-seconds S]
//                       [--seconds S]
// --min-elements spreads the sizes log-uniformly between it and --elements,
// like the gradients of a CNN (ResNet-50: 161 tensors of 64 to 2.4M floats,
// most of them small). --sequential waits for each tensor before computing
// the next (a chain of small dependent reductions), so every negotiation
// round trip is on the critical path.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

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
  double warmup_seconds = 30;
  double seconds = 10;
  bool sequential = false;
  int min_elements = 0;
  app.add_option("--tensors", tensors, "tensors per step")
      ->check(CLI::PositiveNumber);
  app.add_option(
         "--elements", elements,
         "float32 elements per tensor (the largest with --min-elements)")
      ->check(CLI::PositiveNumber);
  app.add_option("--min-elements", min_elements,
                 "sizes spread log-uniformly from this to --elements, in a "
                 "fixed pseudo-random order (as a model's gradients); 0 = all "
                 "--elements")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--gap-us", gap_us, "compute between tensors (us)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--warmup-seconds", warmup_seconds,
                 "untimed (autotune searches here)");
  app.add_option("--seconds", seconds, "timed");
  app.add_flag("--sequential", sequential,
               "wait for each tensor before the next");
  bool verify = false;
  app.add_flag("--verify", verify,
               "fill every gradient with rank-dependent values and check each "
               "average (a test of correctness while autotune changes the "
               "parameters); exits 1 on the first wrong value");
  CLI11_PARSE(app, argc, argv);

  if (kolo::Status s = kolo::Init(); !s.ok()) {
    std::fprintf(stderr, "autotune_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  std::vector<std::vector<float>> grads(tensors);
  std::mt19937 sizes(12345);  // the same sizes on every rank
  int64_t step_elements = 0;
  for (auto& grad : grads) {
    int count = elements;
    if (min_elements > 0 && min_elements < elements) {
      std::uniform_real_distribution<double> exponent(std::log(min_elements),
                                                      std::log(elements));
      count = static_cast<int>(std::exp(exponent(sizes)));
    }
    grad.assign(count, 1.0f);
    step_elements += count;
  }
  int64_t step_index = 0;
  // Gradient k of step s holds rank + (s + k) % 5 everywhere; the average
  // over ranks is exact in float32 for any rank count up to 2^20.
  auto fill = [&](int k) {
    std::fill(grads[k].begin(), grads[k].end(),
              static_cast<float>(kolo::Rank() + (step_index + k) % 5));
  };
  auto check = [&](int k) {
    const float expected =
        (kolo::Size() - 1) / 2.0f + static_cast<float>((step_index + k) % 5);
    for (size_t i = 0; i < grads[k].size(); ++i) {
      if (grads[k][i] != expected) {
        std::fprintf(stderr,
                     "autotune_bench: rank %d step %lld gradient %d element "
                     "%zu: expected %g, got %g\n",
                     kolo::Rank(), static_cast<long long>(step_index), k, i,
                     expected, grads[k][i]);
        std::exit(1);
      }
    }
  };
  auto step = [&] {
    std::vector<kolo::Handle> handles;
    for (int k = 0; k < tensors; ++k) {
      Compute(gap_us);
      if (verify) fill(k);
      kolo::Tensor t{grads[k].data(),
                     kolo::DataType::kFloat32,
                     {static_cast<int64_t>(grads[k].size())}};
      auto h = kolo::AllreduceAsync(absl::StrCat("grad.", k), t, t);
      if (!h.ok()) {
        std::fprintf(stderr, "autotune_bench: %s\n",
                     h.status().ToString().c_str());
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
    if (verify) {
      for (int k = 0; k < tensors; ++k) check(k);
    }
    ++step_index;
  };
  // Every rank runs the same number of steps: rank 0 decides when time is up.
  auto run_for = [&](double limit) {
    int64_t steps = 0;
    const auto start = Clock::now();
    for (;;) {
      int32_t go =
          std::chrono::duration<double>(Clock::now() - start).count() < limit;
      kolo::Tensor flag{&go, kolo::DataType::kInt32, {1}};
      if (!kolo::Broadcast("bench.go", flag, 0).ok()) std::exit(1);
      if (!go) break;
      step();
      ++steps;
    }
    return std::make_pair(
        steps, std::chrono::duration<double>(Clock::now() - start).count());
  };
  run_for(warmup_seconds);
  if (kolo::Rank() == 0) {
    // run_autotune_bench.sh checks that the search ended before this line.
    std::fprintf(stderr, "autotune_bench: warm-up done, timing starts\n");
  }
  const kolo::RuntimeStats before = kolo::GetStats();
  const auto [steps, elapsed] = run_for(seconds);
  const kolo::RuntimeStats after = kolo::GetStats();
  if (kolo::Rank() == 0) {
    // kolo started, so its environment parses.
    const bool autotune = kolo::OptionsFromEnvironment()->autotune;
    const std::string sizes_text =
        min_elements > 0 ? absl::StrCat(min_elements, "..", elements)
                         : absl::StrCat(elements);
    std::printf(
        "autotune_bench: ranks %d, %d tensors of %s floats (%.2f MiB a step), "
        "gap %d us%s, autotune %s: %.1f steps/s (%lld steps in %.2f s, "
        "%.1f collectives a step)\n",
        kolo::Size(), tensors, sizes_text.c_str(),
        step_elements * 4.0 / (1 << 20), gap_us,
        sequential ? ", sequential" : "", autotune ? "1" : "0", steps / elapsed,
        static_cast<long long>(steps), elapsed,
        static_cast<double>(after.collectives_executed -
                            before.collectives_executed) /
            std::max<int64_t>(steps, 1));
  }
  return kolo::Shutdown().ok() ? 0 : 1;
}
