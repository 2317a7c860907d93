// kolo_bench: nccl-tests-style tables of kolo's collectives, MPI's own
// collectives (every one measured), Gloo's allreduce and the memory-bandwidth
// baselines at the same sizes, and
// issue 6's targets evaluated on the figures of this run.
//
// Run under mpirun. Order of work: the memory bandwidth (while nothing else
// runs), then kolo once per backend (KOLO_CPU_OPERATIONS, or each of
// --backends: kolo is initialised and shut down around each), then the
// baselines with kolo shut down, so that kolo's background thread never
// competes with them. With --device cuda the buffers are in GPU memory (one
// GPU per rank), kolo runs once (its NCCL backend) and NCCL's own
// collectives are the baseline. Exit code: 0, 1 when an operation failed or
// a result was wrong (or --device cuda cannot run here), 2 for bad flags.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/aligned_buffer.h"
#include "bench/collective.h"
#include "bench/flags.h"
#include "bench/gloo_baseline.h"
#include "bench/kolo_runner.h"
#include "bench/measurement.h"
#include "bench/memory_bandwidth.h"
#include "bench/message_buffers.h"
#include "bench/mpi_baseline.h"
#include "bench/report.h"
#include "bench/summary.h"
#include "kolo/kolo.h"
#include "kolo/process_set.h"
#include "nlohmann/json.hpp"

#ifndef KOLO_BENCH_CUDA
#define KOLO_BENCH_CUDA 0
#endif
#if KOLO_BENCH_CUDA
#include "bench/nccl_baseline.h"
#endif

namespace kolo::bench {
namespace {

constexpr int64_t kMemoryBufferBytes = int64_t{256} << 20;
constexpr int kMemoryRepeats = 10;
// The latency target's message: one 8-byte float32 sum allreduce.
constexpr int64_t kLatencyBytes = 8;
constexpr int kLatencyMinIters = 100;
constexpr int kLatencyMinWarmup = 10;
constexpr int kLatencyMinTrials = 3;

std::string HumanBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int unit = 0;
  while (unit < 3 && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++unit;
  }
  return std::to_string(bytes) + " " + units[unit];
}

std::string LocalHostname() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

// One kolo run: a backend selection and what became of it.
struct KoloRun {
  std::string label;
  std::string selection;  // how the backend was chosen, in words
  std::string error;      // why kolo did not start; empty when it ran
  std::optional<Measurement> latency;
};

class Bench {
 public:
  Bench(BenchFlags flags, int rank, int ranks)
      : flags_(std::move(flags)), rank_(rank), ranks_(ranks) {
    config_.dtype = flags_.dtype;
    config_.op = flags_.op;
    config_.root = flags_.root;
    config_.iters = flags_.iters;
    config_.warmup = flags_.warmup;
    config_.check = flags_.check;
    config_.trials = flags_.trials;
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_,
                        MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_free(&local);
    int leader = local_rank_ == 0 ? 1 : 0;
    MPI_Allreduce(&leader, &hosts_, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  }

  int Run() {
    const bool allreduce = Selected(Collective::kAllreduce);
    if (flags_.cuda) {
      StatusOr<int> gpu = SelectGpu(local_rank_, local_size_);
      const std::string error =
          AgreeOnError(gpu.ok() ? "" : gpu.status().ToString());
      if (!error.empty()) {
        if (rank_ == 0) std::fprintf(stderr, "kolo_bench: %s\n", error.c_str());
        return 1;
      }
      gpu_ = *gpu;
    }
    PrintPreamble();
    if (flags_.memory_baseline && allreduce && !flags_.cuda) {
      memory_ = MeasureMemoryBandwidth(kMemoryBufferBytes, kMemoryRepeats);
      Print(
          "# memory: single-thread memcpy read+write bandwidth B = %.2f GB/s "
          "(%s buffer, best of %d); 2-rank allreduce bound algbw <= B/4 = "
          "%.2f GB/s%s\n",
          memory_->bytes_per_second / 1e9,
          HumanBytes(memory_->buffer_bytes).c_str(), memory_->repeats,
          memory_->AllreduceBound() / 1e9,
          ranks_ == 2 ? "" : " (the bound is derived for 2 ranks)");
    }
    if (!flags_.kolo) {
      Print("# kolo: not run (--no-kolo)\n");
    } else if (flags_.cuda) {
      RunKolo(flags_.backend_name.empty() ? "nccl" : flags_.backend_name,
              "CUDA tensors on GPU " + std::to_string(gpu_) +
                  " (local rank % GPUs)",
              std::nullopt);
    } else if (flags_.backends.empty()) {
      // kolo started, so its environment parses.
      const std::string value =
          CpuOperationsName(kolo::OptionsFromEnvironment()->cpu_operations);
      RunKolo(flags_.backend_name.empty() ? value : flags_.backend_name,
              "KOLO_CPU_OPERATIONS=" + value, std::nullopt);
    } else {
      for (CpuOperations backend : flags_.backends) {
        const std::string name = CpuOperationsName(backend);
        RunKolo(name, "--backends " + name, backend);
      }
    }
    if (flags_.cuda) {
      RunNcclBaselines();
    } else {
      if (flags_.mpi_baseline) RunMpiBaselines();
      if (allreduce) RunBaselines();
    }
    if (flags_.cuda) {
      Print(
          "#\n# Targets: not evaluated; they are defined for CPU tensors "
          "(issue 6)\n");
    } else if (allreduce && flags_.dtype == DataType::kFloat32 &&
               flags_.op == ReduceOp::kSum) {
      Print(
          "#\n# Targets (issue 6: np=2 on one host, allreduce float32 sum), "
          "judged on median iteration times; the ratio of the tables' means "
          "beside\n");
      if (rank_ == 0) PrintTargetsHeader();
      for (const KoloRun& run : kolo_runs_) {
        if (!run.error.empty()) continue;
        SummaryInputs inputs;
        inputs.rows = &rows_;
        inputs.backend = run.label;
        inputs.memory = memory_;
        inputs.kolo_latency = run.latency;
        inputs.mpi_latency = mpi_latency_;
        std::vector<TargetResult> targets = EvaluateTargets(inputs);
        if (rank_ == 0) PrintTargets(targets);
        targets_.insert(targets_.end(), targets.begin(), targets.end());
      }
    } else {
      Print(
          "#\n# Targets: not evaluated; they are defined for allreduce "
          "float32 sum\n");
    }
    int64_t wrong = 0;
    for (const Row& row : rows_) {
      for (const std::optional<Measurement>* m :
           {&row.out_of_place, &row.in_place}) {
        if (m->has_value() && (*m)->wrong > 0) wrong += (*m)->wrong;
      }
    }
    Print("#\n# Out of bounds values : %lld %s\n",
          static_cast<long long>(wrong), wrong == 0 ? "OK" : "FAILED");
    Print("# Failed operations    : %d %s\n#\n", failures_,
          failures_ == 0 ? "OK" : "FAILED");
    const int exit_code = wrong > 0 || failures_ > 0 ? 1 : 0;
    if (!flags_.json_path.empty() && rank_ == 0 &&
        !WriteJson(wrong, exit_code)) {
      return 1;
    }
    return exit_code;
  }

 private:
  // printf on rank 0 only.
  __attribute__((format(printf, 2, 3))) void Print(const char* format,
                                                   ...) const {
    if (rank_ != 0) return;
    va_list args;
    va_start(args, format);
    std::vprintf(format, args);
    va_end(args);
    std::fflush(stdout);
  }

  bool Selected(Collective collective) const {
    return std::find(flags_.collectives.begin(), flags_.collectives.end(),
                     collective) != flags_.collectives.end();
  }

  void PrintPreamble() const {
    Print(
        "# kolo_bench: %d ranks on %d host(s) (rank 0 on '%s'); %s, op %s, "
        "root %d\n",
        ranks_, hosts_, LocalHostname().c_str(), DataTypeName(flags_.dtype),
        ReduceOpName(flags_.op), flags_.root);
    Print(
        "# sizes %s .. %s x%lld, iters %d, warmup %d, check %d, trials %d, "
        "tensors per message %d\n",
        HumanBytes(flags_.min_bytes).c_str(),
        HumanBytes(flags_.max_bytes).c_str(),
        static_cast<long long>(flags_.step_factor), flags_.iters, flags_.warmup,
        flags_.check, flags_.trials, flags_.tensors);
    Print(
        "# time: mean of the timed iterations on the slowest rank; algbw = "
        "size / time; busbw = algbw x nccl-tests' factor\n");
    if (flags_.cuda) {
      Print("# device: cuda, rank 0 on %s; %s\n", DescribeGpu(gpu_).c_str(),
            NcclVersionText().c_str());
    } else {
      Print("# device: cpu (host memory)\n");
    }
  }

  static std::string NcclVersionText() {
#if KOLO_BENCH_CUDA
    return NcclBaseline::Version() + " linked";
#else
    return "no NCCL";
#endif
  }

  // Buffers for the largest message of a sweep; a failure is counted and
  // printed, and the caller skips the table.
  std::unique_ptr<MessageBuffers> Buffers(int64_t input_bytes,
                                          int64_t output_bytes,
                                          const std::string& what) {
    StatusOr<std::unique_ptr<MessageBuffers>> buffers =
        MessageBuffers::Create(input_bytes, output_bytes, gpu_);
    const std::string error =
        AgreeOnError(buffers.ok() ? "" : buffers.status().ToString());
    if (!error.empty()) {
      Print("# %s: cannot allocate buffers: %s\n", what.c_str(), error.c_str());
      ++failures_;
      return nullptr;
    }
    return *std::move(buffers);
  }

  // --device cuda: NCCL's collectives on a communicator of all ranks, for
  // every selected collective.
  void RunNcclBaselines() {
    if (!flags_.nccl_baseline) return;
#if KOLO_BENCH_CUDA
    const std::string label =
        NcclBaseline::Version() + " collectives on a stream of this process";
    StatusOr<std::unique_ptr<NcclBaseline>> nccl =
        NcclBaseline::Create(rank_, ranks_, gpu_);
    const std::string error =
        AgreeOnError(nccl.ok() ? "" : nccl.status().ToString());
    if (!error.empty()) {
      Skip("NCCL baseline", error);
      ++failures_;
      return;
    }
    const int64_t element_size = DataTypeSize(flags_.dtype);
    for (Collective collective : flags_.collectives) {
      const std::string title = std::string(CollectiveName(collective)) +
                                "  [baseline: " + label + "]";
      if (std::string why = NcclBaseline::Unsupported(collective, flags_.dtype,
                                                      flags_.op, ranks_);
          !why.empty()) {
        Skip(title, why);
        continue;
      }
      const std::vector<int64_t> counts = Counts(collective);
      const Layout largest = MakeLayout(collective, counts.back(), ranks_, 1);
      std::unique_ptr<MessageBuffers> buffers =
          Buffers(largest.input_count * element_size,
                  largest.output_count * element_size, title);
      if (buffers == nullptr) continue;
      Header(title);
      BaselineTable(
          collective, "nccl", label, [&](const Layout& layout, bool in_place) {
            return (*nccl)->Measure(layout, config_, in_place, *buffers);
          });
    }
#else
    Skip("NCCL baseline", "this kolo_bench was built without NCCL");
#endif
  }

  void RunKolo(const std::string& label, const std::string& selection,
               std::optional<CpuOperations> backend) {
    KoloRun run{label, selection, "", std::nullopt};
    Status status;
    if (backend.has_value()) {
      StatusOr<Options> options = OptionsFromEnvironment();
      if (options.ok()) {
        options->cpu_operations = *backend;
        status = InitWithOptions(*options);
      } else {
        status = options.status();
      }
    } else {
      status = Init();
    }
    run.error = AgreeOnError(status.ok() ? "" : status.ToString());
    Print("#\n# kolo backend '%s' (%s; the runtime chose '%s')\n",
          label.c_str(), selection.c_str(), BackendName().c_str());
    if (!run.error.empty()) {
      Print("#   not available: %s\n", run.error.c_str());
      // A backend listed in --backends may be absent from this build; one
      // chosen through the environment must work.
      if (!backend.has_value()) ++failures_;
      kolo_runs_.push_back(run);
      return;
    }
    for (Collective collective : flags_.collectives) {
      RunKoloCollective(collective, label);
    }
    if (flags_.process_sets && Selected(Collective::kAllreduce)) {
      RunKoloProcessSets(label);
    }
    if (Selected(Collective::kAllreduce) &&
        flags_.dtype == DataType::kFloat32 && flags_.op == ReduceOp::kSum) {
      const Layout layout =
          MakeLayout(Collective::kAllreduce, kLatencyBytes / 4, ranks_, 1);
      std::unique_ptr<MessageBuffers> buffers =
          Buffers(kLatencyBytes, kLatencyBytes, "latency");
      if (buffers != nullptr) {
        run.latency = MeasureKolo(layout, LatencyConfig(), false,
                                  "kolo_bench.latency", *buffers);
        Print(
            "# 8-byte float32 sum allreduce, full API path: mean %.2f us, "
            "median %.2f us (best of %d trials of %d iterations)%s\n",
            run.latency->time_us, run.latency->median_us,
            LatencyConfig().trials, LatencyConfig().iters,
            run.latency->error.empty() ? "" : " FAILED");
        Count(*run.latency);
      }
    }
    Status shutdown = Shutdown();
    if (!shutdown.ok()) {
      Print("# kolo shutdown failed: %s\n", shutdown.ToString().c_str());
      ++failures_;
    }
    kolo_runs_.push_back(run);
  }

  RunConfig LatencyConfig() const {
    RunConfig config;
    config.dtype = DataType::kFloat32;
    config.op = ReduceOp::kSum;
    config.iters = std::max(flags_.iters, kLatencyMinIters);
    config.warmup = std::max(flags_.warmup, kLatencyMinWarmup);
    config.check = flags_.check;
    config.trials = std::max(flags_.trials, kLatencyMinTrials);
    return config;
  }

  // The distinct element counts the sweep gives this collective.
  std::vector<int64_t> Counts(Collective collective) const {
    std::vector<int64_t> counts;
    for (int64_t bytes : SweepSizes(flags_)) {
      const int64_t count =
          CountForBytes(collective, bytes, DataTypeSize(flags_.dtype), ranks_);
      if (counts.empty() || counts.back() != count) counts.push_back(count);
    }
    return counts;
  }

  Row MakeRow(const std::string& implementation, const std::string& label,
              const Layout& layout) const {
    Row row;
    row.implementation = implementation;
    row.label = label;
    row.collective = layout.collective;
    row.bytes = layout.count * DataTypeSize(flags_.dtype);
    row.count = layout.count;
    row.type = DataTypeName(flags_.dtype);
    row.redop = Reduces(layout.collective) ? ReduceOpName(flags_.op) : "none";
    row.root = layout.collective == Collective::kBroadcast ? flags_.root : -1;
    return row;
  }

  void Count(const Measurement& measurement) {
    if (!measurement.error.empty()) ++failures_;
  }

  // ranks: how many took part in the row's collective (bus bandwidth).
  void Record(const Row& row, double* busbw_sum, int* columns, int ranks = -1) {
    if (ranks < 0) ranks = ranks_;
    if (rank_ == 0) PrintRow(row, ranks);
    for (const std::optional<Measurement>* m :
         {&row.out_of_place, &row.in_place}) {
      if (m->has_value()) Count(**m);
    }
    AccumulateBusBandwidth(row, ranks, busbw_sum, columns);
    rows_.push_back(row);
  }

  // --process-sets: allreduce in the lower and the upper half of the ranks
  // at once, each half in its own process set (its own negotiation and data
  // plane), at the sizes of the global rows. A row's time is the slower
  // half's; bus bandwidth counts the lower half's ranks.
  void RunKoloProcessSets(const std::string& label) {
    if (ranks_ < 2) {
      Print("#\n# process sets: need at least 2 ranks; skipped\n");
      return;
    }
    std::vector<int> lower_ranks, upper_ranks;
    for (int r = 0; r < ranks_; ++r) {
      (r < (ranks_ + 1) / 2 ? lower_ranks : upper_ranks).push_back(r);
    }
    StatusOr<ProcessSet> lower = AddProcessSet(lower_ranks);
    StatusOr<ProcessSet> upper =
        lower.ok() ? AddProcessSet(upper_ranks) : lower.status();
    if (!upper.ok()) {
      Print("# process sets could not be created: %s\n",
            upper.status().ToString().c_str());
      ++failures_;
      return;
    }
    const ProcessSet& mine = lower->Included() ? *lower : *upper;
    const int set_size = mine.Size();
    const std::string set_label = label + " ps";
    const int64_t element_size = DataTypeSize(flags_.dtype);
    const std::vector<int64_t> counts = Counts(Collective::kAllreduce);
    const Layout largest = MakeLayout(Collective::kAllreduce, counts.back(),
                                      set_size, flags_.tensors);
    const std::string title =
        "allreduce  [kolo " + label + ", process sets of ranks " +
        RankRange(lower_ranks) + " and " + RankRange(upper_ranks) +
        " at once; plane " + mine.BackendName() + " on rank 0's]";
    std::unique_ptr<MessageBuffers> buffers =
        Buffers(largest.input_count * element_size,
                largest.output_count * element_size, title);
    if (buffers != nullptr) {
      Header(title);
      double busbw_sum = 0;
      int columns = 0;
      for (int64_t count : counts) {
        const Layout layout =
            MakeLayout(Collective::kAllreduce, count, set_size, flags_.tensors);
        Row row = MakeRow("kolo", set_label, layout);
        const std::string name =
            "kolo_bench.ps.allreduce." + std::to_string(count);
        row.out_of_place =
            MeasureKolo(layout, config_, false, name + ".oop", *buffers, mine);
        row.in_place =
            MeasureKolo(layout, config_, true, name + ".ip", *buffers, mine);
        Record(row, &busbw_sum, &columns, lower->Size());
      }
      if (rank_ == 0) PrintAverageBusBandwidth(busbw_sum, columns);
    }
    for (const ProcessSet& set : {*lower, *upper}) {
      Status removed = RemoveProcessSet(set);
      if (!removed.ok()) {
        Print("# process set removal failed: %s\n", removed.ToString().c_str());
        ++failures_;
      }
    }
  }

  static std::string RankRange(const std::vector<int>& ranks) {
    if (ranks.size() == 1) return std::to_string(ranks[0]);
    return std::to_string(ranks.front()) + "-" + std::to_string(ranks.back());
  }

  void RunKoloCollective(Collective collective, const std::string& label) {
    const std::vector<int64_t> counts = Counts(collective);
    const int64_t element_size = DataTypeSize(flags_.dtype);
    const Layout largest =
        MakeLayout(collective, counts.back(), ranks_, flags_.tensors);
    const std::string title =
        std::string(CollectiveName(collective)) + "  [kolo " + label + "]";
    std::unique_ptr<MessageBuffers> buffers = Buffers(
        KoloHasOutOfPlace(collective) ? largest.input_count * element_size : 0,
        largest.output_count * element_size, title);
    if (buffers == nullptr) return;
    Header(title);
    double busbw_sum = 0;
    int columns = 0;
    double tensors = 0;
    double collectives = 0;
    int measured = 0;
    for (int64_t count : counts) {
      const Layout layout =
          MakeLayout(collective, count, ranks_, flags_.tensors);
      Row row = MakeRow("kolo", label, layout);
      const std::string name = std::string("kolo_bench.") +
                               CollectiveName(collective) + "." +
                               std::to_string(count);
      if (KoloHasOutOfPlace(collective)) {
        row.out_of_place =
            MeasureKolo(layout, config_, false, name + ".oop", *buffers);
      }
      if (KoloHasInPlace(collective)) {
        row.in_place =
            MeasureKolo(layout, config_, true, name + ".ip", *buffers);
      }
      for (const std::optional<Measurement>* m :
           {&row.out_of_place, &row.in_place}) {
        if (m->has_value() && (*m)->error.empty()) {
          tensors += layout.parts.size();
          collectives += (*m)->collectives_per_iteration;
          ++measured;
        }
      }
      Record(row, &busbw_sum, &columns);
    }
    if (rank_ == 0) PrintAverageBusBandwidth(busbw_sum, columns);
    if (measured > 0) {
      Print(
          "# Fusion               : %.2f tensors per message ran as %.2f "
          "collectives on average\n",
          tensors / measured, collectives / measured);
    }
  }

  void Header(const std::string& title) const {
    if (rank_ == 0) PrintTableHeader(title);
  }

  void Skip(const std::string& what, const std::string& why) {
    Print("#\n# %s: skipped: %s\n", what.c_str(), why.c_str());
    skipped_.push_back(what + ": " + why);
  }

  // One baseline's table for `collective`: a row per size of the sweep, in
  // the forms kolo's API has (in place, out of place), so rows compare.
  void BaselineTable(
      Collective collective, const std::string& implementation,
      const std::string& label,
      const std::function<Measurement(const Layout&, bool in_place)>& measure) {
    double busbw_sum = 0;
    int columns = 0;
    for (int64_t count : Counts(collective)) {
      const Layout layout = MakeLayout(collective, count, ranks_, 1);
      Row row = MakeRow(implementation, label, layout);
      if (KoloHasOutOfPlace(collective))
        row.out_of_place = measure(layout, false);
      if (KoloHasInPlace(collective)) row.in_place = measure(layout, true);
      Record(row, &busbw_sum, &columns);
    }
    if (rank_ == 0) PrintAverageBusBandwidth(busbw_sum, columns);
  }

  // MPI's own collective for every selected collective.
  void RunMpiBaselines() {
    const int64_t element_size = DataTypeSize(flags_.dtype);
    for (Collective collective : flags_.collectives) {
      const std::string label = std::string(MpiFunctionName(collective)) +
                                " on MPI_COMM_WORLD, " + kolo::MpiLibrary();
      const std::string title = std::string(CollectiveName(collective)) +
                                "  [baseline: " + label +
                                ", its own algorithm choice]";
      if (std::string why = MpiUnsupported(collective, flags_.dtype, flags_.op);
          !why.empty()) {
        Skip(std::string(CollectiveName(collective)) + " baseline " + label,
             why);
        continue;
      }
      const std::vector<int64_t> counts = Counts(collective);
      const Layout largest = MakeLayout(collective, counts.back(), ranks_, 1);
      // In place, the output buffer holds the input too.
      const int64_t bytes =
          std::max(largest.input_count, largest.output_count) * element_size;
      AlignedBuffer input(largest.input_count * element_size);
      AlignedBuffer output(bytes);
      Header(title);
      BaselineTable(collective, "mpi", label,
                    [&](const Layout& layout, bool in_place) {
                      return MeasureMpi(layout, config_, in_place, input.data(),
                                        output.data());
                    });
      if (collective == Collective::kAllreduce &&
          flags_.dtype == DataType::kFloat32 && flags_.op == ReduceOp::kSum) {
        const Layout layout =
            MakeLayout(Collective::kAllreduce, kLatencyBytes / 4, ranks_, 1);
        AlignedBuffer small_input(kLatencyBytes);
        AlignedBuffer small_output(kLatencyBytes);
        mpi_latency_ = MeasureMpi(layout, LatencyConfig(), false,
                                  small_input.data(), small_output.data());
        Print(
            "# 8-byte float32 sum MPI_Allreduce: mean %.2f us, median %.2f "
            "us (best of %d trials of %d iterations)\n",
            mpi_latency_->time_us, mpi_latency_->median_us,
            LatencyConfig().trials, LatencyConfig().iters);
        Count(*mpi_latency_);
      }
    }
  }

  // Allreduce only: Gloo's allreduce and the memory bound.
  void RunBaselines() {
    const std::vector<int64_t> counts = Counts(Collective::kAllreduce);
    const int64_t element_size = DataTypeSize(flags_.dtype);
    AlignedBuffer output(counts.back() * element_size);

    if (flags_.gloo_baseline) {
      const std::string label = "Gloo AllreduceRingChunked, TCP over 127.0.0.1";
      if (std::string why = GlooBaseline::Unsupported(flags_.dtype, flags_.op);
          !why.empty()) {
        Skip("allreduce baseline " + label, why);
      } else if (hosts_ > 1) {
        Skip("allreduce baseline " + label,
             "it runs on one host (loopback, file-store rendezvous)");
      } else {
        StatusOr<std::unique_ptr<GlooBaseline>> gloo = GlooBaseline::Connect();
        if (!gloo.ok()) {
          Skip("allreduce baseline " + label, gloo.status().ToString());
          ++failures_;
        } else {
          Header("allreduce  [baseline: " + label +
                 "; Gloo reduces in place only]");
          double busbw_sum = 0;
          int columns = 0;
          for (int64_t count : counts) {
            const Layout layout =
                MakeLayout(Collective::kAllreduce, count, ranks_, 1);
            Row row = MakeRow("gloo", label, layout);
            row.in_place =
                (*gloo)->MeasureAllreduce(layout, config_, output.data());
            Record(row, &busbw_sum, &columns);
          }
          if (rank_ == 0) PrintAverageBusBandwidth(busbw_sum, columns);
        }
      }
    }

    if (memory_.has_value()) {
      const std::string label = "memory bound of a 2-rank allreduce, B/4";
      char bandwidth[32];
      std::snprintf(bandwidth, sizeof(bandwidth), "%.2f",
                    memory_->bytes_per_second / 1e9);
      Header("allreduce  [baseline: " + label + ", B = " + bandwidth +
             " GB/s; a bound, not a run]");
      double busbw_sum = 0;
      int columns = 0;
      for (int64_t count : counts) {
        const Layout layout =
            MakeLayout(Collective::kAllreduce, count, ranks_, 1);
        Row row = MakeRow("membound", label, layout);
        Measurement bound;
        bound.time_us = row.bytes / memory_->AllreduceBound() * 1e6;
        bound.median_us = bound.time_us;
        row.out_of_place = bound;
        row.in_place = bound;
        Record(row, &busbw_sum, &columns);
      }
      if (rank_ == 0) PrintAverageBusBandwidth(busbw_sum, columns);
    }
  }

  bool WriteJson(int64_t wrong, int exit_code) const {
    nlohmann::json json;
    json["tool"] = "kolo_bench";
    json["command"] = flags_.command_line;
    json["ranks"] = ranks_;
    json["hosts"] = hosts_;
    json["hostname"] = LocalHostname();
    json["gpu"] = flags_.cuda ? nlohmann::json(DescribeGpu(gpu_))
                              : nlohmann::json(nullptr);
    nlohmann::json collectives = nlohmann::json::array();
    for (Collective c : flags_.collectives)
      collectives.push_back(CollectiveName(c));
    json["config"] = {{"minbytes", flags_.min_bytes},
                      {"maxbytes", flags_.max_bytes},
                      {"stepfactor", flags_.step_factor},
                      {"iters", flags_.iters},
                      {"warmup_iters", flags_.warmup},
                      {"check", flags_.check},
                      {"trials", flags_.trials},
                      {"datatype", DataTypeName(flags_.dtype)},
                      {"op", ReduceOpName(flags_.op)},
                      {"root", flags_.root},
                      {"tensors", flags_.tensors},
                      {"device", flags_.cuda ? "cuda" : "cpu"},
                      {"collectives", collectives}};
    nlohmann::json runs = nlohmann::json::array();
    for (const KoloRun& run : kolo_runs_) {
      nlohmann::json latency = nullptr;
      if (run.latency.has_value()) {
        latency = {{"time_us", run.latency->time_us},
                   {"median_us", run.latency->median_us},
                   {"wrong", run.latency->wrong},
                   {"error", run.latency->error}};
      }
      runs.push_back({{"label", run.label},
                      {"selection", run.selection},
                      {"available", run.error.empty()},
                      {"error", run.error},
                      {"latency_8B", latency}});
    }
    json["kolo_runs"] = runs;
    json["memory_bandwidth"] = nullptr;
    if (memory_.has_value()) {
      json["memory_bandwidth"] = {
          {"read_write_GBps", memory_->bytes_per_second / 1e9},
          {"buffer_bytes", memory_->buffer_bytes},
          {"repeats", memory_->repeats},
          {"allreduce_2rank_bound_GBps", memory_->AllreduceBound() / 1e9}};
    }
    json["mpi_latency_8B"] = nullptr;
    if (mpi_latency_.has_value()) {
      json["mpi_latency_8B"] = {{"time_us", mpi_latency_->time_us},
                                {"median_us", mpi_latency_->median_us},
                                {"wrong", mpi_latency_->wrong},
                                {"error", mpi_latency_->error}};
    }
    json["skipped"] = skipped_;
    nlohmann::json rows = nlohmann::json::array();
    for (const Row& row : rows_) rows.push_back(RowToJson(row, ranks_));
    json["rows"] = rows;
    json["targets"] = TargetsToJson(targets_);
    json["wrong_total"] = wrong;
    json["failed_operations"] = failures_;
    json["exit_code"] = exit_code;
    std::ofstream file(flags_.json_path);
    file << json.dump(2) << "\n";
    file.close();
    if (!file) {
      std::fprintf(stderr, "kolo_bench: cannot write %s\n",
                   flags_.json_path.c_str());
      return false;
    }
    return true;
  }

  const BenchFlags flags_;
  RunConfig config_;
  const int rank_;
  const int ranks_;
  int local_rank_ = 0;
  int local_size_ = 1;
  int gpu_ = -1;  // --device cuda: this rank's GPU
  int hosts_ = 1;
  std::vector<Row> rows_;
  std::vector<KoloRun> kolo_runs_;
  std::optional<MemoryBandwidth> memory_;
  std::optional<Measurement> mpi_latency_;
  std::vector<TargetResult> targets_;
  std::vector<std::string> skipped_;
  int failures_ = 0;
};

}  // namespace
}  // namespace kolo::bench

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  int ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  kolo::bench::BenchFlags flags;
  std::optional<int> exit_code =
      kolo::bench::ParseFlags(argc, argv, rank == 0, &flags);
  if (!exit_code.has_value() && flags.root >= ranks) {
    if (rank == 0) {
      std::fprintf(stderr,
                   "kolo_bench: --root %d is not a rank of this %d-rank job\n",
                   flags.root, ranks);
    }
    exit_code = 2;
  }
  if (!exit_code.has_value() && provided < MPI_THREAD_MULTIPLE) {
    if (rank == 0) {
      std::fprintf(stderr,
                   "kolo_bench: MPI_THREAD_MULTIPLE is needed (kolo's thread "
                   "and the benchmark both call MPI); this MPI gives less\n");
    }
    exit_code = 1;
  }
  if (!exit_code.has_value()) {
    exit_code = kolo::bench::Bench(std::move(flags), rank, ranks).Run();
  }
  MPI_Finalize();
  return *exit_code;
}
