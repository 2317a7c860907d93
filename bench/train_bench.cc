// train_bench: training throughput (images/s) of a CheXNet model trained
// data-parallel through kolo, on synthetic input, for comparison with PyTorch
// DDP (bench/ddp_baseline.py prints the same report) and for ablations of
// kolo's gradient overlap and tensor fusion. bench/run_train_bench.sh runs
// the whole comparison.
//
// Each rank builds the model, receives rank 0's weights, and trains on one
// fixed random batch (ImageNet-like normal pixels, random multi-hot labels,
// binary cross-entropy), so the figures measure forward, backward, gradient
// averaging and the optimizer, never data loading. The timed window starts
// and ends with a barrier: images/s = steps x batch x ranks / window.
//
// Overlap on (default): kolo::torch::DistributedOptimizer allreduces each
// gradient from its accumulator hook while backward is still running.
// Overlap off (--no-overlap): the plain optimizer; after backward, every
// gradient's allreduce is enqueued at once (names "grad.<parameter>", as
// DistributedOptimizer uses) and waited on before step(). The adapter has no
// option for this, so the benchmark does it itself. Updates in the forward
// pass (--update-in-forward): DistributedOptimizer's update_in_forward, the
// model calling ready() before each block; step() then returns at once and
// the wait for the gradients moves into the next forward pass (the
// "gradient sync wait" column reads 0). Fusion off
// (--no-fusion) sets KOLO_FUSION_THRESHOLD=0 before kolo starts.
//
// Per rank, the report also gives the CPU time per step (process and main
// thread): on a host shared with other work, it tells a starved rank from a
// slow one. Rank 0 prints the report; --json writes it as JSON. Exit code: 0, 1
// on a runtime error, 2 for bad flags.
#include <time.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "examples/chexnet/models/chexnet_model.h"
#include "kolo/kolo.h"
#include "kolo/memory.h"
#include "kolo/torch.h"
#include "nlohmann/json.hpp"

namespace kolo::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Flags {
  std::string arch = "densenet121";
  int image_size = 64;
  int batch_size = 16;
  int warmup_steps = 2;
  int steps = 10;
  int threads = 1;
  std::string optimizer = "sgd";
  double lr = 0.01;
  bool no_overlap = false;
  // DistributedOptimizerOptions::update_in_forward.
  bool update_in_forward = false;
  // DistributedOptimizerOptions::overlap: "on", "off" or "auto".
  std::string overlap = "on";
  bool no_fusion = false;
  // Wire format of the gradient allreduces: "none" or "fp16".
  std::string compression = "none";
  uint64_t seed = 42;
  std::string json;
};

// Seconds spent per step in each phase, on one rank.
struct PhaseTimes {
  std::vector<double> step;
  std::vector<double> forward_backward;
  std::vector<double> gradient_sync;  // waiting for gradient allreduces
  std::vector<double> optimizer;
};

// CPU seconds used so far by this process (every thread, kolo's background
// thread included) or by the calling thread. On a shared host, wall time
// shows how long a step took and CPU time how much work it was.
double CpuSeconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) +
         1e-9 * static_cast<double>(ts.tv_nsec);
}

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

double Mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0.0 : sum / static_cast<double>(v.size());
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string Hostname() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

// The 1-minute load average, to show how busy the machine was.
double LoadAverage() {
  double load[1] = {0};
  return getloadavg(load, 1) == 1 ? load[0] : -1.0;
}

std::shared_ptr<::torch::optim::Optimizer> MakeOptimizer(
    const Flags& flags, const std::vector<::torch::Tensor>& parameters) {
  if (flags.optimizer == "adam") {
    return std::make_shared<::torch::optim::Adam>(
        parameters, ::torch::optim::AdamOptions(flags.lr));
  }
  return std::make_shared<::torch::optim::SGD>(
      parameters, ::torch::optim::SGDOptions(flags.lr).momentum(0.9));
}

// Averages every gradient over the ranks after backward: the no-overlap
// ablation. All allreduces are enqueued before any is waited on, so the
// runtime fuses them exactly as it would those of DistributedOptimizer.
void AllreduceGradients(
    const ::torch::OrderedDict<std::string, ::torch::Tensor>& parameters) {
  std::vector<kolo::torch::Handle> handles;
  handles.reserve(parameters.size());
  for (const auto& item : parameters) {
    const ::torch::Tensor& grad = item.value().grad();
    if (!grad.defined()) continue;
    handles.push_back(
        kolo::torch::allreduce_async_(grad, "grad." + item.key()));
  }
  for (const kolo::torch::Handle& handle : handles) handle.wait();
}

// Blocks until every rank has arrived; throws on a runtime error.
void Barrier() {
  const Status status = kolo::Barrier();
  if (!status.ok()) throw std::runtime_error(status.ToString());
}

// How the gradient allreduces started: "off (manual)" without a
// DistributedOptimizer, else its mode, and for auto what it chose.
std::string OverlapText(const Flags& flags,
                        const kolo::torch::DistributedOptimizer* distributed) {
  if (distributed == nullptr) return "off (after backward, no hooks)";
  if (flags.overlap != "auto") return flags.overlap;
  const kolo::torch::DistributedOptimizerStats stats = distributed->stats();
  if (stats.overlap_decided_at_step < 0) return "auto (still measuring)";
  char text[160];
  std::snprintf(text, sizeof text,
                "auto: %s (on %.3f s, off %.3f s per step, chosen after step "
                "%lld)",
                stats.overlapping ? "on" : "off", stats.overlap_on_step_s,
                stats.overlap_off_step_s,
                static_cast<long long>(stats.overlap_decided_at_step));
  return text;
}

int Run(const Flags& flags) {
  if (flags.no_fusion) setenv("KOLO_FUSION_THRESHOLD", "0", 1);
  kolo::torch::init();
  const int rank = kolo::torch::rank();
  const int size = kolo::torch::size();
  ::torch::set_num_threads(flags.threads);

  ::torch::manual_seed(flags.seed);
  auto made = kolo::chexnet::MakeModel(flags.arch, kolo::chexnet::kNumFindings);
  if (!made.ok()) throw std::runtime_error(made.status().ToString());
  std::shared_ptr<kolo::chexnet::ChexnetModel> model = *made;
  model->train();
  kolo::torch::broadcast_parameters(*model, 0);

  // One fixed synthetic batch per rank, different on every rank.
  ::torch::manual_seed(flags.seed + 1000 + static_cast<uint64_t>(rank));
  const ::torch::Tensor images =
      ::torch::randn({flags.batch_size, 3, flags.image_size, flags.image_size});
  const ::torch::Tensor labels =
      ::torch::randint(0, 2, {flags.batch_size, kolo::chexnet::kNumFindings})
          .to(::torch::kFloat32);

  const auto named_parameters = model->named_parameters();
  std::vector<::torch::Tensor> parameters;
  for (const auto& item : named_parameters) parameters.push_back(item.value());
  std::shared_ptr<::torch::optim::Optimizer> optimizer =
      MakeOptimizer(flags, parameters);
  std::unique_ptr<kolo::torch::DistributedOptimizer> distributed;
  if (!flags.no_overlap) {
    kolo::torch::DistributedOptimizerOptions options;
    if (flags.compression == "fp16") {
      options.compression = kolo::torch::Compression::kFp16;
    }
    options.overlap = flags.overlap == "auto"  ? kolo::torch::Overlap::kAuto
                      : flags.overlap == "off" ? kolo::torch::Overlap::kOff
                                               : kolo::torch::Overlap::kOn;
    options.update_in_forward = flags.update_in_forward;
    distributed = std::make_unique<kolo::torch::DistributedOptimizer>(
        optimizer, named_parameters, options);
    if (flags.update_in_forward) {
      kolo::torch::DistributedOptimizer* ready = distributed.get();
      model->set_before_block(
          [ready](const ::torch::nn::Module& block) { ready->ready(block); });
    }
  }

  PhaseTimes times;
  RuntimeStats stats_before;
  Clock::time_point window_start;
  double process_cpu_start = 0;
  double thread_cpu_start = 0;
  for (int step = 0; step < flags.warmup_steps + flags.steps; ++step) {
    if (step == flags.warmup_steps) {
      Barrier();
      stats_before = kolo::GetStats();
      window_start = Clock::now();
      process_cpu_start = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
      thread_cpu_start = CpuSeconds(CLOCK_THREAD_CPUTIME_ID);
    }
    const Clock::time_point t0 = Clock::now();
    if (distributed) {
      distributed->zero_grad();
    } else {
      optimizer->zero_grad();
    }
    ::torch::Tensor loss =
        ::torch::nn::functional::binary_cross_entropy_with_logits(
            model->forward(images), labels);
    loss.backward();
    const Clock::time_point t1 = Clock::now();
    if (distributed) {
      // With update_in_forward, step() leaves the wait to the next forward.
      if (!flags.update_in_forward) distributed->synchronize();
    } else {
      AllreduceGradients(named_parameters);
    }
    const Clock::time_point t2 = Clock::now();
    if (distributed) {
      distributed->step();  // gradients already reduced: only the update
    } else {
      optimizer->step();
    }
    const Clock::time_point t3 = Clock::now();
    if (step >= flags.warmup_steps) {
      times.step.push_back(Seconds(t0, t3));
      times.forward_backward.push_back(Seconds(t0, t1));
      times.gradient_sync.push_back(Seconds(t1, t2));
      times.optimizer.push_back(Seconds(t2, t3));
    }
  }
  // The last step's deferred updates belong to the timed window.
  if (distributed) distributed->finish_updates();
  const double process_cpu =
      CpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - process_cpu_start;
  const double thread_cpu =
      CpuSeconds(CLOCK_THREAD_CPUTIME_ID) - thread_cpu_start;
  Barrier();
  const double window = Seconds(window_start, Clock::now());
  const RuntimeStats stats_after = kolo::GetStats();

  // Every rank's phase means and CPU time per step, to spot stragglers and
  // starved ranks.
  const double per_step = static_cast<double>(flags.steps);
  const ::torch::Tensor mine =
      ::torch::tensor({Mean(times.step), Mean(times.forward_backward),
                       Mean(times.gradient_sync), Mean(times.optimizer),
                       process_cpu / per_step, thread_cpu / per_step},
                      ::torch::kFloat64);
  const ::torch::Tensor all =
      kolo::torch::allgather(mine.reshape({1, 6}), "train_bench.phases");
  const double images_per_s =
      static_cast<double>(flags.steps) * flags.batch_size * size / window;

  if (rank == 0) {
    // kolo started, so its environment parses.
    const std::string fusion =
        std::to_string(kolo::OptionsFromEnvironment()->fusion_threshold_bytes) +
        " B";
    const double collectives =
        (stats_after.collectives_executed - stats_before.collectives_executed) /
        per_step;
    const double fused =
        (stats_after.tensors_fused - stats_before.tensors_fused) / per_step;
    const double gradient_tensors =
        static_cast<double>(named_parameters.size());

    std::printf(
        "# train_bench kolo | %s | %d px | batch %d per rank, %d global | "
        "%d rank%s x %d thread%s (torch::get_num_threads() = %d) | %s lr %g "
        "| overlap %s | fusion threshold %s | compression %s | malloc %s | "
        "host %s\n",
        flags.arch.c_str(), flags.image_size, flags.batch_size,
        flags.batch_size * size, size, size == 1 ? "" : "s", flags.threads,
        flags.threads == 1 ? "" : "s", ::torch::get_num_threads(),
        flags.optimizer.c_str(), flags.lr,
        OverlapText(flags, distributed.get()).c_str(), fusion.c_str(),
        flags.compression.c_str(), kolo::TuneMemoryAllocator().c_str(),
        Hostname().c_str());
    std::printf("# steps: %d warm-up + %d timed; load average %.2f\n",
                flags.warmup_steps, flags.steps, LoadAverage());
    std::printf("step time (s): median %.4f  mean %.4f  min %.4f  max %.4f\n",
                Median(times.step), Mean(times.step),
                *std::min_element(times.step.begin(), times.step.end()),
                *std::max_element(times.step.begin(), times.step.end()));
    std::printf(
        "rank | step (s) | forward+backward (s) | gradient sync wait (s) | "
        "optimizer (s) | CPU s/step: process | main thread\n");
    for (int r = 0; r < size; ++r) {
      std::printf("%4d | %8.4f | %20.4f | %22.4f | %13.4f | %19.4f | %11.4f\n",
                  r, all[r][0].item<double>(), all[r][1].item<double>(),
                  all[r][2].item<double>(), all[r][3].item<double>(),
                  all[r][4].item<double>(), all[r][5].item<double>());
    }
    std::printf(
        "kolo per step: %.0f gradient tensors, %.1f collectives executed, "
        "%.1f tensors fused\n",
        gradient_tensors, collectives, fused);
    std::printf("images/s: %.2f\n", images_per_s);
    std::fflush(stdout);

    if (!flags.json.empty()) {
      nlohmann::json ranks = nlohmann::json::array();
      for (int r = 0; r < size; ++r) {
        ranks.push_back({{"rank", r},
                         {"step_s", all[r][0].item<double>()},
                         {"forward_backward_s", all[r][1].item<double>()},
                         {"gradient_sync_s", all[r][2].item<double>()},
                         {"optimizer_s", all[r][3].item<double>()},
                         {"process_cpu_s", all[r][4].item<double>()},
                         {"main_thread_cpu_s", all[r][5].item<double>()}});
      }
      nlohmann::json report = {
          {"impl", "kolo"},
          {"arch", flags.arch},
          {"np", size},
          {"threads", flags.threads},
          {"image_size", flags.image_size},
          {"batch_size", flags.batch_size},
          {"global_batch", flags.batch_size * size},
          {"optimizer", flags.optimizer},
          {"lr", flags.lr},
          {"overlap", !flags.no_overlap},
          {"update_in_forward", flags.update_in_forward},
          {"overlap_mode", OverlapText(flags, distributed.get())},
          {"fusion_threshold", fusion},
          {"memory_allocator", kolo::TuneMemoryAllocator()},
          {"compression", flags.compression},
          {"warmup_steps", flags.warmup_steps},
          {"steps", flags.steps},
          {"window_s", window},
          {"images_per_s", images_per_s},
          {"step_s",
           {{"median", Median(times.step)},
            {"mean", Mean(times.step)},
            {"min", *std::min_element(times.step.begin(), times.step.end())},
            {"max", *std::max_element(times.step.begin(), times.step.end())}}},
          {"step_times_rank0_s", times.step},
          {"ranks", ranks},
          {"collectives_per_step", collectives},
          {"tensors_fused_per_step", fused},
          {"gradient_tensors", named_parameters.size()},
          {"load_average", LoadAverage()},
          {"host", Hostname()}};
      std::ofstream out(flags.json);
      out << report.dump(2) << "\n";
      if (!out) {
        std::fprintf(stderr, "train_bench: cannot write %s\n",
                     flags.json.c_str());
        return 1;
      }
    }
  }
  distributed.reset();
  kolo::torch::shutdown();
  return 0;
}

}  // namespace
}  // namespace kolo::bench

int main(int argc, char** argv) {
  kolo::bench::Flags flags;
  CLI::App app{
      "train_bench: training throughput (images/s) of a CheXNet model through "
      "kolo on synthetic input; run under mpirun or kolorun. Compare with "
      "bench/ddp_baseline.py; bench/run_train_bench.sh runs both."};
  app.add_option("--arch", flags.arch, "Model")
      ->check(CLI::IsMember({"densenet121", "vgg16"}))
      ->capture_default_str();
  app.add_option("--image-size", flags.image_size, "Input height and width")
      ->check(CLI::Range(32, 1024))
      ->capture_default_str();
  app.add_option("--batch-size", flags.batch_size, "Images per rank per step")
      ->check(CLI::Range(2, 4096))
      ->capture_default_str();
  app.add_option("--warmup-steps", flags.warmup_steps, "Untimed steps first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--steps", flags.steps, "Timed steps")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--threads", flags.threads,
                 "torch intra-op threads per rank (torch::set_num_threads)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--optimizer", flags.optimizer, "sgd (momentum 0.9) or adam")
      ->check(CLI::IsMember({"sgd", "adam"}))
      ->capture_default_str();
  app.add_option("--lr", flags.lr, "Learning rate")->capture_default_str();
  app.add_option("--overlap", flags.overlap,
                 "DistributedOptimizer's overlap: on (hooks start the "
                 "allreduces during backward), off (all in synchronize()) or "
                 "auto (it measures both over steps 4-13 and keeps the "
                 "faster; give --warmup-steps 14 or more)")
      ->check(CLI::IsMember({"on", "off", "auto"}))
      ->capture_default_str();
  app.add_flag("--no-overlap", flags.no_overlap,
               "Allreduce all gradients after backward instead of from "
               "gradient hooks during backward");
  app.add_flag("--update-in-forward", flags.update_in_forward,
               "DistributedOptimizer's update_in_forward: step() returns "
               "while the gradients are reduced; each block's update is "
               "applied just before the next forward pass runs it")
      ->excludes("--no-overlap");
  app.add_flag("--no-fusion", flags.no_fusion,
               "Set KOLO_FUSION_THRESHOLD=0 (one collective per tensor)");
  app.add_option("--compression", flags.compression,
                 "Gradient wire format: none, or fp16 (float16 copies, as "
                 "DDP's fp16_compress_hook)")
      ->check(CLI::IsMember({"none", "fp16"}))
      ->capture_default_str();
  app.add_option("--seed", flags.seed, "Seed of weights and synthetic input")
      ->capture_default_str();
  app.add_option("--json", flags.json, "Also write the report (rank 0) here");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == static_cast<int>(CLI::ExitCodes::Success) ? code : 2;
  }
  // Before the model allocates anything (kolo/memory.h); a no-op when
  // kolorun already chose the allocator.
  kolo::TuneMemoryAllocator();
  try {
    return kolo::bench::Run(flags);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_bench: %s\n", e.what());
    return 1;
  }
}
