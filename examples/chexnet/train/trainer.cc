// chexnet_train's program (see trainer.h): a Trainer whose Run() takes the
// steps of a run in order, one method each.
#include "examples/chexnet/train/trainer.h"

#include <torch/optim/adam.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "examples/chexnet/data/batch_loader.h"
#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/data/dataset.h"
#include "examples/chexnet/data/labels.h"
#include "examples/chexnet/data/splits.h"
#include "examples/chexnet/metrics/localization.h"
#include "examples/chexnet/metrics/report.h"
#include "examples/chexnet/metrics/roc_plot.h"
#include "examples/chexnet/models/chexnet_model.h"
#include "examples/chexnet/models/device.h"
#include "examples/chexnet/models/load_weights.h"
#include "examples/chexnet/predict/ten_crop.h"
#include "examples/chexnet/train/adadelta.h"
#include "examples/chexnet/train/checkpoint.h"
#include "examples/chexnet/train/checkpoint_files.h"
#include "examples/chexnet/train/evaluation.h"
#include "examples/chexnet/train/loss_scaler.h"
#include "examples/chexnet/train/mixed_precision.h"
#include "examples/chexnet/train/plateau_schedule.h"
#include "examples/chexnet/train/progress_bar.h"
#include "kolo/elastic.h"
#include "kolo/torch.h"

namespace kolo::chexnet {
namespace {

using Clock = std::chrono::steady_clock;
using kolo::torch::elastic::ElasticSampler;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// splitmix64: decorrelates the per-step seeds.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t StepSeed(uint64_t seed, int64_t epoch, int64_t step, int rank) {
  return Mix(seed ^ Mix(static_cast<uint64_t>(epoch) ^
                        Mix(static_cast<uint64_t>(step) ^
                            Mix(static_cast<uint64_t>(rank)))));
}

void SetLearningRate(::torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

// Collective: [sum of loss x rows, sum of rows] over every rank, as float64.
::torch::Tensor SumOverRanks(double loss_sum, int64_t rows_sum,
                             const std::string& name) {
  kolo::AllreduceOptions sum;
  sum.op = kolo::ReduceOp::kSum;
  return kolo::torch::allreduce(
      ::torch::tensor({loss_sum, static_cast<double>(rows_sum)},
                      ::torch::kFloat64),
      name, sum);
}

std::string FormatMean(double auroc) {
  return std::isnan(auroc) ? "n/a" : absl::StrFormat("%.4f", auroc);
}

nlohmann::json HistoryToJson(const std::vector<EpochRecord>& history) {
  nlohmann::json rows = nlohmann::json::array();
  for (const EpochRecord& r : history) {
    auto number = [](double x) {
      return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
    };
    rows.push_back({{"epoch", r.epoch + 1},
                    {"train_loss", number(r.train_loss)},
                    {"validation_loss", number(r.validation_loss)},
                    {"validation_mean_auroc", number(r.validation_auroc)},
                    {"learning_rate", number(r.learning_rate)},
                    {"seconds", number(r.seconds)}});
  }
  return rows;
}

// Reads a checkpoint's "sampler" entry into an ElasticSampler. Files written
// before chexnet_train used one hold a DistributedSampler's state, always
// at the start of an epoch: only its epoch is taken.
void LoadSamplerEntry(::torch::serialize::InputArchive& archive,
                      ElasticSampler* sampler) {
  const std::vector<std::string> keys = archive.keys();
  if (std::find(keys.begin(), keys.end(), "cursor") != keys.end()) {
    sampler->load(archive);
    return;
  }
  ::torch::Tensor epoch;
  archive.read("epoch", epoch, /*is_buffer=*/true);
  sampler->set_epoch(epoch.item<int64_t>());
}

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

// One rank's run. Run() takes the steps in the order they are declared below
// (each followed by its helpers); a step sets the members listed under its
// name, which later steps read.
class Trainer {
 public:
  explicit Trainer(const TrainOptions& options)
      : options_(options),
        start_(Clock::now()),
        plateau_(options.plateau_patience) {}

  absl::StatusOr<TrainingOutcome> Run();

 private:
  // Where a run resumed mid-epoch continues that epoch.
  struct ResumePoint {
    bool mid_epoch = false;
    int64_t epoch_step = 0;
    size_t epoch_samples = 0;
    size_t cursor = 0;
    // Every rank's sums of the epoch's steps so far; rank 0 carries them on.
    double loss_sum = 0;
    int64_t loss_rows = 0;
  };
  // This rank's part of the epoch being trained.
  struct EpochProgress {
    int64_t step = 0;  // of the epoch, counting steps before a resume
    // Sums of loss x rows and of rows (rank 0's include those of the steps
    // before a resume).
    double loss_sum = 0;
    int64_t rows_sum = 0;
    int64_t images_seen = 0;  // by every rank, in this launch
  };
  // What a trained epoch leaves for its validation and report.
  struct TrainedEpoch {
    // Stopped on kolorun's request, after writing a step checkpoint.
    bool stopped = false;
    Clock::time_point start;
    double train_seconds = 0;
    double train_loss = 0;  // the mean over every image of the epoch
    int64_t images_seen = 0;
  };
  // The best model's scores on the test list.
  struct TestScores {
    Evaluation plain;
    std::optional<Evaluation> ten_crop;  // --tta ten-crop
  };

  // Starts kolo and picks this rank's device and threads.
  absl::Status StartRank();
  // The NIH split, its data sets and the sampler of the training images.
  absl::Status LoadData();
  // The model from --seed, --weights on rank 0, sync batchnorm.
  absl::Status BuildModel();
  void BuildOptimizer();
  // Rank 0 reads --resume's checkpoint, then every rank takes rank 0's state.
  absl::Status Resume();
  absl::Status ReadResumeCheckpoint(::torch::Tensor* resume_state);
  void TakeResumeState(const ::torch::Tensor& resume_state);
  // The learning-rate schedule, the DistributedOptimizer and the loss scaler.
  void DistributeOptimizer();
  double LearningRate(double progress) const;
  // The training loader, the progress bar, --sample-log and OUT/checkpoints.
  absl::Status PrepareEpochs();
  absl::StatusOr<TrainedEpoch> TrainEpoch(int64_t epoch);
  std::vector<std::vector<int64_t>> PlanShares() const;
  void TrainStep(int64_t epoch, const Batch& batch, EpochProgress* progress);
  // With --update-in-forward: applies every update still owed (collective),
  // before anything reads the parameters outside a forward pass.
  void FinishUpdates() {
    if (options_.update_in_forward) distributed_optimizer_->finish_updates();
  }
  absl::Status WriteStepCheckpoint(int64_t epoch,
                                   const EpochProgress& progress);
  absl::StatusOr<Evaluation> Validate();
  absl::Status EndEpoch(int64_t epoch, const TrainedEpoch& trained,
                        const Evaluation& validation);
  absl::Status SaveEpochCheckpoints(bool improved);
  void ReportEpoch(const EpochRecord& record, const TrainedEpoch& trained,
                   bool improved, bool reduced) const;
  absl::StatusOr<TestScores> Test();
  // Rank 0: the AUROC tables, the localization, metrics.json, metrics.csv
  // and roc.png.
  absl::Status Report(const TestScores& test, double elapsed);
  nlohmann::json MetricsJson(
      const TestScores& test,
      const std::optional<LocalizationMetrics>& localization,
      double elapsed) const;

  const TrainOptions& options_;
  const Clock::time_point start_;

  // StartRank.
  int rank_ = 0;
  int size_ = 1;
  bool is_root_ = true;
  int threads_ = 1;
  ::torch::Device device_ = ::torch::kCPU;
  bool use_cuda_ = false;
  MixedPrecision precision_;

  // LoadData.
  NihSplits splits_;
  std::string image_dir_;
  ImageOptions image_options_;
  std::optional<ChestXrayDataset> train_set_;
  std::optional<ChestXrayDataset> validation_set_;
  std::optional<ChestXrayDataset> test_set_;
  ::torch::Tensor pos_weight_;  // undefined without --class-weights
  LoaderOptions loader_options_;
  // Every image of an epoch is trained exactly once, in shares that follow
  // the world size (kolo/elastic.h), so a relaunch with another number of
  // ranks continues the epoch where its checkpoint left it.
  std::optional<ElasticSampler> sampler_;
  size_t epoch_samples_ = 0;
  int64_t steps_per_epoch_ = 0;

  // BuildModel.
  std::shared_ptr<ChexnetModel> model_;

  // BuildOptimizer.
  bool adam_ = false;
  double base_lr_ = 0;
  std::shared_ptr<::torch::optim::Optimizer> optimizer_;

  // Resume (and then every epoch).
  std::string last_path_;
  std::string best_path_;
  CheckpointMeta meta_;
  PlateauSchedule plateau_;
  ResumePoint resume_;

  // DistributeOptimizer.
  std::unique_ptr<kolo::torch::LearningRateWarmup> warmup_;
  std::unique_ptr<kolo::torch::DistributedOptimizer> distributed_optimizer_;
  // fp16 only.
  std::unique_ptr<DynamicLossScaler> loss_scaler_;
  std::vector<::torch::Tensor> parameters_;

  // PrepareEpochs.
  std::unique_ptr<BatchLoader> train_loader_;
  std::optional<ProgressBar> bar_;
  int64_t skipped_before_ = 0;  // bad images skipped before this epoch
  int restart_ = 0;
  std::unique_ptr<std::FILE, FileCloser> sample_log_;
};

absl::StatusOr<TrainingOutcome> Trainer::Run() {
  if (absl::Status s = StartRank(); !s.ok()) return s;
  if (absl::Status s = LoadData(); !s.ok()) return s;
  if (absl::Status s = BuildModel(); !s.ok()) return s;
  BuildOptimizer();
  if (absl::Status s = Resume(); !s.ok()) return s;
  DistributeOptimizer();
  if (absl::Status s = PrepareEpochs(); !s.ok()) return s;
  for (int64_t epoch = meta_.epochs_completed; epoch < options_.epochs;
       ++epoch) {
    absl::StatusOr<TrainedEpoch> trained = TrainEpoch(epoch);
    if (!trained.ok()) return trained.status();
    if (trained->stopped) {
      kolo::torch::shutdown();
      return TrainingOutcome::kStopped;
    }
    absl::StatusOr<Evaluation> validation = Validate();
    if (!validation.ok()) return validation.status();
    if (absl::Status s = EndEpoch(epoch, *trained, *validation); !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<TestScores> test = Test();
  if (!test.ok()) return test.status();
  const double elapsed = SecondsSince(start_);
  if (is_root_) {
    if (absl::Status s = Report(*test, elapsed); !s.ok()) return s;
  }
  kolo::torch::shutdown();
  return TrainingOutcome::kFinished;
}

absl::Status Trainer::StartRank() {
  const TrainOptions& o = options_;
  // A GPU that is not there, or mixed precision without one, fails before
  // the runtime starts (the rank's GPU is picked below, from its local rank).
  absl::StatusOr<::torch::Device> requested =
      ResolveDevice(o.device, 0, "--device");
  if (!requested.ok()) return requested.status();
  if (o.mixed_precision != "off" && !requested->is_cuda()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--mixed-precision ", o.mixed_precision,
                     " (or --amp) needs a GPU: "
                     "autocast is used on CUDA only, and this run is on ",
                     requested->str(), " (--device ", o.device, ")"));
  }
  kolo::torch::init();
  rank_ = kolo::torch::rank();
  size_ = kolo::torch::size();
  is_root_ = rank_ == 0;
  const int hardware_threads =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads_ = o.threads > 0
                 ? o.threads
                 : std::max(1, hardware_threads /
                                   std::max(1, kolo::torch::local_size()));
  ::torch::set_num_threads(threads_);
  absl::StatusOr<::torch::Device> resolved =
      ResolveDevice(o.device, kolo::torch::local_rank(), "--device");
  if (!resolved.ok()) return resolved.status();
  device_ = *resolved;
  use_cuda_ = device_.is_cuda();
  if (o.adasum && (use_cuda_ || (size_ & (size_ - 1)) != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--adasum runs on the CPU with a power-of-two number of "
                     "ranks; this run has ",
                     size_, " ranks on ", device_.str()));
  }
  if (o.mixed_precision != "off") {
    precision_.enabled = true;
    precision_.dtype = o.mixed_precision == "fp16" ? at::kHalf : at::kBFloat16;
    precision_.loss_scaling = o.mixed_precision == "fp16";
  }
  if (use_cuda_) {
    // Input sizes are fixed, so cuDNN's autotuned convolutions pay off after
    // the first step.
    at::globalContext().setBenchmarkCuDNN(true);
  }
  if (is_root_) {
    std::printf(
        "chexnet_train: %d rank%s, %d torch thread%s per rank "
        "(torch::get_num_threads() = %d), %d decoding worker%s, %s%s, "
        "mixed precision %s\n",
        size_, size_ == 1 ? "" : "s", threads_, threads_ == 1 ? "" : "s",
        ::torch::get_num_threads(), o.workers, o.workers == 1 ? "" : "s",
        device_.str().c_str(),
        use_cuda_ && o.device == "cuda" ? " (local rank % GPUs)" : "",
        o.mixed_precision.c_str());
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

absl::Status Trainer::LoadData() {
  const TrainOptions& o = options_;
  SplitOptions split_options;
  split_options.validation_fraction = o.val_fraction;
  split_options.seed = o.seed;
  absl::StatusOr<NihSplits> splits = LoadNihSplits(o.data_dir, split_options);
  if (!splits.ok()) return splits.status();
  splits_ = *std::move(splits);
  if (splits_.train.empty() || splits_.validation.empty() ||
      splits_.test.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: need training, validation and test images, got %d, %d and %d "
        "(validation is --val-fraction %g of the train_val patients)",
        o.data_dir, splits_.train.size(), splits_.validation.size(),
        splits_.test.size(), o.val_fraction));
  }
  image_options_.image_size = o.image_size;
  image_dir_ = (std::filesystem::path(o.data_dir) / kImagesDir).string();
  train_set_.emplace(image_dir_, splits_.train, image_options_);
  validation_set_.emplace(image_dir_, splits_.validation, image_options_);
  test_set_.emplace(image_dir_, splits_.test, image_options_);
  if (is_root_) {
    std::printf(
        "data: %s (%s): %lld train, %lld validation, %lld test images\n",
        o.data_dir.c_str(), splits_.metadata_csv.c_str(),
        static_cast<long long>(train_set_->size()),
        static_cast<long long>(validation_set_->size()),
        static_cast<long long>(test_set_->size()));
  }
  if (o.class_weights) {
    const LabelVector fraction = train_set_->PositiveFraction();
    pos_weight_ = ::torch::ones({kNumLabels});
    for (int c = 0; c < kNumLabels; ++c) {
      if (fraction[c] > 0) pos_weight_[c] = (1.0 - fraction[c]) / fraction[c];
    }
    pos_weight_ = pos_weight_.to(device_);
  }
  loader_options_.batch_size = o.batch_size;
  loader_options_.num_workers = o.workers;
  loader_options_.seed = o.seed;
  loader_options_.skip_bad_images = o.skip_bad_images;
  loader_options_.pin_memory = use_cuda_;

  const size_t train_images = static_cast<size_t>(train_set_->size());
  sampler_.emplace(train_images, o.seed);
  // --max-steps-per-epoch counts steps at this launch's world size; an
  // epoch keeps the image count of its start (saved with the sampler).
  epoch_samples_ =
      o.max_steps_per_epoch > 0
          ? std::min<size_t>(train_images,
                             static_cast<size_t>(o.max_steps_per_epoch) *
                                 o.batch_size * size_)
          : train_images;
  ElasticSampler fresh(train_images, o.seed);
  fresh.set_epoch(0, epoch_samples_);
  steps_per_epoch_ = fresh.steps_left(size_, o.batch_size);
  return absl::OkStatus();
}

absl::Status Trainer::BuildModel() {
  const TrainOptions& o = options_;
  ::torch::manual_seed(o.seed);
  absl::StatusOr<std::shared_ptr<ChexnetModel>> made =
      MakeModel(o.arch, kNumFindings, !o.head_bias_zero);
  if (!made.ok()) return made.status();
  model_ = *made;
  if (is_root_ && !o.weights.empty()) {
    absl::StatusOr<LoadReport> report = LoadWeights(o.weights, model_.get());
    if (!report.ok()) return report.status();
    std::printf("weights: %lld tensors from %s",
                static_cast<long long>(report->loaded), o.weights.c_str());
    for (const std::string& note : report->notes) {
      std::printf("; %s", note.c_str());
    }
    std::printf("\n");
  }
  model_->to(device_);
  if (o.sync_batchnorm) {
    // Before the optimizer sees the parameters (the converted layers share
    // them anyway) and before checkpoints load: the state_dict's names do
    // not change, so checkpoints move freely between the two kinds.
    const int64_t converted = kolo::torch::convert_sync_batchnorm(*model_);
    if (is_root_) {
      std::printf(
          "sync batchnorm: %lld layers normalize over the global "
          "batch of %d ranks\n",
          static_cast<long long>(converted), size_);
    }
  }
  return absl::OkStatus();
}

void Trainer::BuildOptimizer() {
  adam_ = options_.optimizer == "adam";
  base_lr_ = options_.lr > 0 ? options_.lr : (adam_ ? 1e-3 : 1.0);
  if (adam_) {
    optimizer_ = std::make_shared<::torch::optim::Adam>(
        model_->parameters(), ::torch::optim::AdamOptions(base_lr_).betas(
                                  std::make_tuple(0.9, 0.999)));
  } else {
    optimizer_ = std::make_shared<Adadelta>(model_->parameters(),
                                            AdadeltaOptions(base_lr_));
  }
}

absl::Status Trainer::Resume() {
  const TrainOptions& o = options_;
  std::error_code mkdir_error;
  if (is_root_) std::filesystem::create_directories(o.out_dir, mkdir_error);
  if (mkdir_error) {
    return absl::InternalError(absl::StrCat(
        o.out_dir, ": cannot create directory: ", mkdir_error.message()));
  }
  last_path_ = LastCheckpointPath(o.out_dir);
  best_path_ = BestCheckpointPath(o.out_dir);

  meta_.arch = o.arch;
  meta_.image_size = o.image_size;
  meta_.optimizer = o.optimizer;
  meta_.seed = o.seed;
  meta_.world_size = size_;
  // [found, epochs completed, global step, plateau best, plateau bad epochs,
  //  lr factor, best validation loss, best epoch, epoch step, epoch
  //  samples, cursor, epoch loss sum, epoch loss rows]
  ::torch::Tensor resume_state = ::torch::zeros({13}, ::torch::kFloat64);
  if (is_root_ && !o.resume.empty()) {
    if (absl::Status s = ReadResumeCheckpoint(&resume_state); !s.ok()) {
      return s;
    }
  }
  kolo::torch::broadcast_(resume_state, 0, "resume_state");
  TakeResumeState(resume_state);
  kolo::torch::broadcast_parameters(*model_, 0);
  // Adam's state travels field by field, Adadelta's (unknown to the
  // adapter) as the archive its save() writes.
  kolo::torch::broadcast_optimizer_state(*optimizer_, 0);
  return absl::OkStatus();
}

// Rank 0: loads the model and optimizer from --resume's checkpoint (with
// --resume auto, the newest that reads) and fills *resume_state.
absl::Status Trainer::ReadResumeCheckpoint(::torch::Tensor* resume_state) {
  const TrainOptions& o = options_;
  const bool automatic = o.resume == "auto";
  const std::vector<std::string> candidates =
      automatic ? AutoResumeCandidates(o.out_dir)
                : std::vector<std::string>{o.resume};
  for (const std::string& path : candidates) {
    CheckpointMeta saved;
    ElasticSampler saved_sampler(sampler_->dataset_size(), o.seed);
    absl::Status status = LoadCheckpoint(
        path, &saved, model_.get(), optimizer_.get(),
        SamplerLoader([&](::torch::serialize::InputArchive& archive) {
          LoadSamplerEntry(archive, &saved_sampler);
        }));
    if (!status.ok()) {
      if (!automatic) return status;
      std::printf("resume: skipping %s\n",
                  std::string(status.message()).c_str());
      continue;
    }
    if (saved_sampler.epoch() != saved.epochs_completed) {
      return absl::DataLossError(absl::StrFormat(
          "%s: the sampler is at epoch %d but %d epochs are recorded", path,
          saved_sampler.epoch(), saved.epochs_completed));
    }
    if (saved.arch != o.arch || saved.image_size != o.image_size ||
        saved.optimizer != o.optimizer || saved.seed != o.seed) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: written by a run with --arch %s --image-size %d --optimizer "
          "%s --seed %d; this run has --arch %s --image-size %d "
          "--optimizer %s --seed %d",
          path, saved.arch, saved.image_size, saved.optimizer, saved.seed,
          o.arch, o.image_size, o.optimizer, o.seed));
    }
    if (saved.world_size != size_) {
      std::printf("resume: %s was written by %lld ranks, this run has %d\n",
                  path.c_str(), static_cast<long long>(saved.world_size),
                  size_);
    }
    meta_.history = saved.history;
    *resume_state = ::torch::tensor(
        {1.0, static_cast<double>(saved.epochs_completed),
         static_cast<double>(saved.global_step), saved.plateau.best,
         static_cast<double>(saved.plateau.bad_epochs), saved.plateau.lr_factor,
         saved.best_validation_loss, static_cast<double>(saved.best_epoch),
         static_cast<double>(saved.epoch_step),
         static_cast<double>(saved_sampler.epoch_samples()),
         static_cast<double>(saved_sampler.cursor()), saved.epoch_loss_sum,
         static_cast<double>(saved.epoch_loss_rows)},
        ::torch::kFloat64);
    if (saved.epoch_step > 0) {
      std::printf(
          "resume: %s in epoch %lld at its step %lld (step %lld), "
          "%lld of its %lld images done\n",
          path.c_str(), static_cast<long long>(saved.epochs_completed + 1),
          static_cast<long long>(saved.epoch_step),
          static_cast<long long>(saved.global_step),
          static_cast<long long>(saved_sampler.cursor()),
          static_cast<long long>(saved_sampler.epoch_samples()));
    } else {
      std::printf("resume: %s after epoch %lld (step %lld)\n", path.c_str(),
                  static_cast<long long>(saved.epochs_completed),
                  static_cast<long long>(saved.global_step));
    }
    break;
  }
  if ((*resume_state)[0].item<double>() == 0) {
    std::printf("resume: no checkpoint in %s; starting from scratch\n",
                o.out_dir.c_str());
  }
  return absl::OkStatus();
}

// Every rank: the meta, schedule and epoch position from rank 0's
// resume_state (all zeros: a fresh start).
void Trainer::TakeResumeState(const ::torch::Tensor& resume_state) {
  auto r = resume_state.accessor<double, 1>();
  if (r[0] == 0) return;
  meta_.epochs_completed = static_cast<int64_t>(r[1]);
  meta_.global_step = static_cast<int64_t>(r[2]);
  meta_.plateau = {r[3], static_cast<int64_t>(r[4]), r[5]};
  meta_.best_validation_loss = r[6];
  meta_.best_epoch = static_cast<int64_t>(r[7]);
  plateau_.set_state(meta_.plateau);
  resume_.epoch_step = static_cast<int64_t>(r[8]);
  resume_.mid_epoch = resume_.epoch_step > 0;
  resume_.epoch_samples = static_cast<size_t>(r[9]);
  resume_.cursor = static_cast<size_t>(r[10]);
  // The saved sums are every rank's; rank 0 carries them on.
  if (is_root_) {
    resume_.loss_sum = r[11];
    resume_.loss_rows = static_cast<int64_t>(r[12]);
  }
}

void Trainer::DistributeOptimizer() {
  const TrainOptions& o = options_;
  // LibTorch does not restore a group's lr from a checkpoint, so
  // LearningRate() sets it before every step; the warm-up reads the base
  // rate from the groups.
  SetLearningRate(*optimizer_, base_lr_);
  if (adam_ && !o.adasum && o.warmup_epochs > 0) {
    warmup_ = std::make_unique<kolo::torch::LearningRateWarmup>(
        *optimizer_, o.warmup_epochs, std::max<int64_t>(1, steps_per_epoch_),
        size_);
  }
  kolo::torch::DistributedOptimizerOptions distributed_options;
  if (o.adasum) distributed_options.op = kolo::ReduceOp::kAdasum;
  distributed_options.update_in_forward = o.update_in_forward;
  distributed_optimizer_ = std::make_unique<kolo::torch::DistributedOptimizer>(
      optimizer_, model_->named_parameters(), distributed_options);
  if (o.update_in_forward) {
    // Each block's owed update lands just before the forward pass uses it
    // (evaluation's forward passes too; FinishUpdates() at every epoch end
    // and checkpoint leaves none owed there).
    kolo::torch::DistributedOptimizer* optimizer = distributed_optimizer_.get();
    model_->set_before_block([optimizer](const ::torch::nn::Module& block) {
      optimizer->ready(block);
    });
  }
  if (precision_.loss_scaling) {
    // Whether a step overflowed is decided over all ranks, so every rank
    // skips the same steps.
    loss_scaler_ = std::make_unique<DynamicLossScaler>(
        LossScalerOptions{}, [](bool local_overflow) {
          ::torch::Tensor flag =
              ::torch::full({}, local_overflow ? 1.0f : 0.0f);
          kolo::AllreduceOptions max;
          max.op = kolo::ReduceOp::kMax;
          return kolo::torch::allreduce(flag, "amp.overflow", max)
                     .item<float>() != 0;
        });
  }
  parameters_ = model_->parameters();

  if (is_root_) {
    const std::string scaling =
        o.adasum ? std::string(", gradients combined by adasum")
        : adam_  ? absl::StrFormat(" x %d ranks, warm-up %g epochs", size_,
                                   o.warmup_epochs)
                 : std::string();
    std::printf(
        "model: %s at %d px, %s (base lr %g%s%s), batch %d per rank (%d in "
        "all), %lld steps per epoch, epochs %lld..%d\n",
        o.arch.c_str(), o.image_size, o.optimizer.c_str(), base_lr_,
        scaling.c_str(),
        o.update_in_forward ? ", updates in the forward pass" : "",
        o.batch_size, o.batch_size * size_,
        static_cast<long long>(steps_per_epoch_),
        static_cast<long long>(meta_.epochs_completed + 1), o.epochs);
    std::fflush(stdout);
  }
}

// The rate at `progress` epochs (fractional: epoch + images done / images
// in the epoch): Adam's warm-up towards lr x ranks at the current world
// size (not with --adasum, whose combined gradient is not an average),
// times the plateau factor.
double Trainer::LearningRate(double progress) const {
  double scale = 1.0;
  if (adam_ && !options_.adasum) {
    scale = warmup_ ? warmup_->multiplier_at(progress) : size_;
  }
  return base_lr_ * scale * plateau_.state().lr_factor;
}

absl::Status Trainer::PrepareEpochs() {
  const TrainOptions& o = options_;
  LoaderOptions train_loader_options = loader_options_;
  train_loader_options.random_horizontal_flip = true;
  train_loader_ =
      std::make_unique<BatchLoader>(&*train_set_, train_loader_options);
  const bool show_progress =
      is_root_ && (o.progress == ProgressMode::kAlways ||
                   (o.progress == ProgressMode::kAuto && ::isatty(2)));
  bar_.emplace(show_progress);

  restart_ = kolo::torch::elastic::restart_count();
  if (is_root_ && restart_ > 0) {
    std::printf("elastic: restart %d, %d rank%s\n", restart_, size_,
                size_ == 1 ? "" : "s");
    std::fflush(stdout);
  }
  if (!o.sample_log.empty()) {
    const std::string path =
        absl::StrCat(o.sample_log, ".rank", rank_, ".restart", restart_);
    sample_log_.reset(std::fopen(path.c_str(), "a"));
    if (sample_log_ == nullptr) {
      return absl::InternalError(absl::StrCat(
          path, ": cannot open the --sample-log file: ", std::strerror(errno)));
    }
  }
  std::error_code checkpoint_dir_error;
  if (is_root_) {
    std::filesystem::create_directories(
        std::filesystem::path(o.out_dir) / "checkpoints", checkpoint_dir_error);
  }
  if (checkpoint_dir_error) {
    return absl::InternalError(
        absl::StrCat(o.out_dir, "/checkpoints: cannot create directory: ",
                     checkpoint_dir_error.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Trainer::TrainedEpoch> Trainer::TrainEpoch(int64_t epoch) {
  const TrainOptions& o = options_;
  TrainedEpoch trained;
  trained.start = Clock::now();
  EpochProgress progress;
  if (resume_.mid_epoch) {
    sampler_->set_epoch(epoch, resume_.epoch_samples, resume_.cursor);
    progress.step = resume_.epoch_step;
    progress.loss_sum = resume_.loss_sum;
    progress.rows_sum = resume_.loss_rows;
    resume_.mid_epoch = false;
  } else {
    sampler_->set_epoch(epoch, epoch_samples_);
  }
  const std::vector<std::vector<int64_t>> shares = PlanShares();
  const int64_t steps = static_cast<int64_t>(shares.size());
  absl::Status status = train_loader_->StartEpochBatches(shares, epoch);
  if (!status.ok()) return status;
  bar_->Start(epoch, o.epochs, steps);
  model_->train();
  for (int64_t i = 0; i < steps; ++i) {
    absl::StatusOr<std::optional<Batch>> next = train_loader_->Next();
    if (!next.ok()) return next.status();
    if (!next->has_value()) {
      return absl::InternalError(
          absl::StrFormat("epoch %d: the loader ended after %d of %d batches",
                          epoch + 1, i, steps));
    }
    TrainStep(epoch, **next, &progress);
    bar_->Update(i + 1, progress.images_seen,
                 progress.rows_sum > 0 ? progress.loss_sum / progress.rows_sum
                                       : std::nan(""));
    // Both are the same on every rank: the stop check is collective.
    const bool stop = kolo::torch::elastic::stop_requested();
    if (stop || (o.checkpoint_every_steps > 0 &&
                 meta_.global_step % o.checkpoint_every_steps == 0)) {
      status = WriteStepCheckpoint(epoch, progress);
      if (!status.ok()) return status;
    }
    if (stop) {
      bar_->Finish();
      if (is_root_) {
        std::printf(
            "elastic: stop requested; wrote %s after step %lld "
            "(epoch %lld, %zu of its %zu images); exiting with "
            "status %d\n",
            StepCheckpointPath(o.out_dir, meta_.global_step).c_str(),
            static_cast<long long>(meta_.global_step),
            static_cast<long long>(epoch + 1), sampler_->cursor(),
            sampler_->epoch_samples(), kolo::torch::elastic::kStoppedExitCode);
        std::fflush(stdout);
      }
      trained.stopped = true;
      return trained;
    }
  }
  bar_->Finish();
  FinishUpdates();
  trained.train_seconds = SecondsSince(trained.start);
  trained.images_seen = progress.images_seen;
  // The mean over every image of the epoch, whichever rank trained it.
  const ::torch::Tensor sums =
      SumOverRanks(progress.loss_sum, progress.rows_sum, "train_loss");
  const double rows_total = sums[1].item<double>();
  trained.train_loss =
      rows_total > 0 ? sums[0].item<double>() / rows_total : 0.0;
  if (loss_scaler_ && is_root_) {
    std::printf(
        "amp fp16: loss scale %g, %lld overflowing step%s skipped "
        "so far\n",
        loss_scaler_->scale(),
        static_cast<long long>(loss_scaler_->skipped_steps()),
        loss_scaler_->skipped_steps() == 1 ? "" : "s");
  }
  if (o.skip_bad_images && train_loader_->skipped_images() > skipped_before_) {
    std::printf("rank %d: skipped %lld bad images in epoch %lld\n", rank_,
                static_cast<long long>(train_loader_->skipped_images() -
                                       skipped_before_),
                static_cast<long long>(epoch + 1));
    skipped_before_ = train_loader_->skipped_images();
  }
  return trained;
}

// This rank's shares of the rest of the epoch at this world size, planned on
// a copy so that the loader can decode ahead; the sampler itself advances
// step by step, so a checkpoint saves its position.
std::vector<std::vector<int64_t>> Trainer::PlanShares() const {
  std::vector<std::vector<int64_t>> shares;
  ElasticSampler plan = *sampler_;
  while (!plan.epoch_done()) {
    const std::vector<size_t> share =
        plan.NextStep(size_, rank_, options_.batch_size).indices;
    shares.emplace_back(share.begin(), share.end());
  }
  return shares;
}

// One optimizer step on this rank's share of the step's images.
void Trainer::TrainStep(int64_t epoch, const Batch& batch,
                        EpochProgress* progress) {
  const double epochs_done = epoch + sampler_->epoch_fraction();
  const ElasticSampler::Step share =
      sampler_->NextStep(size_, rank_, options_.batch_size);
  // Pinned batches: the copies overlap with queued GPU work.
  const ::torch::Tensor images = batch.images.to(device_, true);
  const ::torch::Tensor targets = batch.labels.to(device_, true);
  ::torch::manual_seed(StepSeed(options_.seed, epoch, progress->step, rank_));
  distributed_optimizer_->zero_grad();
  const int64_t rows = batch.images.size(0);
  // A share of fewer than two images (an empty one at the end of an epoch,
  // or one left so by --skip-bad-images) still takes part in the step (its
  // gradients count as zeros), so that the ranks stay in step. With
  // --sync-batchnorm it runs forward and backward all the same, even empty:
  // the normalization layers are collectives every rank must join, and they
  // normalize over the global batch.
  if (rows >= 2 || options_.sync_batchnorm) {
    ::torch::Tensor loss;
    {
      CudaAutocast autocast(precision_.enabled, precision_.dtype);
      const ::torch::Tensor logits = model_->forward(images);
      // No image: a zero that still reaches every parameter.
      loss = rows > 0 ? BceWithLogitsLoss(logits, targets, pos_weight_)
                      : logits.sum() * 0.0;
    }
    // Weighted by this rank's part of the step's images, the averaged
    // gradient is the per-image mean of the whole step when shares are
    // uneven; full steps have weight 1 and are left untouched.
    const double weight =
        static_cast<double>(rows) * size_ / static_cast<double>(share.rows);
    const ::torch::Tensor weighted = weight == 1.0 ? loss : loss * weight;
    (loss_scaler_ ? loss_scaler_->Scale(weighted) : weighted).backward();
    progress->loss_sum += loss.item<double>() * rows;
    progress->rows_sum += rows;
  }
  // The step's rate is set just before its update: with --update-in-forward
  // the update lands during the next forward pass, which must still see
  // this rate, and whatever the last one left owed is applied first at the
  // previous step's rate.
  FinishUpdates();
  SetLearningRate(*optimizer_, LearningRate(epochs_done));
  if (loss_scaler_) {
    // The reduced gradients are checked and unscaled between the allreduce
    // and the update; an overflowing step updates nothing.
    distributed_optimizer_->synchronize();
    if (loss_scaler_->UnscaleOrSkip(parameters_)) {
      distributed_optimizer_->step();
    }
  } else {
    distributed_optimizer_->step();
  }
  if (sample_log_ != nullptr) {
    std::fprintf(sample_log_.get(),
                 "restart=%d epoch=%lld step=%lld rank=%d world=%d "
                 "indices=%s\n",
                 restart_, static_cast<long long>(epoch),
                 static_cast<long long>(meta_.global_step), rank_, size_,
                 absl::StrJoin(share.indices, ",").c_str());
    std::fflush(sample_log_.get());
  }
  ++meta_.global_step;
  ++progress->step;
  progress->images_seen += share.rows;
}

// Collective: rank 0 writes OUT/checkpoints/step-<global step>.pt with the
// epoch's train-loss sums over every rank, then removes all but the newest
// two step checkpoints.
absl::Status Trainer::WriteStepCheckpoint(int64_t epoch,
                                          const EpochProgress& progress) {
  FinishUpdates();
  const ::torch::Tensor sums = SumOverRanks(
      progress.loss_sum, progress.rows_sum, "train_loss.step_checkpoint");
  if (!is_root_) return absl::OkStatus();
  CheckpointMeta step_meta = meta_;
  step_meta.epochs_completed = epoch;
  step_meta.world_size = size_;
  step_meta.plateau = plateau_.state();
  step_meta.epoch_step = progress.step;
  step_meta.epoch_loss_sum = sums[0].item<double>();
  step_meta.epoch_loss_rows = static_cast<int64_t>(sums[1].item<double>());
  const std::string path =
      StepCheckpointPath(options_.out_dir, meta_.global_step);
  absl::Status status = SaveCheckpoint(
      path, step_meta, *model_, optimizer_.get(),
      SamplerSaver([this](::torch::serialize::OutputArchive& archive) {
        sampler_->save(archive);
      }));
  if (!status.ok()) return status;
  // Older ones go only once the new one is complete.
  RemoveOldStepCheckpoints(options_.out_dir);
  return absl::OkStatus();
}

// Collective. Every rank evaluates (and rank 0 saves) rank 0's batch-norm
// statistics.
absl::StatusOr<Evaluation> Trainer::Validate() {
  kolo::torch::broadcast_parameters(model_->named_buffers(), 0);
  return Evaluate(*model_, *validation_set_, loader_options_, pos_weight_,
                  device_, precision_, "validation");
}

// Records the epoch (schedule, best model, history, the next epoch's start);
// rank 0 writes OUT/last.pt, and OUT/best.pt on a new best validation loss,
// and reports the epoch.
absl::Status Trainer::EndEpoch(int64_t epoch, const TrainedEpoch& trained,
                               const Evaluation& validation) {
  const bool reduced = plateau_.Step(validation.loss);
  const bool improved = validation.loss < meta_.best_validation_loss;
  if (improved) {
    meta_.best_validation_loss = validation.loss;
    meta_.best_epoch = epoch;
  }
  meta_.epochs_completed = epoch + 1;
  meta_.plateau = plateau_.state();
  EpochRecord record;
  record.epoch = epoch;
  record.train_loss = trained.train_loss;
  record.validation_loss = validation.loss;
  record.validation_auroc = validation.metrics.mean_auroc;
  record.learning_rate = LearningRate(static_cast<double>(epoch + 1));
  record.seconds = SecondsSince(trained.start);
  meta_.history.push_back(record);
  // The next epoch's start (its image count is fixed when it starts).
  sampler_->set_epoch(epoch + 1, epoch_samples_);
  if (!is_root_) return absl::OkStatus();
  if (absl::Status s = SaveEpochCheckpoints(improved); !s.ok()) return s;
  ReportEpoch(record, trained, improved, reduced);
  return absl::OkStatus();
}

absl::Status Trainer::SaveEpochCheckpoints(bool improved) {
  const SamplerSaver save_sampler =
      [this](::torch::serialize::OutputArchive& archive) {
        sampler_->save(archive);
      };
  absl::Status status = SaveCheckpoint(last_path_, meta_, *model_,
                                       optimizer_.get(), save_sampler);
  if (status.ok() && improved) {
    status = SaveCheckpoint(best_path_, meta_, *model_, optimizer_.get(),
                            save_sampler);
  }
  return status;
}

void Trainer::ReportEpoch(const EpochRecord& record,
                          const TrainedEpoch& trained, bool improved,
                          bool reduced) const {
  std::printf(
      "epoch %lld/%d: train loss %.4f, validation loss %.4f, validation "
      "mean AUROC %s, %.1f img/s, %.1f s%s%s\n",
      static_cast<long long>(record.epoch + 1), options_.epochs,
      record.train_loss, record.validation_loss,
      FormatMean(record.validation_auroc).c_str(),
      trained.images_seen / std::max(trained.train_seconds, 1e-9),
      record.seconds, improved ? ", best so far" : "",
      reduced
          ? absl::StrFormat(", plateau: lr -> %g", record.learning_rate).c_str()
          : "");
  std::fflush(stdout);
}

// Collective: the best model (rank 0's best.pt, when there is one) scored on
// the test list, and with --tta ten-crop on its ten crops.
absl::StatusOr<Trainer::TestScores> Trainer::Test() {
  if (is_root_ && std::filesystem::exists(best_path_)) {
    CheckpointMeta best_meta;
    absl::Status status =
        LoadCheckpoint(best_path_, &best_meta, model_.get(), nullptr, nullptr);
    if (!status.ok()) return status;
    std::printf("test: best.pt (epoch %lld, validation loss %.4f)\n",
                static_cast<long long>(best_meta.best_epoch + 1),
                best_meta.best_validation_loss);
  }
  kolo::torch::broadcast_parameters(*model_, 0);
  absl::StatusOr<Evaluation> plain =
      Evaluate(*model_, *test_set_, loader_options_, pos_weight_, device_,
               precision_, "test");
  if (!plain.ok()) return plain.status();
  TestScores scores;
  scores.plain = *std::move(plain);
  // The same images resized to 256/224 of the input side, ten crops each.
  if (options_.tta == "ten-crop") {
    ImageOptions resized = image_options_;
    resized.image_size = TenCropResizeSide(options_.image_size);
    const ChestXrayDataset resized_test_set(image_dir_, splits_.test, resized);
    absl::StatusOr<Evaluation> evaluation =
        Evaluate(*model_, resized_test_set, loader_options_, pos_weight_,
                 device_, precision_, "test.ten_crop", options_.image_size);
    if (!evaluation.ok()) return evaluation.status();
    scores.ten_crop = *std::move(evaluation);
  }
  return scores;
}

absl::Status Trainer::Report(const TestScores& test, double elapsed) {
  const TrainOptions& o = options_;
  std::printf("\nTest AUROC (%lld images of %s)\n%s\n",
              static_cast<long long>(test.plain.images), o.data_dir.c_str(),
              FormatAurocTable(test.plain.metrics).c_str());
  if (test.ten_crop.has_value()) {
    std::printf(
        "Test AUROC without and with ten-crop test-time "
        "augmentation\n%s\n",
        FormatAurocComparisonTable(test.plain.metrics, test.ten_crop->metrics,
                                   "ten-crop")
            .c_str());
  }
  std::optional<LocalizationMetrics> localization;
  const std::filesystem::path boxes_path =
      std::filesystem::path(o.data_dir) / kBBoxList;
  if (o.localize && std::filesystem::exists(boxes_path)) {
    absl::StatusOr<LocalizationMetrics> scored = LocalizeTest(
        *model_, o, image_dir_, boxes_path.string(), splits_, device_);
    if (!scored.ok()) return scored.status();
    localization = *std::move(scored);
    std::printf("%s\n", FormatLocalizationTable(*localization).c_str());
  }
  const std::filesystem::path out(o.out_dir);
  absl::Status status = WriteJsonFile((out / "metrics.json").string(),
                                      MetricsJson(test, localization, elapsed));
  if (status.ok()) {
    status =
        WriteMetricsCsv((out / "metrics.csv").string(), test.plain.metrics);
  }
  if (status.ok()) {
    RocPlotOptions plot_options;
    plot_options.title = absl::StrFormat(
        "CHEXNET %s %dPX, %d RANKS: TEST MEAN AUROC %s", o.arch, o.image_size,
        size_, FormatMean(test.plain.metrics.mean_auroc));
    status = WriteRocPlot((out / "roc.png").string(), test.plain.metrics,
                          plot_options);
  }
  if (!status.ok()) return status;
  std::printf(
      "wrote %s/{last.pt,best.pt,metrics.json,metrics.csv,roc.png}"
      "%s\n",
      o.out_dir.c_str(),
      localization.has_value() && o.heatmap_images > 0
          ? " and heat maps in heatmaps/"
          : "");
  std::printf(
      "test mean AUROC %s over %d classes, %lld images; elapsed "
      "%.1f s\n",
      FormatMean(test.plain.metrics.mean_auroc).c_str(),
      test.plain.metrics.num_defined, static_cast<long long>(test.plain.images),
      elapsed);
  std::fflush(stdout);
  return absl::OkStatus();
}

nlohmann::json Trainer::MetricsJson(
    const TestScores& test,
    const std::optional<LocalizationMetrics>& localization,
    double elapsed) const {
  const TrainOptions& o = options_;
  nlohmann::json json = MetricsToJson(test.plain.metrics);
  if (test.ten_crop.has_value()) {
    json["ten_crop"] = MetricsToJson(test.ten_crop->metrics);
    json["ten_crop"]["test_loss"] = test.ten_crop->loss;
  }
  if (localization.has_value()) {
    json["localization"] = LocalizationToJson(*localization);
  }
  json["split"] = "test";
  json["test_loss"] = test.plain.loss;
  json["arch"] = o.arch;
  json["image_size"] = o.image_size;
  json["optimizer"] = o.optimizer;
  json["world_size"] = size_;
  json["device"] = device_.str();
  json["mixed_precision"] = o.mixed_precision;
  json["threads_per_rank"] = threads_;
  json["batch_size_per_rank"] = o.batch_size;
  json["epochs"] = meta_.epochs_completed;
  json["best_epoch"] = meta_.best_epoch + 1;
  json["global_step"] = meta_.global_step;
  json["elapsed_seconds"] = elapsed;
  json["history"] = HistoryToJson(meta_.history);
  json["command_line"] = DescribeTrainOptions(o);
  return json;
}

}  // namespace

absl::StatusOr<TrainingOutcome> RunTraining(const TrainOptions& options) {
  Trainer trainer(options);
  return trainer.Run();
}

}  // namespace kolo::chexnet
