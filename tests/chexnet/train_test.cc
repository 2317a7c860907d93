// Unit tests of chexnet_train's parts: the plateau schedule, Adadelta,
// atomic files, checkpoints, the command line, the progress bar, the fp16
// loss scaler and --device parsing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/models/device.h"
#include "examples/chexnet/train/adadelta.h"
#include "examples/chexnet/train/checkpoint.h"
#include "examples/chexnet/train/loss_scaler.h"
#include "examples/chexnet/train/plateau_schedule.h"
#include "examples/chexnet/train/progress_bar.h"
#include "examples/chexnet/train/train_options.h"

namespace kolo::chexnet {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path TempDir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() /
                 ("kolo_train_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(PlateauSchedule, DividesAfterMoreThanPatienceEpochsWithoutImprovement) {
  PlateauSchedule schedule(/*patience=*/1);
  EXPECT_FALSE(schedule.Step(1.0));
  EXPECT_FALSE(schedule.Step(0.5));
  EXPECT_FALSE(schedule.Step(0.5));  // 1 bad epoch: within patience
  EXPECT_DOUBLE_EQ(schedule.state().lr_factor, 1.0);
  EXPECT_TRUE(schedule.Step(0.6));  // 2 bad epochs
  EXPECT_DOUBLE_EQ(schedule.state().lr_factor, 0.1);
  EXPECT_EQ(schedule.state().bad_epochs, 0);
  EXPECT_DOUBLE_EQ(schedule.state().best, 0.5);
  EXPECT_FALSE(schedule.Step(0.4));
  EXPECT_DOUBLE_EQ(schedule.state().best, 0.4);
}

TEST(PlateauSchedule, TinyImprovementsBelowThresholdDoNotCount) {
  PlateauSchedule schedule(/*patience=*/0, 0.1, /*threshold=*/1e-2);
  schedule.Step(1.0);
  EXPECT_TRUE(schedule.Step(0.995));  // less than 1% better
  EXPECT_TRUE(schedule.Step(std::nan("")));
  EXPECT_NEAR(schedule.state().lr_factor, 0.01, 1e-15);
}

TEST(PlateauSchedule, RestoredStateContinuesIdentically) {
  PlateauSchedule a(2);
  for (double loss : {1.0, 0.9, 0.95}) a.Step(loss);
  PlateauSchedule b(2);
  b.set_state(a.state());
  for (double loss : {0.96, 0.97, 0.98, 0.5}) {
    EXPECT_EQ(a.Step(loss), b.Step(loss)) << "loss " << loss;
    EXPECT_EQ(a.state().lr_factor, b.state().lr_factor);
  }
}

TEST(Adadelta, MatchesPyTorchUpdateByHand) {
  torch::Tensor p = torch::tensor({1.0, -2.0}, torch::kFloat64);
  p.set_requires_grad(true);
  const double lr = 1.0, rho = 0.9, eps = 1e-6;
  Adadelta optimizer({p}, AdadeltaOptions(lr).rho(rho).eps(eps));
  double expected[2] = {1.0, -2.0};
  double square_avg[2] = {0, 0}, acc_delta[2] = {0, 0};
  const double grads[3][2] = {{0.5, -1.0}, {0.25, 3.0}, {-1.0, 0.0}};
  for (int step = 0; step < 3; ++step) {
    optimizer.zero_grad();
    p.mutable_grad() = torch::tensor({grads[step][0], grads[step][1]},
                                     torch::kFloat64);
    optimizer.step();
    for (int i = 0; i < 2; ++i) {
      const double g = grads[step][i];
      square_avg[i] = rho * square_avg[i] + (1 - rho) * g * g;
      const double delta =
          std::sqrt(acc_delta[i] + eps) / std::sqrt(square_avg[i] + eps) * g;
      acc_delta[i] = rho * acc_delta[i] + (1 - rho) * delta * delta;
      expected[i] -= lr * delta;
      EXPECT_NEAR(p[i].item<double>(), expected[i], 1e-12)
          << "step " << step << " index " << i;
    }
  }
  EXPECT_EQ(optimizer.StateOf(p)->step(), 3);
}

TEST(Adadelta, SaveAndLoadRestoreTheState) {
  torch::manual_seed(1);
  torch::nn::Linear a(3, 2), b(3, 2);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    b->parameters()[i].copy_(a->parameters()[i]);
  }
  Adadelta opt_a(a->parameters()), opt_b(b->parameters());
  auto step = [](torch::nn::Linear& m, Adadelta& opt, int seed) {
    torch::AutoGradMode grad_mode(true);
    torch::manual_seed(seed);
    opt.zero_grad();
    m->forward(torch::randn({4, 3})).square().sum().backward();
    opt.step();
  };
  step(a, opt_a, 10);
  torch::serialize::OutputArchive out;
  opt_a.save(out);
  const fs::path dir = TempDir("adadelta");
  out.save_to((dir / "opt.pt").string());
  torch::serialize::InputArchive in;
  in.load_from((dir / "opt.pt").string());
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    b->parameters()[i].copy_(a->parameters()[i]);
  }
  opt_b.load(in);
  step(a, opt_a, 11);
  step(b, opt_b, 11);
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    EXPECT_TRUE(torch::equal(a->parameters()[i], b->parameters()[i]))
        << "parameter " << i;
  }
  EXPECT_EQ(opt_b.StateOf(b->parameters()[0])->step(), 2);
  fs::remove_all(dir);
}

// The names of the files in `dir`, sorted.
std::vector<std::string> FilesIn(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(AtomicFileWriter, CommitReplacesTheFileAndLeavesNoTemporary) {
  const fs::path dir = TempDir("atomic_commit");
  const std::string path = (dir / "file.bin").string();
  {
    std::ofstream(path) << "old";
  }
  auto writer = AtomicFileWriter::Open(path);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Append("new contents", 12).ok());
  EXPECT_EQ(ReadAll(path), "old") << "visible before Commit()";
  EXPECT_TRUE(fs::exists((*writer)->temp_path()));
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_EQ(ReadAll(path), "new contents");
  EXPECT_THAT(FilesIn(dir), ::testing::ElementsAre("file.bin"));
  fs::remove_all(dir);
}

TEST(AtomicFileWriter, AbandonedWriteKeepsTheOldFileAndRemovesTheTemporary) {
  const fs::path dir = TempDir("atomic_abandon");
  const std::string path = (dir / "file.bin").string();
  {
    std::ofstream(path) << "old";
  }
  {
    auto writer = AtomicFileWriter::Open(path, Durability::kUnsynced);
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Append("partial", 7).ok());
  }
  EXPECT_EQ(ReadAll(path), "old");
  EXPECT_THAT(FilesIn(dir), ::testing::ElementsAre("file.bin"));
  fs::remove_all(dir);
}

TEST(AtomicFileWriter, TemporaryFilesAreNewAndUniqueInTheTargetDirectory) {
  const fs::path dir = TempDir("atomic_unique");
  const std::string path = (dir / "metrics.json").string();
  auto first = AtomicFileWriter::Open(path);
  auto second = AtomicFileWriter::Open(path);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE((*first)->temp_path(), (*second)->temp_path());
  for (const auto* writer : {&*first, &*second}) {
    EXPECT_EQ(fs::path((*writer)->temp_path()).parent_path(), dir);
    EXPECT_THAT((*writer)->temp_path(), HasSubstr("metrics.json.tmp."));
  }
  ASSERT_TRUE((*first)->Append("1", 1).ok());
  ASSERT_TRUE((*second)->Append("2", 1).ok());
  ASSERT_TRUE((*first)->Commit().ok());
  ASSERT_TRUE((*second)->Commit().ok());
  EXPECT_EQ(ReadAll(path), "2");
  EXPECT_THAT(FilesIn(dir), ::testing::ElementsAre("metrics.json"));
  fs::remove_all(dir);
}

TEST(AtomicFileWriter, APlantedSymlinkIsNeverWrittenThrough) {
  // Another user links the temporary name a writer once always used to a
  // file of the victim's: the write must not truncate or fill that file.
  const fs::path dir = TempDir("atomic_symlink");
  const std::string victim = (dir / "victim.txt").string();
  std::ofstream(victim) << "precious";
  const std::string path = (dir / "last.pt").string();
  fs::create_symlink(victim, path + ".tmp");
  ASSERT_TRUE(WriteStringToFile(path, "checkpoint").ok());
  EXPECT_EQ(ReadAll(victim), "precious");
  EXPECT_EQ(ReadAll(path), "checkpoint");
  EXPECT_FALSE(fs::is_symlink(path));
  fs::remove_all(dir);
}

TEST(AtomicFileWriter, ErrorsNameTheFileAndDirectory) {
  auto writer = AtomicFileWriter::Open("/nonexistent-dir/x/file.bin");
  ASSERT_FALSE(writer.ok());
  EXPECT_THAT(std::string(writer.status().message()),
              HasSubstr("/nonexistent-dir/x/file.bin: cannot create a "
                        "temporary file in /nonexistent-dir/x"));
}

CheckpointMeta SampleMeta() {
  CheckpointMeta meta;
  meta.arch = "densenet121";
  meta.image_size = 32;
  meta.optimizer = "adam";
  meta.epochs_completed = 3;
  meta.global_step = 42;
  meta.seed = 7;
  meta.world_size = 2;
  meta.plateau = {0.25, 1, 0.1};
  meta.best_validation_loss = 0.25;
  meta.best_epoch = 1;
  meta.history = {{0, 0.5, 0.4, 0.6, 2e-3, 10.5},
                  {1, 0.3, 0.25, std::nan(""), 2e-3, 9.5}};
  return meta;
}

TEST(Checkpoint, RoundTripRestoresModelOptimizerSamplerAndMeta) {
  torch::manual_seed(3);
  auto made = MakeModel("densenet121");
  ASSERT_TRUE(made.ok()) << made.status();
  std::shared_ptr<ChexnetModel> model = *made;
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  model->train();
  adam.zero_grad();
  model->forward(torch::randn({2, 3, 32, 32})).sum().backward();
  adam.step();
  torch::data::samplers::RandomSampler sampler(10);
  sampler.next(4);

  const fs::path dir = TempDir("checkpoint");
  const std::string path = (dir / "last.pt").string();
  const CheckpointMeta meta = SampleMeta();
  ASSERT_TRUE(SaveCheckpoint(path, meta, *model, &adam, &sampler).ok());
  EXPECT_THAT(FilesIn(dir), ::testing::ElementsAre("last.pt"));

  torch::manual_seed(4);
  std::shared_ptr<ChexnetModel> loaded = *MakeModel("densenet121");
  torch::optim::Adam loaded_adam(loaded->parameters(),
                                 torch::optim::AdamOptions(1e-3));
  torch::data::samplers::RandomSampler loaded_sampler(10);
  CheckpointMeta loaded_meta;
  absl::Status status = LoadCheckpoint(path, &loaded_meta, loaded.get(),
                                       &loaded_adam, &loaded_sampler);
  ASSERT_TRUE(status.ok()) << status;

  const auto expected = model->named_parameters();
  const auto actual = loaded->named_parameters();
  for (const auto& item : expected) {
    EXPECT_TRUE(torch::equal(item.value(), actual[item.key()])) << item.key();
  }
  for (const auto& item : model->named_buffers()) {
    EXPECT_TRUE(torch::equal(item.value(), loaded->named_buffers()[item.key()]))
        << item.key();
  }
  ASSERT_EQ(loaded_adam.state().size(), adam.state().size());
  const auto params = model->parameters();
  const auto loaded_params = loaded->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& s = static_cast<const torch::optim::AdamParamState&>(
        *adam.state().at(StateKeyOf(params[i])));
    const auto& t = static_cast<const torch::optim::AdamParamState&>(
        *loaded_adam.state().at(
            StateKeyOf(loaded_params[i])));
    EXPECT_EQ(s.step(), t.step()) << "parameter " << i;
    EXPECT_TRUE(torch::equal(s.exp_avg(), t.exp_avg())) << "parameter " << i;
    EXPECT_TRUE(torch::equal(s.exp_avg_sq(), t.exp_avg_sq()))
        << "parameter " << i;
  }
  EXPECT_EQ(loaded_sampler.index(), 4u);
  EXPECT_EQ(loaded_meta.arch, meta.arch);
  EXPECT_EQ(loaded_meta.image_size, 32);
  EXPECT_EQ(loaded_meta.optimizer, "adam");
  EXPECT_EQ(loaded_meta.epochs_completed, 3);
  EXPECT_EQ(loaded_meta.global_step, 42);
  EXPECT_EQ(loaded_meta.seed, 7u);
  EXPECT_EQ(loaded_meta.world_size, 2);
  EXPECT_EQ(loaded_meta.plateau.bad_epochs, 1);
  EXPECT_DOUBLE_EQ(loaded_meta.plateau.lr_factor, 0.1);
  EXPECT_EQ(loaded_meta.best_epoch, 1);
  ASSERT_EQ(loaded_meta.history.size(), 2u);
  EXPECT_DOUBLE_EQ(loaded_meta.history[1].validation_loss, 0.25);
  EXPECT_TRUE(std::isnan(loaded_meta.history[1].validation_auroc));

  absl::StatusOr<CheckpointModel> for_predict = LoadModelFromCheckpoint(path);
  ASSERT_TRUE(for_predict.ok()) << for_predict.status();
  EXPECT_EQ(for_predict->model->arch(), "densenet121");
  EXPECT_FALSE(for_predict->model->is_training());
  fs::remove_all(dir);
}

TEST(Checkpoint, OverwriteWhileAReaderHoldsTheOldFileKeepsBothReadable) {
  const fs::path dir = TempDir("checkpoint_overwrite");
  const std::string path = (dir / "last.pt").string();
  torch::nn::Linear model(2, 2);
  CheckpointMeta meta = SampleMeta();
  ASSERT_TRUE(SaveCheckpoint(path, meta, *model, nullptr, nullptr).ok());
  // An open descriptor keeps the old inode: rename never truncates it.
  std::ifstream old_reader(path, std::ios::binary);
  const std::string before = ReadAll(path);
  meta.epochs_completed = 4;
  ASSERT_TRUE(SaveCheckpoint(path, meta, *model, nullptr, nullptr).ok());
  const std::string held(std::istreambuf_iterator<char>(old_reader), {});
  EXPECT_EQ(held, before);
  CheckpointMeta loaded;
  ASSERT_TRUE(LoadCheckpoint(path, &loaded, nullptr, nullptr, nullptr).ok());
  EXPECT_EQ(loaded.epochs_completed, 4);
  EXPECT_THAT(FilesIn(dir), ::testing::ElementsAre("last.pt"));
  fs::remove_all(dir);
}

TEST(Checkpoint, ErrorsNameTheFile) {
  const fs::path dir = TempDir("checkpoint_errors");
  CheckpointMeta meta;
  absl::Status missing = LoadCheckpoint((dir / "none.pt").string(), &meta,
                                        nullptr, nullptr, nullptr);
  EXPECT_TRUE(absl::IsNotFound(missing)) << missing;
  EXPECT_THAT(std::string(missing.message()), HasSubstr("none.pt"));

  const std::string garbage = (dir / "garbage.pt").string();
  std::ofstream(garbage) << "not a zip";
  absl::Status bad = LoadCheckpoint(garbage, &meta, nullptr, nullptr, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(bad)) << bad;
  EXPECT_THAT(std::string(bad.message()), HasSubstr("garbage.pt"));

  const std::string other = (dir / "other.pt").string();
  torch::serialize::OutputArchive archive;
  archive.write("x", torch::ones({1}));
  archive.save_to(other);
  absl::Status foreign = LoadCheckpoint(other, &meta, nullptr, nullptr, nullptr);
  EXPECT_THAT(std::string(foreign.message()),
              HasSubstr("not a chexnet_train checkpoint"));

  torch::nn::Linear small(2, 2);
  const std::string linear = (dir / "linear.pt").string();
  ASSERT_TRUE(SaveCheckpoint(linear, SampleMeta(), *small, nullptr, nullptr).ok());
  torch::nn::Linear wrong(3, 2);
  absl::Status mismatch =
      LoadCheckpoint(linear, &meta, wrong.get(), nullptr, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(mismatch)) << mismatch;
  EXPECT_THAT(std::string(mismatch.message()), HasSubstr("model"));
  fs::remove_all(dir);
}

TEST(Checkpoint, MetaThatChexnetTrainNeverWritesIsRefused) {
  const fs::path dir = TempDir("checkpoint_bad_meta");
  const std::string path = (dir / "bad.pt").string();
  torch::nn::Linear small(2, 2);
  struct Case {
    void (*corrupt)(CheckpointMeta*);
    const char* expected;
  };
  const Case cases[] = {
      {[](CheckpointMeta* m) { m->num_classes = 3; },
       "meta/num_classes is 3; CheXNet models have 14 outputs"},
      {[](CheckpointMeta* m) { m->image_size = 1; }, "meta/image_size is 1"},
      {[](CheckpointMeta* m) { m->image_size = int64_t{1} << 40; },
       "meta/image_size is 1099511627776; expected 32 to 2048"},
      {[](CheckpointMeta* m) { m->arch = "resnet50"; },
       "meta/arch is \"resnet50\"; expected densenet121 or vgg16"},
      {[](CheckpointMeta* m) { m->epochs_completed = -4; },
       "inconsistent meta: epochs_completed -4"},
      {[](CheckpointMeta* m) { m->best_epoch = 3; }, "best_epoch 3"},
      {[](CheckpointMeta* m) { m->world_size = 0; }, "world_size 0"},
      {[](CheckpointMeta* m) { m->global_step = -1; }, "global_step -1"},
      {[](CheckpointMeta* m) { m->history.resize(4); }, "4 history rows"},
      {[](CheckpointMeta* m) { m->plateau.lr_factor = std::nan(""); },
       "meta/plateau_lr_factor is nan"},
  };
  for (const Case& c : cases) {
    CheckpointMeta meta = SampleMeta();
    c.corrupt(&meta);
    ASSERT_TRUE(SaveCheckpoint(path, meta, *small, nullptr, nullptr).ok());
    CheckpointMeta loaded;
    const absl::Status status =
        LoadCheckpoint(path, &loaded, nullptr, nullptr, nullptr);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
    EXPECT_THAT(std::string(status.message()),
                HasSubstr(path + ": not a checkpoint chexnet_train writes: "));
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.expected));
  }
  fs::remove_all(dir);
}

TEST(Checkpoint, PredictRefusesAModelWithOtherThanFourteenOutputs) {
  // The file is otherwise consistent: a 3-class DenseNet under its own meta.
  // chexnet_predict once read 14 probabilities per image from its 3.
  const fs::path dir = TempDir("checkpoint_three_classes");
  const std::string path = (dir / "three.pt").string();
  std::shared_ptr<ChexnetModel> model = *MakeModel("densenet121", 3);
  CheckpointMeta meta = SampleMeta();
  meta.num_classes = 3;
  ASSERT_TRUE(SaveCheckpoint(path, meta, *model, nullptr, nullptr).ok());
  absl::StatusOr<CheckpointModel> loaded = LoadModelFromCheckpoint(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("meta/num_classes is 3"));
  const absl::Status device =
      LoadCheckpoint("/dev/zero", &meta, nullptr, nullptr, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(device)) << device;
  EXPECT_THAT(std::string(device.message()),
              HasSubstr("/dev/zero: not a regular file"));
  fs::remove_all(dir);
}

int Parse(std::vector<std::string> args, TrainOptions* options) {
  args.insert(args.begin(), "chexnet_train");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  int exit_code = -1;
  if (ParseTrainOptions(static_cast<int>(argv.size()), argv.data(), options,
                        &exit_code)) {
    return -1;  // parsed: run
  }
  return exit_code;
}

TEST(TrainOptions, ParsesEveryFlag) {
  const std::string data = fs::temp_directory_path().string();
  TrainOptions o;
  ASSERT_EQ(Parse({"--data",
                   data,
                   "--out",
                   "run",
                   "--arch",
                   "vgg16",
                   "--image-size",
                   "64",
                   "--epochs",
                   "3",
                   "--batch-size",
                   "8",
                   "--optimizer",
                   "adadelta",
                   "--lr",
                   "0.5",
                   "--warmup-epochs",
                   "2",
                   "--patience",
                   "3",
                   "--class-weights",
                   "--head-bias-zero",
                   "--val-fraction",
                   "0.2",
                   "--seed",
                   "9",
                   "--workers",
                   "1",
                   "--threads",
                   "2",
                   "--skip-bad-images",
                   "--resume",
                   "--max-steps-per-epoch",
                   "5",
                   "--no-progress",
                   "--checkpoint-every-steps",
                   "7",
                   "--sample-log",
                   "log",
                   "--device",
                   "cuda:1",
                   "--mixed-precision",
                   "fp16"},
                  &o),
            -1);
  EXPECT_EQ(o.device, "cuda:1");
  EXPECT_EQ(o.mixed_precision, "fp16");
  EXPECT_EQ(o.data_dir, data);
  EXPECT_EQ(o.out_dir, "run");
  EXPECT_EQ(o.arch, "vgg16");
  EXPECT_EQ(o.image_size, 64);
  EXPECT_EQ(o.epochs, 3);
  EXPECT_EQ(o.batch_size, 8);
  EXPECT_EQ(o.optimizer, "adadelta");
  EXPECT_DOUBLE_EQ(o.lr, 0.5);
  EXPECT_DOUBLE_EQ(o.warmup_epochs, 2);
  EXPECT_EQ(o.plateau_patience, 3);
  EXPECT_TRUE(o.class_weights);
  EXPECT_TRUE(o.head_bias_zero);
  EXPECT_DOUBLE_EQ(o.val_fraction, 0.2);
  EXPECT_EQ(o.seed, 9u);
  EXPECT_EQ(o.workers, 1);
  EXPECT_EQ(o.threads, 2);
  EXPECT_TRUE(o.skip_bad_images);
  EXPECT_EQ(o.resume, "auto");
  EXPECT_EQ(o.max_steps_per_epoch, 5);
  EXPECT_EQ(o.checkpoint_every_steps, 7);
  EXPECT_EQ(o.sample_log, "log");
  EXPECT_EQ(o.progress, ProgressMode::kNever);
}

TEST(TrainOptions, ResumeTakesAutoOrAPath) {
  const std::string data = fs::temp_directory_path().string();
  TrainOptions none;
  ASSERT_EQ(Parse({"--data", data, "--out", "run"}, &none), -1);
  EXPECT_EQ(none.resume, "");
  EXPECT_EQ(none.checkpoint_every_steps, 0);
  TrainOptions bare;
  ASSERT_EQ(Parse({"--data", data, "--resume", "--out", "run"}, &bare), -1);
  EXPECT_EQ(bare.resume, "auto");
  TrainOptions path;
  ASSERT_EQ(
      Parse({"--data", data, "--out", "run", "--resume", "run/x.pt"}, &path),
      -1);
  EXPECT_EQ(path.resume, "run/x.pt");
  EXPECT_THAT(DescribeTrainOptions(path), HasSubstr(" --resume run/x.pt"));
}

TEST(TrainOptions, BadCommandLinesExitTwo) {
  const std::string data = fs::temp_directory_path().string();
  const std::vector<std::vector<std::string>> bad = {
      {"--out", "run"},                            // no --data
      {"--data", data},                            // no --out
      {"--data", "/nonexistent", "--out", "run"},  // missing dir
      {"--data", data, "--out", "run", "--arch", "resnet"},
      {"--data", data, "--out", "run", "--optimizer", "sgd"},
      {"--data", data, "--out", "run", "--epochs", "0"},
      {"--data", data, "--out", "run", "--batch-size", "x"},
      {"--data", data, "--out", "run", "--image-size", "16"},
      {"--data", data, "--out", "run", "--no-such-flag"},
      {"--data", data, "--out", "run", "--progress", "--no-progress"},
      {"--data", data, "--out", "run", "--device", "gpu"},
      {"--data", data, "--out", "run", "--device", "cuda:x"},
      {"--data", data, "--out", "run", "--mixed-precision", "fp8"},
      {"--data", data, "--out", "run", "--amp", "--mixed-precision", "fp16"},
      {"--data", data, "--out", "run", "--checkpoint-every-steps", "-1"},
  };
  for (const auto& args : bad) {
    TrainOptions o;
    testing::internal::CaptureStderr();
    const int code = Parse(args, &o);
    const std::string message = testing::internal::GetCapturedStderr();
    EXPECT_EQ(code, 2) << ::testing::PrintToString(args);
    EXPECT_FALSE(message.empty()) << ::testing::PrintToString(args);
  }
  TrainOptions o;
  testing::internal::CaptureStdout();
  EXPECT_EQ(Parse({"--help"}, &o), 0);
  EXPECT_THAT(testing::internal::GetCapturedStdout(), HasSubstr("--resume"));
}

TEST(TrainOptions, DefaultsToCpuWithoutMixedPrecisionAndAmpMeansBf16) {
  const std::string data = fs::temp_directory_path().string();
  TrainOptions o;
  ASSERT_EQ(Parse({"--data", data, "--out", "run"}, &o), -1);
  EXPECT_EQ(o.device, "cpu");
  EXPECT_EQ(o.mixed_precision, "off");
  TrainOptions amp;
  ASSERT_EQ(Parse({"--data", data, "--out", "run", "--device", "cuda", "--amp"},
                  &amp),
            -1);
  EXPECT_EQ(amp.device, "cuda");
  EXPECT_EQ(amp.mixed_precision, "bf16");
  EXPECT_THAT(DescribeTrainOptions(amp),
              HasSubstr("--device cuda --mixed-precision bf16"));
  EXPECT_FALSE(o.adasum);
  TrainOptions adasum;
  ASSERT_EQ(Parse({"--data", data, "--out", "run", "--adasum"}, &adasum), -1);
  EXPECT_TRUE(adasum.adasum);
  EXPECT_THAT(DescribeTrainOptions(adasum), HasSubstr(" --adasum"));
}

TEST(Device, SpecsResolveOrFailNamingTheFlag) {
  EXPECT_TRUE(IsDeviceSpec("cpu"));
  EXPECT_TRUE(IsDeviceSpec("cuda"));
  EXPECT_TRUE(IsDeviceSpec("cuda:3"));
  EXPECT_TRUE(IsDeviceSpec("auto"));
  EXPECT_FALSE(IsDeviceSpec("cuda:"));
  EXPECT_FALSE(IsDeviceSpec("cuda:-1"));
  EXPECT_FALSE(IsDeviceSpec("gpu"));
  absl::StatusOr<torch::Device> cpu = ResolveDevice("cpu", 3, "--device");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_TRUE(cpu->is_cpu());
  absl::StatusOr<torch::Device> bad = ResolveDevice("tpu", 0, "--device");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  if (torch::cuda::is_available()) {
    const int gpus = static_cast<int>(torch::cuda::device_count());
    absl::StatusOr<torch::Device> cuda = ResolveDevice("cuda", gpus + 1, "--device");
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    EXPECT_EQ(cuda->index(), (gpus + 1) % gpus);
    absl::StatusOr<torch::Device> beyond =
        ResolveDevice("cuda:" + std::to_string(gpus), 0, "--device");
    EXPECT_EQ(beyond.status().code(), absl::StatusCode::kFailedPrecondition);
    return;
  }
  absl::StatusOr<torch::Device> automatic = ResolveDevice("auto", 0, "--device");
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_TRUE(automatic->is_cpu());
  for (const std::string spec : {"cuda", "cuda:0"}) {
    absl::StatusOr<torch::Device> cuda = ResolveDevice(spec, 0, "--device");
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition)
        << spec;
    EXPECT_THAT(std::string(cuda.status().message()),
                HasSubstr("--device " + spec + ": LibTorch"));
  }
}

// A scaler whose "other ranks" report `remote_overflow`.
DynamicLossScaler MakeScaler(const bool* remote_overflow,
                             int64_t growth_interval = 2) {
  LossScalerOptions options;
  options.initial_scale = 1024;
  options.growth_interval = growth_interval;
  return DynamicLossScaler(options, [remote_overflow](bool local) {
    return local || *remote_overflow;
  });
}

TEST(DynamicLossScaler, UnscalesFiniteGradientsAndGrowsAfterTheInterval) {
  bool remote = false;
  DynamicLossScaler scaler = MakeScaler(&remote);
  torch::Tensor w = torch::zeros({3}, torch::requires_grad());
  EXPECT_DOUBLE_EQ(scaler.Scale(torch::tensor(2.0f)).item<double>(), 2048);
  w.mutable_grad() = torch::tensor({1024.0f, -2048.0f, 512.0f});
  ASSERT_TRUE(scaler.UnscaleOrSkip({w}));
  EXPECT_TRUE(torch::equal(w.grad(), torch::tensor({1.0f, -2.0f, 0.5f})))
      << w.grad();
  EXPECT_DOUBLE_EQ(scaler.scale(), 1024);
  w.mutable_grad() = torch::ones({3});
  ASSERT_TRUE(scaler.UnscaleOrSkip({w}));
  EXPECT_DOUBLE_EQ(scaler.scale(), 2048);  // 2 finite steps in a row
  EXPECT_EQ(scaler.skipped_steps(), 0);
}

TEST(DynamicLossScaler, SkipsOnLocalOrRemoteOverflowAndHalvesTheScale) {
  bool remote = false;
  DynamicLossScaler scaler = MakeScaler(&remote);
  torch::Tensor w = torch::zeros({2}, torch::requires_grad());
  torch::Tensor unused = torch::zeros({2}, torch::requires_grad());
  for (float bad : {std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    w.mutable_grad() = torch::tensor({1.0f, bad});
    EXPECT_FALSE(scaler.UnscaleOrSkip({w, unused}));
    EXPECT_EQ(w.grad()[0].item<float>(), 1.0f) << "left as it was";
  }
  EXPECT_DOUBLE_EQ(scaler.scale(), 256);
  // This rank's gradients are finite, another rank's are not: skip too.
  remote = true;
  w.mutable_grad() = torch::ones({2});
  EXPECT_FALSE(scaler.UnscaleOrSkip({w}));
  EXPECT_EQ(scaler.skipped_steps(), 3);
  EXPECT_DOUBLE_EQ(scaler.scale(), 128);
  remote = false;
  EXPECT_TRUE(scaler.UnscaleOrSkip({w}));
  EXPECT_DOUBLE_EQ(w.grad()[0].item<double>(), 1.0 / 128);
}

TEST(ProgressBar, RendersStepsRateLossAndEta) {
  EXPECT_EQ(ProgressBar::Render(2, 8, 12, 24, 812.34, 0.23141, 42.4),
            "epoch 3/8 [============>           ] 12/24  812.3 img/s  "
            "loss 0.2314  ETA 0:42");
  EXPECT_THAT(ProgressBar::Render(0, 1, 0, 10, 0, std::nan(""), std::nan("")),
              HasSubstr("ETA --:--"));
  EXPECT_THAT(ProgressBar::Render(0, 1, 1, 10, 1, 1, 3725),
              HasSubstr("ETA 1:02:05"));
}

}  // namespace
}  // namespace kolo::chexnet
