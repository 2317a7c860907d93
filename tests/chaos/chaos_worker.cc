// chaos_worker: the data-parallel training job that tests/chaos/chaos_soak.py
// runs through kolorun while it injects faults.
//
// Training: linear regression by SGD (regression_model.h), one gradient
// allreduce of 4 MiB per step plus small tensors (bias gradient, loss, step
// number) that kolo fuses with it. Every rank also computes every other
// rank's gradient, so each allreduced value is compared bit for bit with an
// independently computed sum; a difference prints a WRONG line and exits 3.
// Rank 0 writes a checkpoint every --checkpoint-every steps and after the
// last one; --resume continues from the newest valid checkpoint (broadcast
// by rank 0) and computes exactly what an uninterrupted run would.
//
// Every line on stdout starts with a CLOCK_REALTIME timestamp (UTC,
// microseconds) and the rank: progress, checkpoints, and the first failure
// this rank sees ("FAILURE ... <status code>: <message>"), after which it
// exits 1.
//
// Other modes (no MPI, no kolo):
//   --check-checkpoint PATH   validate one checkpoint, print its step and
//                             digest (exit 0), or why it is invalid (exit 1)
//   --reference-ranks N       compute the whole run for N ranks in this one
//                             process and print the digest every checkpoint
//                             of a kolo run would carry
//
// Exit status: 0 trained to --steps (or the checked checkpoint is valid);
// 1 a kolo call failed (or the checked checkpoint is not valid); 2 bad
// usage, or a checkpoint could not be written; 3 WRONG.
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kolo/kolo.h"
#include "tests/chaos/checkpoint.h"
#include "tests/chaos/regression_model.h"

namespace kolo {
namespace chaos {
namespace {

constexpr int kKeepCheckpoints = 3;

struct Flags {
  int64_t steps = 200;
  int64_t checkpoint_every = 10;
  std::string checkpoint_dir;
  bool resume = false;
  uint64_t seed = 1;
  int batch = 2;
  int log_every = 10;
  std::string check_checkpoint;
  int reference_ranks = 0;
};

std::string rank_label = "?";

// One line on stdout: "2026-12-06T19:20:01.123456Z rank 2: ...".
void Log(const char* format, ...) {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc;
  gmtime_r(&now.tv_sec, &utc);
  char stamp[32];
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
  char message[4096];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  std::printf("%s.%06ldZ rank %s: %s\n", stamp, now.tv_nsec / 1000,
              rank_label.c_str(), message);
  std::fflush(stdout);
}

int Failure(const char* where, const Status& status) {
  Log("FAILURE %s: %s: %s", where,
      absl::StatusCodeToString(status.code()).c_str(),
      std::string(status.message()).c_str());
  // Must return promptly even when peers are gone.
  (void)kolo::Shutdown();
  return 1;
}

Tensor FloatTensor(float* data, std::vector<int64_t> shape) {
  return Tensor{data, DataType::kFloat32, std::move(shape)};
}

// Reports the first element where `got` differs from `want` in its bits.
bool SameBits(const char* what, int64_t step, const float* want,
              const float* got, int64_t count) {
  if (std::memcmp(want, got, count * sizeof(float)) == 0) return true;
  for (int64_t i = 0; i < count; ++i) {
    if (std::memcmp(&want[i], &got[i], sizeof(float)) != 0) {
      Log("WRONG step %lld %s index %lld: expected %.9g, got %.9g",
          static_cast<long long>(step), what, static_cast<long long>(i),
          want[i], got[i]);
      break;
    }
  }
  return false;
}

int CheckCheckpointMode(const std::string& path) {
  StatusOr<Checkpoint> checkpoint = ReadCheckpoint(path);
  if (!checkpoint.ok()) {
    std::printf("checkpoint invalid: %s\n",
                std::string(checkpoint.status().message()).c_str());
    return 1;
  }
  std::printf(
      "checkpoint ok: %s step=%lld world_size=%d batch=%d seed=%llu "
      "digest=%s\n",
      path.c_str(), static_cast<long long>(checkpoint->meta.step),
      checkpoint->meta.world_size, checkpoint->meta.batch,
      static_cast<unsigned long long>(checkpoint->meta.seed),
      checkpoint->digest_hex.c_str());
  return 0;
}

bool IsCheckpointStep(const Flags& flags, int64_t completed) {
  return completed == flags.steps || (flags.checkpoint_every > 0 &&
                                      completed % flags.checkpoint_every == 0);
}

int ReferenceMode(const Flags& flags) {
  RegressionModel model({flags.seed, flags.batch});
  std::vector<float> params(kParamCount, 0.0f), sum(kParamCount);
  Gradient gradient;
  for (int64_t step = 0; step < flags.steps; ++step) {
    std::fill(sum.begin(), sum.end(), 0.0f);
    for (int r = 0; r < flags.reference_ranks; ++r) {
      model.ComputeGradient(params, r, step, &gradient);
      for (int64_t k = 0; k < kParamCount; ++k) sum[k] += gradient.params[k];
    }
    model.ApplyUpdate(sum, flags.reference_ranks, &params);
    if (IsCheckpointStep(flags, step + 1)) {
      const CheckpointMeta meta{step + 1, flags.reference_ranks, flags.batch,
                                flags.seed};
      std::printf("reference step=%lld digest=%s\n",
                  static_cast<long long>(step + 1),
                  CheckpointDigest(meta, params).c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}

// Rank 0 loads the newest valid checkpoint of this run's configuration and
// broadcasts its step and parameters; every rank returns the step.
StatusOr<int64_t> Resume(const Flags& flags, int world_size,
                         std::vector<float>* params) {
  int64_t step = 0;
  if (Rank() == 0) {
    for (const std::string& path : ListCheckpoints(flags.checkpoint_dir)) {
      StatusOr<Checkpoint> checkpoint = ReadCheckpoint(path);
      if (!checkpoint.ok()) {
        Log("skipping checkpoint: %s",
            std::string(checkpoint.status().message()).c_str());
        continue;
      }
      const CheckpointMeta& meta = checkpoint->meta;
      if (meta.world_size != world_size || meta.batch != flags.batch ||
          meta.seed != flags.seed) {
        Log("skipping checkpoint %s: written by a run with world size %d, "
            "batch %d, seed %llu",
            path.c_str(), meta.world_size, meta.batch,
            static_cast<unsigned long long>(meta.seed));
        continue;
      }
      Log("resuming from %s step=%lld digest=%s", path.c_str(),
          static_cast<long long>(meta.step), checkpoint->digest_hex.c_str());
      step = meta.step;
      *params = std::move(checkpoint->params);
      break;
    }
    if (step == 0) Log("no valid checkpoint: starting from step 0");
  }
  Tensor step_tensor{&step, DataType::kInt64, {1}};
  if (Status s = Broadcast("resume.step", step_tensor, 0); !s.ok()) return s;
  if (Status s = Broadcast("resume.params",
                           FloatTensor(params->data(), {kParamCount}), 0);
      !s.ok()) {
    return s;
  }
  return step;
}

int TrainMode(const Flags& flags) {
  if (const char* env_rank = std::getenv("OMPI_COMM_WORLD_RANK")) {
    rank_label = env_rank;
  }
  char host[256] = "?";
  gethostname(host, sizeof(host) - 1);
  Log("started pid=%d host=%s", static_cast<int>(getpid()), host);
  if (Status s = Init(); !s.ok()) return Failure("in init", s);
  const int rank = Rank(), size = Size();
  rank_label = absl::StrCat(rank);
  if (size > kMaxRanks) {
    Log("at most %d ranks keep the quantised sums exact; this job has %d",
        kMaxRanks, size);
    (void)Shutdown();
    return 2;
  }
  Log("init ok size=%d local_size=%d backend=%s", size, LocalSize(),
      BackendName().c_str());
  if (rank == 0) RemoveStaleTemporaries(flags.checkpoint_dir);

  RegressionModel model({flags.seed, flags.batch});
  std::vector<float> params(kParamCount, 0.0f);
  int64_t first_step = 0;
  if (flags.resume) {
    StatusOr<int64_t> resumed = Resume(flags, size, &params);
    if (!resumed.ok()) return Failure("while resuming", resumed.status());
    first_step = *resumed;
    Log("resumed at step %lld", static_cast<long long>(first_step));
  }

  Gradient mine, other;
  std::vector<float> expected(kParamCount), reduced(kParamCount);
  for (int64_t step = first_step; step < flags.steps; ++step) {
    // The independent reference: every rank's contribution, summed here.
    std::fill(expected.begin(), expected.end(), 0.0f);
    float expected_loss = 0;
    for (int r = 0; r < size; ++r) {
      Gradient& g = r == rank ? mine : other;
      model.ComputeGradient(params, r, step, &g);
      for (int64_t k = 0; k < kParamCount; ++k) expected[k] += g.params[k];
      expected_loss += g.loss;
    }
    float loss = mine.loss;
    int32_t step_mark = static_cast<int32_t>(step + 1);
    AllreduceOptions sum;
    sum.op = ReduceOp::kSum;
    const std::vector<std::pair<const char*, StatusOr<Handle>>> handles = {
        {"grad.weights",
         AllreduceAsync("grad.weights",
                        FloatTensor(mine.params.data(), {kInputs, kOutputs}),
                        FloatTensor(reduced.data(), {kInputs, kOutputs}), sum)},
        {"grad.bias",
         AllreduceAsync(
             "grad.bias",
             FloatTensor(mine.params.data() + kWeightCount, {kOutputs}),
             FloatTensor(reduced.data() + kWeightCount, {kOutputs}), sum)},
        {"loss", AllreduceAsync("loss", FloatTensor(&loss, {1}),
                                FloatTensor(&loss, {1}), sum)},
        {"step",
         AllreduceAsync("step", Tensor{&step_mark, DataType::kInt32, {1}},
                        Tensor{&step_mark, DataType::kInt32, {1}}, sum)},
    };
    for (const auto& [name, handle] : handles) {
      Status status = handle.ok() ? handle->Wait() : handle.status();
      if (!status.ok()) {
        return Failure(absl::StrCat("in step ", step, " (", name, ")").c_str(),
                       status);
      }
    }
    bool right = SameBits("grad.weights", step, expected.data(), reduced.data(),
                          kWeightCount);
    right = SameBits("grad.bias", step, expected.data() + kWeightCount,
                     reduced.data() + kWeightCount, kOutputs) &&
            right;
    right = SameBits("loss", step, &expected_loss, &loss, 1) && right;
    if (step_mark != size * static_cast<int32_t>(step + 1)) {
      Log("WRONG step %lld step: expected %d, got %d",
          static_cast<long long>(step), size * static_cast<int>(step + 1),
          step_mark);
      right = false;
    }
    if (!right) {
      (void)Shutdown();
      return 3;
    }
    model.ApplyUpdate(reduced, size, &params);

    const int64_t completed = step + 1;
    if (completed % flags.log_every == 0 || completed == flags.steps) {
      Log("step %lld loss %.6f", static_cast<long long>(completed),
          loss / size);
    }
    if (rank == 0 && IsCheckpointStep(flags, completed)) {
      const CheckpointMeta meta{completed, size, flags.batch, flags.seed};
      StatusOr<std::string> path =
          WriteCheckpoint(flags.checkpoint_dir, meta, params, kKeepCheckpoints);
      if (!path.ok()) {
        Log("cannot write a checkpoint: %s",
            std::string(path.status().message()).c_str());
        (void)Shutdown();
        return 2;
      }
      Log("checkpoint %s step=%lld digest=%s", path->c_str(),
          static_cast<long long>(completed),
          CheckpointDigest(meta, params).c_str());
    }
  }
  if (Status s = Shutdown(); !s.ok()) return Failure("in shutdown", s);
  Log("done steps=%lld", static_cast<long long>(flags.steps));
  return 0;
}

}  // namespace
}  // namespace chaos
}  // namespace kolo

int main(int argc, char** argv) {
  kolo::chaos::Flags flags;
  CLI::App app(
      "The chaos test's training job (run it through kolorun), or a checker "
      "of its checkpoints, or a one-process reference of a whole run.");
  app.add_option("--steps", flags.steps, "Train until this many steps are done")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--checkpoint-every", flags.checkpoint_every,
                 "Rank 0 writes a checkpoint every this many steps "
                 "(and after the last one)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--checkpoint-dir", flags.checkpoint_dir,
                 "Folder of rank 0's checkpoints")
      ->check(CLI::ExistingDirectory);
  app.add_flag("--resume", flags.resume,
               "Continue from the newest valid checkpoint");
  app.add_option("--seed", flags.seed, "Seed of the synthetic data")
      ->capture_default_str();
  app.add_option("--batch", flags.batch, "Samples per rank and step")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--log-every", flags.log_every, "Progress line every N steps")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  app.add_option("--check-checkpoint", flags.check_checkpoint,
                 "Validate this checkpoint file and exit");
  app.add_option("--reference-ranks", flags.reference_ranks,
                 "Compute a run of this many ranks in one process and print "
                 "its checkpoint digests")
      ->check(CLI::Range(1, kolo::chaos::kMaxRanks));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!flags.check_checkpoint.empty()) {
    return kolo::chaos::CheckCheckpointMode(flags.check_checkpoint);
  }
  if (flags.reference_ranks > 0) return kolo::chaos::ReferenceMode(flags);
  if (flags.checkpoint_dir.empty()) {
    std::fprintf(stderr, "chaos_worker: --checkpoint-dir is required\n");
    return 2;
  }
  return kolo::chaos::TrainMode(flags);
}
