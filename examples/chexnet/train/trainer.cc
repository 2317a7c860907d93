// chexnet_train's program (see trainer.h).
#include "examples/chexnet/train/trainer.h"

#include <ATen/autocast_mode.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/torch.h>
#include <torch/version.h>
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
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "examples/chexnet/data/batch_loader.h"
#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/data/dataset.h"
#include "examples/chexnet/data/labels.h"
#include "examples/chexnet/data/splits.h"
#include "examples/chexnet/metrics/auroc.h"
#include "examples/chexnet/metrics/localization.h"
#include "examples/chexnet/metrics/report.h"
#include "examples/chexnet/metrics/roc_plot.h"
#include "examples/chexnet/models/chexnet_model.h"
#include "examples/chexnet/models/device.h"
#include "examples/chexnet/models/load_weights.h"
#include "examples/chexnet/predict/localizer.h"
#include "examples/chexnet/predict/ten_crop.h"
#include "examples/chexnet/train/adadelta.h"
#include "examples/chexnet/train/checkpoint.h"
#include "examples/chexnet/train/loss_scaler.h"
#include "examples/chexnet/train/plateau_schedule.h"
#include "examples/chexnet/train/progress_bar.h"
#include "kolo/torch.h"

namespace kolo::chexnet {
namespace {

using Clock = std::chrono::steady_clock;

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

// torch.autocast("cuda", dtype) for LibTorch: CUDA ops inside the scope run
// in `dtype` where autocast's policy allows (convolutions, matmuls), in
// float32 where precision matters (losses, reductions). Does nothing when
// not enabled. LibTorch 2.4 made the API device-generic.
class CudaAutocast {
 public:
  CudaAutocast(bool enabled, at::ScalarType dtype) : enabled_(enabled) {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
    previous_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
#endif
    at::autocast::increment_nesting();
  }
  ~CudaAutocast() {
    if (!enabled_) return;
    // As torch.autocast's __exit__: the cast weights cached for this scope
    // are dropped when the outermost scope ends.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#else
    at::autocast::set_enabled(previous_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
#endif
  }
  CudaAutocast(const CudaAutocast&) = delete;
  CudaAutocast& operator=(const CudaAutocast&) = delete;

 private:
  const bool enabled_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kHalf;
};

// --mixed-precision: whether forward passes autocast, and to what.
struct MixedPrecision {
  bool enabled = false;
  at::ScalarType dtype = at::kFloat;
  bool loss_scaling = false;  // fp16 only
};

// Binary cross-entropy with logits, mean over images and classes;
// pos_weight undefined means unweighted.
::torch::Tensor Loss(const ::torch::Tensor& logits, const ::torch::Tensor& labels,
                   const ::torch::Tensor& pos_weight) {
  namespace F = ::torch::nn::functional;
  auto options = F::BinaryCrossEntropyWithLogitsFuncOptions();
  if (pos_weight.defined()) options.pos_weight(pos_weight);
  return F::binary_cross_entropy_with_logits(logits, labels, options);
}

void SetLearningRate(::torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

// Scores of one evaluation list, gathered from every rank and ordered by
// dataset index.
struct Evaluation {
  int64_t images = 0;
  double loss = std::nan("");
  ChexnetMetrics metrics;
};

absl::StatusOr<Evaluation> Evaluate(ChexnetModel& model,
                                    const ChestXrayDataset& dataset,
                                    LoaderOptions loader_options,
                                    const ::torch::Tensor& pos_weight,
                                    ::torch::Device device,
                                    const MixedPrecision& precision,
                                    const std::string& name, int ten_crop = 0) {
  const int rank = kolo::torch::rank();
  const int size = kolo::torch::size();
  // Rank r scores positions r, r + size, ...: no padding, so every image is
  // scored exactly once.
  std::vector<int64_t> shard;
  for (int64_t i = rank; i < dataset.size(); i += size) shard.push_back(i);
  loader_options.random_horizontal_flip = false;
  loader_options.drop_last = false;
  BatchLoader loader(&dataset, loader_options);
  absl::Status status = loader.StartEpoch(shard, 0);
  if (!status.ok()) return status;

  model.eval();
  std::vector<::torch::Tensor> logits_parts;
  std::vector<::torch::Tensor> index_parts;
  {
    ::torch::NoGradGuard no_grad;
    while (true) {
      absl::StatusOr<std::optional<Batch>> next = loader.Next();
      if (!next.ok()) return next.status();
      if (!next->has_value()) break;
      const Batch& batch = **next;
      if (batch.images.size(0) == 0) continue;
      ::torch::Tensor logits;
      {
        CudaAutocast autocast(precision.enabled, precision.dtype);
        const ::torch::Tensor images =
            batch.images.to(device, /*non_blocking=*/true);
        // Ten-crop averages probabilities; their logits stand in for the
        // model's, so that the loss and AUROC below need no special case.
        logits =
            ten_crop > 0
                ? ::torch::logit(TenCropProbabilities(model, images, ten_crop)
                                     .to(::torch::kFloat32),
                                 1e-7)
                : model.forward(images);
      }
      // Scores, loss and AUROC are computed on the CPU in float32.
      logits_parts.push_back(logits.to(::torch::kCPU, ::torch::kFloat32));
      index_parts.push_back(::torch::tensor(batch.indices, ::torch::kInt64));
    }
  }
  ::torch::Tensor local_logits =
      logits_parts.empty() ? ::torch::zeros({0, kNumLabels})
                           : ::torch::cat(logits_parts).contiguous();
  ::torch::Tensor local_indices = index_parts.empty()
                                    ? ::torch::zeros({0}, ::torch::kInt64)
                                    : ::torch::cat(index_parts);
  ::torch::Tensor all_logits =
      kolo::torch::allgather(local_logits, name + ".logits");
  ::torch::Tensor all_indices =
      kolo::torch::allgather(local_indices, name + ".indices");
  ::torch::Tensor order = std::get<1>(all_indices.sort());
  all_logits = all_logits.index_select(0, order).contiguous();
  all_indices = all_indices.index_select(0, order).contiguous();

  Evaluation result;
  result.images = all_indices.size(0);
  ::torch::Tensor labels = ::torch::zeros({result.images, kNumLabels});
  auto label_rows = labels.accessor<float, 2>();
  auto index_values = all_indices.accessor<int64_t, 1>();
  for (int64_t i = 0; i < result.images; ++i) {
    const LabelVector& entry_labels = dataset.entry(index_values[i]).labels;
    for (int c = 0; c < kNumLabels; ++c) label_rows[i][c] = entry_labels[c];
  }
  if (result.images == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, ": no image could be scored"));
  }
  result.loss =
      Loss(all_logits, labels,
           pos_weight.defined() ? pos_weight.to(::torch::kCPU) : pos_weight)
          .item<double>();
  ::torch::Tensor scores = ::torch::sigmoid(all_logits).contiguous();
  absl::StatusOr<ChexnetMetrics> metrics = ComputeChexnetMetrics(
      absl::MakeConstSpan(scores.data_ptr<float>(), scores.numel()),
      absl::MakeConstSpan(labels.data_ptr<float>(), labels.numel()),
      result.images);
  if (!metrics.ok()) {
    return absl::Status(metrics.status().code(),
                        absl::StrCat(name, ": ", metrics.status().message()));
  }
  result.metrics = *std::move(metrics);
  return result;
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

// Grad-CAM against DATA/BBox_List_2017.csv: every box whose image is in the
// test list is scored; a box naming an image the metadata does not know is
// an error. Heat maps of the first --heatmap-images boxed images go to
// OUT/heatmaps.
absl::StatusOr<LocalizationMetrics> LocalizeTest(ChexnetModel& model,
                                                 const TrainOptions& o,
                                                 const std::string& image_dir,
                                                 const std::string& boxes_path,
                                                 const NihSplits& splits,
                                                 ::torch::Device device) {
  absl::StatusOr<std::vector<FindingBox>> boxes = ReadBBoxListCsv(boxes_path);
  if (!boxes.ok()) return boxes.status();
  std::vector<DataEntry> all = splits.train;
  all.insert(all.end(), splits.validation.begin(), splits.validation.end());
  all.insert(all.end(), splits.test.begin(), splits.test.end());
  if (absl::Status s = CheckBoxImagesKnown(*boxes, all, boxes_path); !s.ok()) {
    return s;
  }
  std::unordered_set<std::string> test_images;
  for (const DataEntry& entry : splits.test) {
    test_images.insert(entry.image_index);
  }
  std::vector<FindingBox> test_boxes;
  for (const FindingBox& box : *boxes) {
    if (test_images.count(box.image_index) != 0) test_boxes.push_back(box);
  }
  LocalizeOptions options;
  if (o.heatmap_images > 0) {
    options.heatmap_dir =
        (std::filesystem::path(o.out_dir) / "heatmaps").string();
    options.max_heatmap_images = o.heatmap_images;
  }
  model.eval();
  return LocalizeBoxes(model, o.image_size, device, image_dir, test_boxes,
                       options);
}

// OUT/checkpoints/step-<global step>.pt, zero-padded so that names sort by
// step.
std::string StepCheckpointPath(const std::string& out_dir,
                               int64_t global_step) {
  return (std::filesystem::path(out_dir) / "checkpoints" /
          absl::StrFormat("step-%010d.pt", global_step))
      .string();
}

// The step checkpoints in OUT/checkpoints, by global step.
std::vector<std::pair<int64_t, std::string>> StepCheckpoints(
    const std::string& out_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const std::filesystem::path dir =
      std::filesystem::path(out_dir) / "checkpoints";
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    int64_t step = 0;
    if (name.size() > 8 && name.rfind("step-", 0) == 0 &&
        name.substr(name.size() - 3) == ".pt" &&
        absl::SimpleAtoi(name.substr(5, name.size() - 8), &step)) {
      found.emplace_back(step, entry.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

// --resume auto: OUT/last.pt and the step checkpoints whose meta reads,
// newest (by global step) first; at equal steps last.pt first, since it
// also holds that epoch's evaluation. Unreadable files are named and
// skipped.
std::vector<std::string> AutoResumeCandidates(const std::string& out_dir) {
  struct Candidate {
    int64_t global_step;
    bool is_last;
    std::string path;
  };
  std::vector<std::string> paths;
  const std::string last =
      (std::filesystem::path(out_dir) / "last.pt").string();
  if (std::filesystem::exists(last)) paths.push_back(last);
  for (const auto& [step, path] : StepCheckpoints(out_dir)) {
    paths.push_back(path);
  }
  std::vector<Candidate> candidates;
  for (const std::string& path : paths) {
    CheckpointMeta meta;
    const absl::Status status =
        LoadCheckpoint(path, &meta, nullptr, nullptr, nullptr);
    if (!status.ok()) {
      // LoadCheckpoint's message starts with the path.
      std::printf("resume: skipping %s\n",
                  std::string(status.message()).c_str());
      continue;
    }
    candidates.push_back({meta.global_step, path == last, path});
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) {
              return a.global_step != b.global_step
                         ? a.global_step > b.global_step
                         : a.is_last > b.is_last;
            });
  std::vector<std::string> ordered;
  for (const Candidate& c : candidates) ordered.push_back(c.path);
  return ordered;
}

// Reads a checkpoint's "sampler" entry into an ElasticSampler. Files written
// before chexnet_train used one hold a DistributedSampler's state, always
// at the start of an epoch: only its epoch is taken.
void LoadSamplerEntry(::torch::serialize::InputArchive& archive,
                      kolo::torch::elastic::ElasticSampler* sampler) {
  const std::vector<std::string> keys = archive.keys();
  if (std::find(keys.begin(), keys.end(), "cursor") != keys.end()) {
    sampler->load(archive);
    return;
  }
  ::torch::Tensor epoch;
  archive.read("epoch", epoch, /*is_buffer=*/true);
  sampler->set_epoch(epoch.item<int64_t>());
}

}  // namespace

absl::StatusOr<TrainingOutcome> RunTraining(const TrainOptions& o) {
  const Clock::time_point start = Clock::now();
  // A GPU that is not there, or mixed precision without one, fails before
  // the runtime starts (the rank's GPU is picked below, from its local rank).
  absl::StatusOr<::torch::Device> requested =
      ResolveDevice(o.device, 0, "--device");
  if (!requested.ok()) return requested.status();
  if (o.mixed_precision != "off" && !requested->is_cuda()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--mixed-precision ", o.mixed_precision, " (or --amp) needs a GPU: "
        "autocast is used on CUDA only, and this run is on ",
        requested->str(), " (--device ", o.device, ")"));
  }
  kolo::torch::init();
  const int rank = kolo::torch::rank();
  const int size = kolo::torch::size();
  const bool is_root = rank == 0;
  const int hardware_threads =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads =
      o.threads > 0
          ? o.threads
          : std::max(1, hardware_threads /
                            std::max(1, kolo::torch::local_size()));
  ::torch::set_num_threads(threads);
  absl::StatusOr<::torch::Device> resolved =
      ResolveDevice(o.device, kolo::torch::local_rank(), "--device");
  if (!resolved.ok()) return resolved.status();
  const ::torch::Device device = *resolved;
  const bool use_cuda = device.is_cuda();
  if (o.adasum && (use_cuda || (size & (size - 1)) != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--adasum runs on the CPU with a power-of-two number of "
                     "ranks; this run has ",
                     size, " ranks on ", device.str()));
  }
  MixedPrecision precision;
  if (o.mixed_precision != "off") {
    precision.enabled = true;
    precision.dtype = o.mixed_precision == "fp16" ? at::kHalf : at::kBFloat16;
    precision.loss_scaling = o.mixed_precision == "fp16";
  }
  if (use_cuda) {
    // Input sizes are fixed, so cuDNN's autotuned convolutions pay off after
    // the first step.
    at::globalContext().setBenchmarkCuDNN(true);
  }
  if (is_root) {
    std::printf("chexnet_train: %d rank%s, %d torch thread%s per rank "
                "(torch::get_num_threads() = %d), %d decoding worker%s, %s%s, "
                "mixed precision %s\n",
                size, size == 1 ? "" : "s", threads, threads == 1 ? "" : "s",
                ::torch::get_num_threads(), o.workers,
                o.workers == 1 ? "" : "s", device.str().c_str(),
                use_cuda && o.device == "cuda" ? " (local rank % GPUs)" : "",
                o.mixed_precision.c_str());
    std::fflush(stdout);
  }

  // ---- data ---------------------------------------------------------------
  SplitOptions split_options;
  split_options.validation_fraction = o.val_fraction;
  split_options.seed = o.seed;
  absl::StatusOr<NihSplits> splits = LoadNihSplits(o.data_dir, split_options);
  if (!splits.ok()) return splits.status();
  if (splits->train.empty() || splits->validation.empty() ||
      splits->test.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: need training, validation and test images, got %d, %d and %d "
        "(validation is --val-fraction %g of the train_val patients)",
        o.data_dir, splits->train.size(), splits->validation.size(),
        splits->test.size(), o.val_fraction));
  }
  ImageOptions image_options;
  image_options.image_size = o.image_size;
  const std::string image_dir =
      (std::filesystem::path(o.data_dir) / kImagesDir).string();
  const ChestXrayDataset train_set(image_dir, splits->train, image_options);
  const ChestXrayDataset validation_set(image_dir, splits->validation,
                                        image_options);
  const ChestXrayDataset test_set(image_dir, splits->test, image_options);
  if (is_root) {
    std::printf("data: %s (%s): %lld train, %lld validation, %lld test images\n",
                o.data_dir.c_str(), splits->metadata_csv.c_str(),
                static_cast<long long>(train_set.size()),
                static_cast<long long>(validation_set.size()),
                static_cast<long long>(test_set.size()));
  }
  ::torch::Tensor pos_weight;
  if (o.class_weights) {
    const LabelVector fraction = train_set.PositiveFraction();
    pos_weight = ::torch::ones({kNumLabels});
    for (int c = 0; c < kNumLabels; ++c) {
      if (fraction[c] > 0) pos_weight[c] = (1.0 - fraction[c]) / fraction[c];
    }
    pos_weight = pos_weight.to(device);
  }

  // ---- model and optimizer ------------------------------------------------
  ::torch::manual_seed(o.seed);
  absl::StatusOr<std::shared_ptr<ChexnetModel>> made =
      MakeModel(o.arch, kNumFindings, !o.head_bias_zero);
  if (!made.ok()) return made.status();
  std::shared_ptr<ChexnetModel> model = *made;
  if (is_root && !o.weights.empty()) {
    absl::StatusOr<LoadReport> report = LoadWeights(o.weights, model.get());
    if (!report.ok()) return report.status();
    std::printf("weights: %lld tensors from %s", 
                static_cast<long long>(report->loaded), o.weights.c_str());
    for (const std::string& note : report->notes) {
      std::printf("; %s", note.c_str());
    }
    std::printf("\n");
  }
  model->to(device);
  if (o.sync_batchnorm) {
    // Before the optimizer sees the parameters (the converted layers share
    // them anyway) and before checkpoints load: the state_dict's names do
    // not change, so checkpoints move freely between the two kinds.
    const int64_t converted = kolo::torch::convert_sync_batchnorm(*model);
    if (is_root) {
      std::printf("sync batchnorm: %lld layers normalize over the global "
                  "batch of %d ranks\n",
                  static_cast<long long>(converted), size);
    }
  }
  const bool adam = o.optimizer == "adam";
  const double base_lr = o.lr > 0 ? o.lr : (adam ? 1e-3 : 1.0);
  std::shared_ptr<::torch::optim::Optimizer> optimizer;
  if (adam) {
    optimizer = std::make_shared<::torch::optim::Adam>(
        model->parameters(),
        ::torch::optim::AdamOptions(base_lr).betas(std::make_tuple(0.9, 0.999)));
  } else {
    optimizer = std::make_shared<Adadelta>(model->parameters(),
                                           AdadeltaOptions(base_lr));
  }

  // Every image of an epoch is trained exactly once, in shares that follow
  // the world size (kolo/elastic.h), so a relaunch with another number of
  // ranks continues the epoch where its checkpoint left it.
  const size_t train_images = static_cast<size_t>(train_set.size());
  kolo::torch::elastic::ElasticSampler sampler(train_images, o.seed);
  // --max-steps-per-epoch counts steps at this launch's world size; an
  // epoch keeps the image count of its start (saved with the sampler).
  const size_t epoch_samples =
      o.max_steps_per_epoch > 0
          ? std::min<size_t>(train_images,
                             static_cast<size_t>(o.max_steps_per_epoch) *
                                 o.batch_size * size)
          : train_images;
  int64_t steps_per_epoch = 0;
  {
    kolo::torch::elastic::ElasticSampler fresh(train_images, o.seed);
    fresh.set_epoch(0, epoch_samples);
    steps_per_epoch = fresh.steps_left(size, o.batch_size);
  }

  // ---- resume, then every rank takes rank 0's state ----------------------
  std::error_code mkdir_error;
  if (is_root) std::filesystem::create_directories(o.out_dir, mkdir_error);
  if (mkdir_error) {
    return absl::InternalError(absl::StrCat(
        o.out_dir, ": cannot create directory: ", mkdir_error.message()));
  }
  const std::string last_path =
      (std::filesystem::path(o.out_dir) / "last.pt").string();
  const std::string best_path =
      (std::filesystem::path(o.out_dir) / "best.pt").string();

  CheckpointMeta meta;
  meta.arch = o.arch;
  meta.image_size = o.image_size;
  meta.optimizer = o.optimizer;
  meta.seed = o.seed;
  meta.world_size = size;
  // [found, epochs completed, global step, plateau best, plateau bad epochs,
  //  lr factor, best validation loss, best epoch, epoch step, epoch
  //  samples, cursor, epoch loss sum, epoch loss rows]
  ::torch::Tensor resume_state = ::torch::zeros({13}, ::torch::kFloat64);
  if (is_root && !o.resume.empty()) {
    const bool automatic = o.resume == "auto";
    const std::vector<std::string> candidates =
        automatic ? AutoResumeCandidates(o.out_dir)
                  : std::vector<std::string>{o.resume};
    for (const std::string& path : candidates) {
      CheckpointMeta saved;
      kolo::torch::elastic::ElasticSampler saved_sampler(train_images, o.seed);
      absl::Status status = LoadCheckpoint(
          path, &saved, model.get(), optimizer.get(),
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
      if (saved.world_size != size) {
        std::printf("resume: %s was written by %lld ranks, this run has %d\n",
                    path.c_str(), static_cast<long long>(saved.world_size),
                    size);
      }
      meta.history = saved.history;
      resume_state = ::torch::tensor(
          {1.0, static_cast<double>(saved.epochs_completed),
           static_cast<double>(saved.global_step), saved.plateau.best,
           static_cast<double>(saved.plateau.bad_epochs),
           saved.plateau.lr_factor, saved.best_validation_loss,
           static_cast<double>(saved.best_epoch),
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
    if (resume_state[0].item<double>() == 0) {
      std::printf("resume: no checkpoint in %s; starting from scratch\n",
                  o.out_dir.c_str());
    }
  }
  kolo::torch::broadcast_(resume_state, 0, "resume_state");
  PlateauSchedule plateau(o.plateau_patience);
  // A run resumed mid-epoch continues that epoch at the saved position.
  bool resume_mid_epoch = false;
  int64_t resumed_epoch_step = 0;
  size_t resumed_epoch_samples = 0;
  size_t resumed_cursor = 0;
  double resumed_loss_sum = 0;
  int64_t resumed_loss_rows = 0;
  {
    auto r = resume_state.accessor<double, 1>();
    if (r[0] != 0) {
      meta.epochs_completed = static_cast<int64_t>(r[1]);
      meta.global_step = static_cast<int64_t>(r[2]);
      meta.plateau = {r[3], static_cast<int64_t>(r[4]), r[5]};
      meta.best_validation_loss = r[6];
      meta.best_epoch = static_cast<int64_t>(r[7]);
      plateau.set_state(meta.plateau);
      resumed_epoch_step = static_cast<int64_t>(r[8]);
      resume_mid_epoch = resumed_epoch_step > 0;
      resumed_epoch_samples = static_cast<size_t>(r[9]);
      resumed_cursor = static_cast<size_t>(r[10]);
      // The saved sums are every rank's; rank 0 carries them on.
      if (is_root) {
        resumed_loss_sum = r[11];
        resumed_loss_rows = static_cast<int64_t>(r[12]);
      }
    }
  }
  kolo::torch::broadcast_parameters(*model, 0);
  // Adam's state travels field by field, Adadelta's (unknown to the
  // adapter) as the archive its save() writes.
  kolo::torch::broadcast_optimizer_state(*optimizer, 0);

  // The rate at `progress` epochs (fractional: epoch + images done / images
  // in the epoch): Adam's warm-up towards lr x ranks at the current world
  // size (not with --adasum, whose combined gradient is not an average),
  // times the plateau factor. LibTorch does not restore a group's lr from a
  // checkpoint, so it is recomputed from these before every step.
  SetLearningRate(*optimizer, base_lr);
  std::unique_ptr<kolo::torch::LearningRateWarmup> warmup;
  if (adam && !o.adasum && o.warmup_epochs > 0) {
    warmup = std::make_unique<kolo::torch::LearningRateWarmup>(
        *optimizer, o.warmup_epochs, std::max<int64_t>(1, steps_per_epoch),
        size);
  }
  auto learning_rate = [&](double progress) {
    double scale = 1.0;
    if (adam && !o.adasum) {
      scale = warmup ? warmup->multiplier_at(progress) : size;
    }
    return base_lr * scale * plateau.state().lr_factor;
  };

  kolo::torch::DistributedOptimizerOptions distributed_options;
  if (o.adasum) distributed_options.op = kolo::ReduceOp::kAdasum;
  kolo::torch::DistributedOptimizer distributed_optimizer(
      optimizer, model->named_parameters(), distributed_options);
  // fp16 only. Whether a step overflowed is decided over all ranks, so every
  // rank skips the same steps.
  std::unique_ptr<DynamicLossScaler> loss_scaler;
  if (precision.loss_scaling) {
    loss_scaler = std::make_unique<DynamicLossScaler>(
        LossScalerOptions{}, [](bool local_overflow) {
          ::torch::Tensor flag =
              ::torch::full({}, local_overflow ? 1.0f : 0.0f);
          kolo::AllreduceOptions max;
          max.op = kolo::ReduceOp::kMax;
          return kolo::torch::allreduce(flag, "amp.overflow", max)
                     .item<float>() != 0;
        });
  }
  const std::vector<::torch::Tensor> parameters = model->parameters();

  if (is_root) {
    const std::string scaling =
        o.adasum ? std::string(", gradients combined by adasum")
        : adam   ? absl::StrFormat(" x %d ranks, warm-up %g epochs", size,
                                   o.warmup_epochs)
                 : std::string();
    std::printf(
        "model: %s at %d px, %s (base lr %g%s), batch %d per rank (%d in "
        "all), %lld steps per epoch, epochs %lld..%d\n",
        o.arch.c_str(), o.image_size, o.optimizer.c_str(), base_lr,
        scaling.c_str(),
        o.batch_size, o.batch_size * size,
        static_cast<long long>(steps_per_epoch),
        static_cast<long long>(meta.epochs_completed + 1), o.epochs);
    std::fflush(stdout);
  }

  // ---- training -----------------------------------------------------------
  LoaderOptions loader_options;
  loader_options.batch_size = o.batch_size;
  loader_options.num_workers = o.workers;
  loader_options.seed = o.seed;
  loader_options.skip_bad_images = o.skip_bad_images;
  loader_options.pin_memory = use_cuda;
  LoaderOptions train_loader_options = loader_options;
  train_loader_options.random_horizontal_flip = true;
  BatchLoader train_loader(&train_set, train_loader_options);
  const bool show_progress =
      is_root && (o.progress == ProgressMode::kAlways ||
                  (o.progress == ProgressMode::kAuto && ::isatty(2)));
  ProgressBar bar(show_progress);
  int64_t skipped_before = 0;

  const int restart = kolo::torch::elastic::restart_count();
  if (is_root && restart > 0) {
    std::printf("elastic: restart %d, %d rank%s\n", restart, size,
                size == 1 ? "" : "s");
    std::fflush(stdout);
  }
  std::FILE* sample_log = nullptr;
  if (!o.sample_log.empty()) {
    const std::string path =
        absl::StrCat(o.sample_log, ".rank", rank, ".restart", restart);
    sample_log = std::fopen(path.c_str(), "a");
    if (sample_log == nullptr) {
      return absl::InternalError(absl::StrCat(
          path, ": cannot open the --sample-log file: ", std::strerror(errno)));
    }
  }
  struct FileCloser {
    std::FILE* file;
    ~FileCloser() {
      if (file != nullptr) std::fclose(file);
    }
  } close_sample_log{sample_log};
  std::error_code checkpoint_dir_error;
  if (is_root) {
    std::filesystem::create_directories(
        std::filesystem::path(o.out_dir) / "checkpoints", checkpoint_dir_error);
  }
  if (checkpoint_dir_error) {
    return absl::InternalError(
        absl::StrCat(o.out_dir, "/checkpoints: cannot create directory: ",
                     checkpoint_dir_error.message()));
  }
  // Collective: rank 0 writes OUT/checkpoints/step-<global step>.pt with the
  // epoch's train-loss sums over every rank, then removes all but the
  // newest two step checkpoints.
  auto write_step_checkpoint = [&](int64_t epoch, int64_t epoch_step,
                                   double loss_sum,
                                   int64_t rows_sum) -> absl::Status {
    kolo::AllreduceOptions sum;
    sum.op = kolo::ReduceOp::kSum;
    const ::torch::Tensor sums = kolo::torch::allreduce(
        ::torch::tensor({loss_sum, static_cast<double>(rows_sum)},
                        ::torch::kFloat64),
        "train_loss.step_checkpoint", sum);
    if (!is_root) return absl::OkStatus();
    CheckpointMeta step_meta = meta;
    step_meta.epochs_completed = epoch;
    step_meta.world_size = size;
    step_meta.plateau = plateau.state();
    step_meta.epoch_step = epoch_step;
    step_meta.epoch_loss_sum = sums[0].item<double>();
    step_meta.epoch_loss_rows = static_cast<int64_t>(sums[1].item<double>());
    const std::string path = StepCheckpointPath(o.out_dir, meta.global_step);
    absl::Status status = SaveCheckpoint(
        path, step_meta, *model, optimizer.get(),
        SamplerSaver([&](::torch::serialize::OutputArchive& archive) {
          sampler.save(archive);
        }));
    if (!status.ok()) return status;
    // Older ones go only once the new one is complete.
    std::vector<std::pair<int64_t, std::string>> steps =
        StepCheckpoints(o.out_dir);
    for (size_t i = 0; i + 2 < steps.size(); ++i) {
      std::error_code ignored;
      std::filesystem::remove(steps[i].second, ignored);
    }
    return absl::OkStatus();
  };

  for (int64_t epoch = meta.epochs_completed; epoch < o.epochs; ++epoch) {
    const Clock::time_point epoch_start = Clock::now();
    int64_t epoch_step = 0;
    // This rank's sums of loss x rows and rows (rank 0's include those of
    // the steps before a resume).
    double loss_sum = 0;
    int64_t rows_sum = 0;
    if (resume_mid_epoch) {
      sampler.set_epoch(epoch, resumed_epoch_samples, resumed_cursor);
      epoch_step = resumed_epoch_step;
      loss_sum = resumed_loss_sum;
      rows_sum = resumed_loss_rows;
      resume_mid_epoch = false;
    } else {
      sampler.set_epoch(epoch, epoch_samples);
    }
    // The rest of the epoch at this world size, planned on a copy so that
    // the loader can decode ahead; the sampler itself advances step by
    // step, so a checkpoint saves its position.
    std::vector<std::vector<int64_t>> shares;
    {
      kolo::torch::elastic::ElasticSampler plan = sampler;
      while (!plan.epoch_done()) {
        const std::vector<size_t> share =
            plan.NextStep(size, rank, o.batch_size).indices;
        shares.emplace_back(share.begin(), share.end());
      }
    }
    const int64_t steps = static_cast<int64_t>(shares.size());
    absl::Status status = train_loader.StartEpochBatches(shares, epoch);
    if (!status.ok()) return status;
    bar.Start(epoch, o.epochs, steps);
    model->train();
    int64_t images_seen = 0;
    for (int64_t i = 0; i < steps; ++i) {
      absl::StatusOr<std::optional<Batch>> next = train_loader.Next();
      if (!next.ok()) return next.status();
      if (!next->has_value()) {
        return absl::InternalError(
            absl::StrFormat("epoch %d: the loader ended after %d of %d batches",
                            epoch + 1, i, steps));
      }
      const Batch& batch = **next;
      const double progress = epoch + sampler.epoch_fraction();
      const kolo::torch::elastic::ElasticSampler::Step share =
          sampler.NextStep(size, rank, o.batch_size);
      // Pinned batches: the copies overlap with queued GPU work.
      const ::torch::Tensor images = batch.images.to(device, true);
      const ::torch::Tensor targets = batch.labels.to(device, true);
      SetLearningRate(*optimizer, learning_rate(progress));
      ::torch::manual_seed(StepSeed(o.seed, epoch, epoch_step, rank));
      distributed_optimizer.zero_grad();
      const int64_t rows = batch.images.size(0);
      // A share of fewer than two images (an empty one at the end of an
      // epoch, or one left so by --skip-bad-images) still takes part in the
      // step (its gradients count as zeros), so that the ranks stay in
      // step. With --sync-batchnorm it runs forward and backward all the
      // same, even empty: the normalization layers are collectives every
      // rank must join, and they normalize over the global batch.
      if (rows >= 2 || o.sync_batchnorm) {
        ::torch::Tensor loss;
        {
          CudaAutocast autocast(precision.enabled, precision.dtype);
          const ::torch::Tensor logits = model->forward(images);
          // No image: a zero that still reaches every parameter.
          loss = rows > 0 ? Loss(logits, targets, pos_weight)
                          : logits.sum() * 0.0;
        }
        // Weighted by this rank's part of the step's images, the averaged
        // gradient is the per-image mean of the whole step when shares are
        // uneven; full steps have weight 1 and are left untouched.
        const double weight =
            static_cast<double>(rows) * size / static_cast<double>(share.rows);
        const ::torch::Tensor weighted = weight == 1.0 ? loss : loss * weight;
        (loss_scaler ? loss_scaler->Scale(weighted) : weighted).backward();
        loss_sum += loss.item<double>() * rows;
        rows_sum += rows;
      }
      if (loss_scaler) {
        // The reduced gradients are checked and unscaled between the
        // allreduce and the update; an overflowing step updates nothing.
        distributed_optimizer.synchronize();
        if (loss_scaler->UnscaleOrSkip(parameters)) {
          distributed_optimizer.step();
        }
      } else {
        distributed_optimizer.step();
      }
      if (sample_log != nullptr) {
        std::fprintf(sample_log,
                     "restart=%d epoch=%lld step=%lld rank=%d world=%d "
                     "indices=%s\n",
                     restart, static_cast<long long>(epoch),
                     static_cast<long long>(meta.global_step), rank, size,
                     absl::StrJoin(share.indices, ",").c_str());
        std::fflush(sample_log);
      }
      ++meta.global_step;
      ++epoch_step;
      images_seen += share.rows;
      bar.Update(i + 1, images_seen,
                 rows_sum > 0 ? loss_sum / rows_sum : std::nan(""));
      // Both are the same on every rank: the stop check is collective.
      const bool stop = kolo::torch::elastic::stop_requested();
      if (stop || (o.checkpoint_every_steps > 0 &&
                   meta.global_step % o.checkpoint_every_steps == 0)) {
        status = write_step_checkpoint(epoch, epoch_step, loss_sum, rows_sum);
        if (!status.ok()) return status;
      }
      if (stop) {
        bar.Finish();
        if (is_root) {
          std::printf(
              "elastic: stop requested; wrote %s after step %lld "
              "(epoch %lld, %zu of its %zu images); exiting with "
              "status %d\n",
              StepCheckpointPath(o.out_dir, meta.global_step).c_str(),
              static_cast<long long>(meta.global_step),
              static_cast<long long>(epoch + 1), sampler.cursor(),
              sampler.epoch_samples(), kolo::torch::elastic::kStoppedExitCode);
          std::fflush(stdout);
        }
        kolo::torch::shutdown();
        return TrainingOutcome::kStopped;
      }
    }
    bar.Finish();
    const double train_seconds = SecondsSince(epoch_start);
    // The mean over every image of the epoch, whichever rank trained it.
    double train_loss = 0;
    {
      kolo::AllreduceOptions sum;
      sum.op = kolo::ReduceOp::kSum;
      const ::torch::Tensor sums = kolo::torch::allreduce(
          ::torch::tensor({loss_sum, static_cast<double>(rows_sum)},
                          ::torch::kFloat64),
          "train_loss", sum);
      const double rows_total = sums[1].item<double>();
      train_loss = rows_total > 0 ? sums[0].item<double>() / rows_total : 0.0;
    }
    if (loss_scaler && is_root) {
      std::printf("amp fp16: loss scale %g, %lld overflowing step%s skipped "
                  "so far\n",
                  loss_scaler->scale(),
                  static_cast<long long>(loss_scaler->skipped_steps()),
                  loss_scaler->skipped_steps() == 1 ? "" : "s");
    }
    if (o.skip_bad_images && train_loader.skipped_images() > skipped_before) {
      std::printf("rank %d: skipped %lld bad images in epoch %lld\n", rank,
                  static_cast<long long>(train_loader.skipped_images() -
                                         skipped_before),
                  static_cast<long long>(epoch + 1));
      skipped_before = train_loader.skipped_images();
    }

    // Every rank evaluates (and rank 0 saves) rank 0's batch-norm statistics.
    kolo::torch::broadcast_parameters(model->named_buffers(), 0);
    absl::StatusOr<Evaluation> validation = Evaluate(
        *model, validation_set, loader_options, pos_weight, device, precision,
        "validation");
    if (!validation.ok()) return validation.status();
    const bool reduced = plateau.Step(validation->loss);
    const bool improved = validation->loss < meta.best_validation_loss;
    if (improved) {
      meta.best_validation_loss = validation->loss;
      meta.best_epoch = epoch;
    }
    meta.epochs_completed = epoch + 1;
    meta.plateau = plateau.state();
    const double next_lr = learning_rate(static_cast<double>(epoch + 1));
    EpochRecord record;
    record.epoch = epoch;
    record.train_loss = train_loss;
    record.validation_loss = validation->loss;
    record.validation_auroc = validation->metrics.mean_auroc;
    record.learning_rate = next_lr;
    record.seconds = SecondsSince(epoch_start);
    meta.history.push_back(record);
    // The next epoch's start (its image count is fixed when it starts).
    sampler.set_epoch(epoch + 1, epoch_samples);
    if (is_root) {
      const SamplerSaver save_sampler =
          [&sampler](::torch::serialize::OutputArchive& archive) {
            sampler.save(archive);
          };
      status = SaveCheckpoint(last_path, meta, *model, optimizer.get(),
                              save_sampler);
      if (status.ok() && improved) {
        status = SaveCheckpoint(best_path, meta, *model, optimizer.get(),
                                save_sampler);
      }
      if (!status.ok()) return status;
      std::printf(
          "epoch %lld/%d: train loss %.4f, validation loss %.4f, validation "
          "mean AUROC %s, %.1f img/s, %.1f s%s%s\n",
          static_cast<long long>(epoch + 1), o.epochs, train_loss,
          validation->loss, FormatMean(validation->metrics.mean_auroc).c_str(),
          images_seen / std::max(train_seconds, 1e-9), record.seconds,
          improved ? ", best so far" : "",
          reduced ? absl::StrFormat(", plateau: lr -> %g", next_lr).c_str()
                  : "");
      std::fflush(stdout);
    }
  }

  // ---- test: the best model -----------------------------------------------
  if (is_root && std::filesystem::exists(best_path)) {
    CheckpointMeta best_meta;
    absl::Status status =
        LoadCheckpoint(best_path, &best_meta, model.get(), nullptr, nullptr);
    if (!status.ok()) return status;
    std::printf("test: best.pt (epoch %lld, validation loss %.4f)\n",
                static_cast<long long>(best_meta.best_epoch + 1),
                best_meta.best_validation_loss);
  }
  kolo::torch::broadcast_parameters(*model, 0);
  absl::StatusOr<Evaluation> test =
      Evaluate(*model, test_set, loader_options, pos_weight, device, precision,
               "test");
  if (!test.ok()) return test.status();
  // The same images resized to 256/224 of the input side, ten crops each.
  std::optional<Evaluation> test_ten_crop;
  if (o.tta == "ten-crop") {
    ImageOptions resized = image_options;
    resized.image_size = TenCropResizeSide(o.image_size);
    const ChestXrayDataset resized_test_set(image_dir, splits->test, resized);
    absl::StatusOr<Evaluation> evaluation =
        Evaluate(*model, resized_test_set, loader_options, pos_weight, device,
                 precision, "test.ten_crop", o.image_size);
    if (!evaluation.ok()) return evaluation.status();
    test_ten_crop = *std::move(evaluation);
  }
  const double elapsed = SecondsSince(start);
  if (is_root) {
    std::printf("\nTest AUROC (%lld images of %s)\n%s\n",
                static_cast<long long>(test->images), o.data_dir.c_str(),
                FormatAurocTable(test->metrics).c_str());
    if (test_ten_crop.has_value()) {
      std::printf(
          "Test AUROC without and with ten-crop test-time "
          "augmentation\n%s\n",
          FormatAurocComparisonTable(test->metrics, test_ten_crop->metrics,
                                     "ten-crop")
              .c_str());
    }
    std::optional<LocalizationMetrics> localization;
    const std::filesystem::path boxes_path =
        std::filesystem::path(o.data_dir) / kBBoxList;
    if (o.localize && std::filesystem::exists(boxes_path)) {
      absl::StatusOr<LocalizationMetrics> scored = LocalizeTest(
          *model, o, image_dir, boxes_path.string(), *splits, device);
      if (!scored.ok()) return scored.status();
      localization = *std::move(scored);
      std::printf("%s\n", FormatLocalizationTable(*localization).c_str());
    }
    nlohmann::json json = MetricsToJson(test->metrics);
    if (test_ten_crop.has_value()) {
      json["ten_crop"] = MetricsToJson(test_ten_crop->metrics);
      json["ten_crop"]["test_loss"] = test_ten_crop->loss;
    }
    if (localization.has_value()) {
      json["localization"] = LocalizationToJson(*localization);
    }
    json["split"] = "test";
    json["test_loss"] = test->loss;
    json["arch"] = o.arch;
    json["image_size"] = o.image_size;
    json["optimizer"] = o.optimizer;
    json["world_size"] = size;
    json["device"] = device.str();
    json["mixed_precision"] = o.mixed_precision;
    json["threads_per_rank"] = threads;
    json["batch_size_per_rank"] = o.batch_size;
    json["epochs"] = meta.epochs_completed;
    json["best_epoch"] = meta.best_epoch + 1;
    json["global_step"] = meta.global_step;
    json["elapsed_seconds"] = elapsed;
    json["history"] = HistoryToJson(meta.history);
    json["command_line"] = DescribeTrainOptions(o);
    const std::filesystem::path out(o.out_dir);
    absl::Status status = WriteJsonFile((out / "metrics.json").string(), json);
    if (status.ok()) {
      status = WriteMetricsCsv((out / "metrics.csv").string(), test->metrics);
    }
    if (status.ok()) {
      RocPlotOptions plot_options;
      plot_options.title = absl::StrFormat(
          "CHEXNET %s %dPX, %d RANKS: TEST MEAN AUROC %s", o.arch,
          o.image_size, size, FormatMean(test->metrics.mean_auroc));
      status = WriteRocPlot((out / "roc.png").string(), test->metrics,
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
    std::printf("test mean AUROC %s over %d classes, %lld images; elapsed "
                "%.1f s\n",
                FormatMean(test->metrics.mean_auroc).c_str(),
                test->metrics.num_defined,
                static_cast<long long>(test->images), elapsed);
    std::fflush(stdout);
  }
  kolo::torch::shutdown();
  return TrainingOutcome::kFinished;
}

}  // namespace kolo::chexnet
