// chexnet_train's command line (CLI11).
#include "examples/chexnet/train/train_options.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "absl/strings/str_format.h"
#include "examples/chexnet/models/device.h"

namespace kolo::chexnet {

bool ParseTrainOptions(int argc, const char* const* argv, TrainOptions* o,
                       int* exit_code) {
  CLI::App app(
      "Trains a CheXNet classifier (14 findings of NIH ChestX-ray14) on all\n"
      "ranks of a kolo job. Launch with kolorun, e.g.\n"
      "  kolorun -np 2 -- chexnet_train --data DIR --out RUN\n"
      "Each rank trains on its ElasticSampler share of every step;\n"
      "gradients are averaged by kolo's DistributedOptimizer. Rank 0 writes\n"
      "RUN/last.pt every epoch and RUN/best.pt by validation loss (and\n"
      "step checkpoints with --checkpoint-every-steps), and at the end prints\n"
      "the per-class test AUROC and writes metrics.json, metrics.csv and\n"
      "roc.png into RUN.",
      "chexnet_train");
  app.option_defaults()->always_capture_default();
  app.add_option("--data", o->data_dir,
                 "Data set directory: Data_Entry_2017*.csv, "
                 "train_val_list.txt, test_list.txt, images/")
      ->required()
      ->check(CLI::ExistingDirectory);
  app.add_option("--out", o->out_dir,
                 "Run directory for checkpoints and metrics (created)")
      ->required();
  app.add_option("--arch", o->arch, "Model architecture")
      ->check(CLI::IsMember({"densenet121", "vgg16"}));
  app.add_option("--image-size", o->image_size,
                 "Side of the square model input in pixels (CheXNet: 224)")
      ->check(CLI::Range(32, 2048));
  app.add_option("--epochs", o->epochs,
                 "Epochs to train (in total, counting "
                 "those of a resumed run)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--batch-size", o->batch_size, "Images per batch per rank")
      ->check(CLI::Range(1, 65536));
  app.add_option("--optimizer", o->optimizer,
                 "adam: lr 1e-3, betas 0.9/0.999, scaled by the number of "
                 "ranks after a linear warm-up; adadelta: lr 1.0 (the "
                 "original blog's setting)")
      ->check(CLI::IsMember({"adam", "adadelta"}));
  app.add_option("--lr", o->lr,
                 "Base learning rate; 0 picks the optimizer's default")
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--warmup-epochs", o->warmup_epochs,
                 "Adam: epochs over which the learning rate rises from lr to "
                 "lr x ranks (0: start at lr x ranks)")
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--patience", o->plateau_patience,
                 "Epochs without a lower validation loss before the learning "
                 "rate is divided by 10")
      ->check(CLI::Range(0, 100000));
  app.add_flag("--adasum", o->adasum,
               "Combine the ranks' gradients by Adasum instead of averaging "
               "them; the learning rate stays the one-rank rate (no scaling "
               "by the number of ranks, no warm-up). CPU, 2^k ranks");
  app.add_flag("--sync-batchnorm", o->sync_batchnorm,
               "Normalize each batch-norm layer with the statistics of the "
               "global batch (all ranks' images) instead of this rank's");
  app.add_flag("--update-in-forward", o->update_in_forward,
               "Let the gradient allreduces run on into the next forward "
               "pass: each block's parameters are updated just before the "
               "forward pass reaches it (the same updates as the eager "
               "step; faster where the network is the bottleneck, slower on "
               "fast links)");
  app.add_flag("--class-weights", o->class_weights,
               "Weight each class's positives by negatives/positives of the "
               "training set in the binary cross-entropy");
  app.add_option("--weights", o->weights,
                 "Initial weights: a state_dict saved from Python with "
                 "torch.save (e.g. torchvision's ImageNet DenseNet-121); the "
                 "head is skipped when its shape differs")
      ->check(CLI::ExistingFile);
  app.add_flag("--head-bias-zero", o->head_bias_zero,
               "Initialise the head's bias to 0 (torchvision) instead of 1 "
               "(the original Keras CheXNet)");
  app.add_option("--val-fraction", o->val_fraction,
                 "Fraction of train_val patients held out for validation")
      ->check(CLI::Range(0.0, 0.9));
  app.add_option("--seed", o->seed,
                 "Seed of the validation split, the initial weights, the "
                 "shuffles and the flips");
  app.add_option("--workers", o->workers, "Image decoding threads per rank")
      ->check(CLI::Range(0, 256));
  app.add_option("--threads", o->threads,
                 "torch threads per rank; 0: cores / ranks on this host")
      ->check(CLI::Range(0, 1024));
  app.add_option("--device", o->device,
                 "cpu; cuda (each rank uses GPU local_rank % GPUs of its "
                 "host; gradients travel through kolo's NCCL backend); "
                 "cuda:N (GPU N on every rank); or auto (cuda when LibTorch "
                 "sees a GPU). Needs a CUDA LibTorch for cuda")
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            return IsDeviceSpec(value)
                       ? ""
                       : "expected cpu, cuda, cuda:N or auto, got '" + value +
                             "'";
          },
          "DEVICE"));
  CLI::Option* mixed_precision =
      app.add_option("--mixed-precision", o->mixed_precision,
                     "CUDA only. off; bf16: forward passes autocast to "
                     "bfloat16 (float32's range, no loss scaling); fp16: "
                     "autocast to float16 with a dynamic loss scaler (steps "
                     "whose gradients overflow on any rank are skipped on "
                     "every rank and the scale halves)")
          ->check(CLI::IsMember({"off", "bf16", "fp16"}));
  bool amp = false;
  app.add_flag("--amp", amp, "Same as --mixed-precision bf16")
      ->excludes(mixed_precision);
  app.add_flag("--skip-bad-images", o->skip_bad_images,
               "Skip and count missing or undecodable images instead of "
               "failing");
  app.add_option("--resume", o->resume,
                 "Continue a run. Bare or 'auto': from the newest valid "
                 "checkpoint among OUT/last.pt and "
                 "OUT/checkpoints/step-*.pt (by global step; unreadable "
                 "ones are skipped and named), or from scratch when there "
                 "is none; PATH: from that checkpoint (or fail). Restores "
                 "the model, optimizer, schedule and sampler position, "
                 "mid-epoch included")
      ->expected(0, 1)
      ->default_str("auto");
  app.add_option("--max-steps-per-epoch", o->max_steps_per_epoch,
                 "Cut each epoch to this many steps' images at the world "
                 "size of the epoch's start (0: whole epochs); for quick "
                 "runs")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--checkpoint-every-steps", o->checkpoint_every_steps,
                 "Rank 0 also writes OUT/checkpoints/step-<global step>.pt "
                 "every this many steps, mid-epoch (the newest 2 are kept; "
                 "0: only OUT/last.pt at epoch ends)")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--sample-log", o->sample_log,
                 "Every rank appends a line per step naming the dataset "
                 "indices it trained on to PREFIX.rank<r>.restart<n> "
                 "(tests/chexnet/check_sample_log.py checks that every "
                 "epoch saw every image once)");
  app.add_option("--tta", o->tta,
                 "Test-time augmentation of the test evaluation: none, or "
                 "ten-crop (AUROC reported with and without it)")
      ->check(CLI::IsMember({"none", "ten-crop"}));
  bool no_localize = false;
  app.add_flag("--no-localize", no_localize,
               "Skip the localization scores against "
               "DATA/BBox_List_2017.csv (run when that file exists)");
  app.add_option("--heatmap-images", o->heatmap_images,
                 "Boxed test images whose Grad-CAM heat maps go to "
                 "OUT/heatmaps (0: none)")
      ->check(CLI::Range(0, 1000000));
  bool progress = false;
  bool no_progress = false;
  CLI::Option* progress_flag = app.add_flag(
      "--progress", progress,
      "Show rank 0's progress bar on stderr even when it is not a terminal");
  app.add_flag("--no-progress", no_progress, "Never show the progress bar")
      ->excludes(progress_flag);

  try {
    app.parse(argc, argv);
    if (o->update_in_forward && (o->mixed_precision == "fp16")) {
      throw CLI::ValidationError(
          "--update-in-forward",
          "cannot be combined with --mixed-precision fp16: its loss scaler "
          "checks the reduced gradients before the update");
    }
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    *exit_code = code == 0 ? 0 : 2;
    return false;
  }
  if (amp) o->mixed_precision = "bf16";
  o->localize = !no_localize;
  o->progress = progress      ? ProgressMode::kAlways
                : no_progress ? ProgressMode::kNever
                              : ProgressMode::kAuto;
  return true;
}

std::string DescribeTrainOptions(const TrainOptions& o) {
  return absl::StrFormat(
      "--data %s --arch %s --image-size %d --epochs %d --batch-size %d "
      "--optimizer %s --lr %g --warmup-epochs %g --patience %d%s%s%s%s "
      "--val-fraction %g --seed %d --workers %d --threads %d --device %s "
      "--mixed-precision %s%s%s%s "
      "--max-steps-per-epoch %d --checkpoint-every-steps %d --out %s%s "
      "--tta %s%s --heatmap-images %d",
      o.data_dir, o.arch, o.image_size, o.epochs, o.batch_size, o.optimizer,
      o.lr, o.warmup_epochs, o.plateau_patience, o.adasum ? " --adasum" : "",
      o.sync_batchnorm ? " --sync-batchnorm" : "",
      o.update_in_forward ? " --update-in-forward" : "",
      o.class_weights ? " --class-weights" : "", o.val_fraction, o.seed,
      o.workers, o.threads, o.device, o.mixed_precision,
      o.head_bias_zero ? " --head-bias-zero" : "",
      o.skip_bad_images ? " --skip-bad-images" : "",
      o.weights.empty() ? "" : " --weights " + o.weights, o.max_steps_per_epoch,
      o.checkpoint_every_steps, o.out_dir,
      o.resume.empty() ? "" : " --resume " + o.resume, o.tta,
      o.localize ? "" : " --no-localize", o.heatmap_images);
}

}  // namespace kolo::chexnet
