// chexnet_train's settings and its command line.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_TRAIN_OPTIONS_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_TRAIN_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace kolo::chexnet {

enum class ProgressMode { kAuto, kAlways, kNever };

struct TrainOptions {
  std::string data_dir;              // NIH layout (see splits.h).
  std::string arch = "densenet121";  // or "vgg16"
  int image_size = 224;
  int epochs = 10;
  int batch_size = 16;             // Per rank.
  std::string optimizer = "adam";  // or "adadelta"
  // 0: the optimizer's default (Adam 1e-3, scaled by the world size after
  // warm-up; Adadelta 1.0).
  double lr = 0;
  double warmup_epochs = 1.0;  // Adam only; 0 starts at the scaled rate.
  int plateau_patience = 1;    // Epochs without improvement before lr ÷ 10.
  // Combine the ranks' gradients by Adasum (DistributedOptimizer op kAdasum)
  // instead of averaging them; the learning rate is then not scaled by the
  // number of ranks (no Adam warm-up). CPU, 2^k ranks.
  bool adasum = false;
  // Batch normalization over the global batch (every rank's images):
  // kolo::torch::convert_sync_batchnorm on the model before training.
  bool sync_batchnorm = false;
  // DistributedOptimizer's update_in_forward: step() returns while the
  // gradient allreduces still run, and each block's update is applied just
  // before the next forward pass reaches the block (the same numbers as the
  // eager step). Pays off on slow links; not with --mixed-precision fp16.
  bool update_in_forward = false;
  bool class_weights = false;  // BCE pos_weight = negatives / positives.
  std::string weights;         // Initial weights (torch.save state_dict).
  bool head_bias_zero = false;
  double val_fraction = 0.125;
  uint64_t seed = 0;
  int workers = 2;  // Decoding threads per rank.
  int threads = 0;  // torch threads per rank; 0: cores / ranks on the host.
  // "cpu", "cuda" (GPU local_rank % GPUs on each host), "cuda:N" or "auto"
  // (cuda when LibTorch sees a GPU); see models/device.h.
  std::string device = "cpu";
  // CUDA only: "off", "bf16" (autocast to bfloat16, no loss scaling) or
  // "fp16" (autocast to float16 with a dynamic loss scaler). --amp is bf16.
  std::string mixed_precision = "off";
  bool skip_bad_images = false;
  std::string out_dir;
  // --resume: "" (start from scratch), "auto" (the newest valid checkpoint
  // in OUT, if any) or the path of a checkpoint to continue from.
  std::string resume;
  // Each epoch covers min(train images, this x batch x ranks at the
  // epoch's start) images; 0: whole epochs.
  int max_steps_per_epoch = 0;
  // Rank 0 writes OUT/checkpoints/step-<global step>.pt every this many
  // steps (0: only at epoch ends; an elastic stop request writes one too).
  int checkpoint_every_steps = 0;
  // Non-empty: every rank appends one line per step (the dataset indices
  // it trained on) to <sample_log>.rank<r>.restart<n>.
  std::string sample_log;
  // Test-time augmentation of the test evaluation: "none" or "ten-crop"
  // (then both AUROCs are reported side by side).
  std::string tta = "none";
  // With DATA/BBox_List_2017.csv: score Grad-CAM maps against its boxes
  // after the test evaluation, and write heat maps of this many of the
  // boxed images to OUT/heatmaps (0: none).
  bool localize = true;
  int heatmap_images = 4;
  ProgressMode progress = ProgressMode::kAuto;
};

// Parses argv. On --help, prints help and sets *exit_code = 0; on a bad
// command line, prints CLI11's message and the usage hint to stderr and sets
// *exit_code = 2. Returns true when training should run.
bool ParseTrainOptions(int argc, const char* const* argv, TrainOptions* options,
                       int* exit_code);

// The options as "--flag value" text, for logs and metrics.json.
std::string DescribeTrainOptions(const TrainOptions& options);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_TRAIN_OPTIONS_H_
