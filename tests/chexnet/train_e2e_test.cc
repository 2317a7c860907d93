// End-to-end tests of chexnet_train and chexnet_predict as users run them:
// two ranks through kolorun and mpirun on a tiny synthetic data set,
// checkpoint/resume, atomic checkpoints, predict's table and JSON Lines, heat
// maps, ten-crop, chexnet_localize, and bad command lines.
//
// Compiled-in paths (tests/chexnet/CMakeLists.txt):
//   CHEXNET_TRAIN, CHEXNET_PREDICT, CHEXNET_LOCALIZE, KOLORUN, MPIEXEC
//                      binaries
//   MPIEXEC_FLAGS  the flags this build's mpiexec needs (KOLO_MPIEXEC_FLAGS)
//   CHEXNET_E2E_DATA   a synthetic data set (the chexnet.train_e2e_data
//                      fixture writes it; the suite writes it when missing)
//   CHEXNET_E2E_WORK   scratch directory
//   CHECK_SAMPLE_LOG   tests/chexnet/check_sample_log.py (run by PYTHON3)
// Ranks may run as root and oversubscribe the cores (Open MPI's variables are
// set unless the environment already has them).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "examples/chexnet/data/batch_loader.h"
#include "examples/chexnet/data/bbox_list.h"
#include "examples/chexnet/data/file_util.h"
#include "examples/chexnet/data/image.h"
#include "examples/chexnet/data/labels.h"
#include "examples/chexnet/data/png_io.h"
#include "examples/chexnet/models/chexnet_model.h"
#include "examples/chexnet/models/grad_cam.h"
#include "examples/chexnet/predict/ten_crop.h"
#include "examples/chexnet/train/adadelta.h"
#include "examples/chexnet/train/checkpoint.h"

namespace kolo::chexnet {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

void SetMpiEnvironment() {
  for (const auto& [name, value] :
       {std::pair<const char*, const char*>{"OMPI_ALLOW_RUN_AS_ROOT", "1"},
        {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"},
        {"OMPI_MCA_mpi_yield_when_idle", "1"},
        {"OMPI_MCA_rmaps_base_oversubscribe", "1"},
        {"OMPI_MCA_btl_vader_single_copy_mechanism", "none"}}) {
    ::setenv(name, value, /*overwrite=*/0);
  }
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.output.append(buffer.data(), n);
  }
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return result;
}

class TrainE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    SetMpiEnvironment();
    train_ = CHEXNET_TRAIN;
    predict_ = CHEXNET_PREDICT;
    localize_ = CHEXNET_LOCALIZE;
    kolorun_ = KOLORUN;
    mpiexec_ = MPIEXEC;
    data_ = CHEXNET_E2E_DATA;
    if (!fs::exists(fs::path(data_) / "test_list.txt")) {
      const std::string generator =
          (fs::path(CHEXNET_TRAIN).parent_path() / "chexnet_make_synthetic")
              .string();
      const CommandResult r = RunCommand(generator + " --out " + data_ +
                                  " --images 96 --size 32 --seed 3");
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    work_ = fs::path(CHEXNET_E2E_WORK) /
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(work_);
    fs::create_directories(work_);
  }

  // Tiny and fast: 32 px DenseNet-121, 2 steps of 4 images per rank (0:
  // whole epochs).
  std::string TrainFlags(const fs::path& out, int epochs,
                         int max_steps = 2) const {
    std::ostringstream flags;
    flags << " --data " << data_ << " --out " << out.string()
          << " --arch densenet121 --image-size 32 --batch-size 4 --epochs "
          << epochs << " --max-steps-per-epoch " << max_steps
          << " --workers 1 --threads 1 --seed 5"
          << " --warmup-epochs 1 --patience 0 --no-progress";
    return flags.str();
  }

  std::string MpiRun(int np) const {
    return mpiexec_ + " -np " + std::to_string(np) + " " + MPIEXEC_FLAGS + " ";
  }

  std::string train_, predict_, localize_, kolorun_, mpiexec_, data_;
  fs::path work_;
};

TEST_F(TrainE2E, TwoRanksThroughKolorunWriteCheckpointsAndMetrics) {
  const fs::path out = work_ / "run";
  const CommandResult r =
      RunCommand(kolorun_ + " -np 2 -- " + train_ + TrainFlags(out, 2) +
                 " --tta ten-crop --heatmap-images 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("2 ranks, 1 torch thread per rank"));
  EXPECT_THAT(r.output, HasSubstr("with ten-crop test-time augmentation"));
  EXPECT_THAT(r.output, HasSubstr("Localization: "));
  EXPECT_THAT(r.output, HasSubstr("(Wang et al. 2017)"));
  int heatmaps = 0;
  for (const auto& entry : fs::directory_iterator(out / "heatmaps")) {
    heatmaps += entry.path().extension() == ".png";
  }
  EXPECT_GE(heatmaps, 2) << "heat maps of 2 boxed test images";
  EXPECT_THAT(r.output, HasSubstr("epoch 2/2: train loss"));
  EXPECT_THAT(r.output, HasSubstr("CheXNet"));  // the AUROC table
  EXPECT_THAT(r.output, HasSubstr("test mean AUROC"));
  for (const char* name :
       {"last.pt", "best.pt", "metrics.json", "metrics.csv", "roc.png"}) {
    EXPECT_TRUE(fs::is_regular_file(out / name)) << name << "\n" << r.output;
  }
  for (const auto& entry : fs::directory_iterator(out)) {
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos)
        << "temporary file left: " << entry.path();
  }

  std::ifstream json_file(out / "metrics.json");
  const nlohmann::json json = nlohmann::json::parse(json_file, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << "metrics.json does not parse";
  EXPECT_EQ(json["classes"].size(), static_cast<size_t>(kNumLabels));
  EXPECT_EQ(json["world_size"], 2);
  EXPECT_EQ(json["epochs"], 2);
  EXPECT_EQ(json["history"].size(), 2u);
  EXPECT_GT(json["num_images"].get<int>(), 0);
  EXPECT_TRUE(json["mean_auroc"].is_number());
  EXPECT_EQ(json["ten_crop"]["num_images"], json["num_images"]);
  EXPECT_TRUE(json["ten_crop"]["mean_auroc"].is_number());
  EXPECT_GT(json["localization"]["images"].get<int>(), 0);

  std::ifstream csv(out / "metrics.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header, "class,auroc,positives,negatives,chexnet_2017,wang_2017");

  std::ifstream png(out / "roc.png", std::ios::binary);
  char magic[8] = {};
  png.read(magic, 8);
  EXPECT_EQ(std::string(magic + 1, 3), "PNG");

  CheckpointMeta meta;
  absl::Status status =
      LoadCheckpoint((out / "last.pt").string(), &meta, nullptr, nullptr,
                     nullptr);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(meta.epochs_completed, 2);
  EXPECT_EQ(meta.global_step, 4);
  EXPECT_EQ(meta.world_size, 2);
  EXPECT_EQ(meta.history.size(), 2u);
}

// --sync-batchnorm: all 121 batch-norm layers of DenseNet-121 normalize over
// the global batch; the checkpoint keeps the plain model's names, so a
// model without SyncBatchNorm (chexnet_predict's) loads it. A whole epoch on
// 3 ranks ends with a step whose last share is empty: that rank must still
// join the layers' collectives.
TEST_F(TrainE2E, SyncBatchNormRunTrainsAndItsCheckpointLoadsIntoAPlainModel) {
  const fs::path out = work_ / "run";
  const fs::path samples = work_ / "samples";
  const CommandResult r =
      RunCommand(MpiRun(3) + train_ + TrainFlags(out, 1, /*max_steps=*/0) +
                 " --sync-batchnorm --no-localize --sample-log " +
                 samples.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("sync batchnorm: 121 layers normalize over "
                                  "the global batch of 3 ranks"));
  std::ifstream last_rank_log(samples.string() + ".rank2.restart0");
  std::stringstream last_rank;
  last_rank << last_rank_log.rdbuf();
  EXPECT_THAT(last_rank.str(), HasSubstr(" world=3 indices=\n"))
      << "no empty share on rank 2: the data set no longer makes one";
  EXPECT_THAT(r.output, HasSubstr("test mean AUROC"));
  CheckpointMeta meta;
  auto model = *MakeModel("densenet121");
  const absl::Status loaded = LoadCheckpoint((out / "best.pt").string(), &meta,
                                             model.get(), nullptr, nullptr);
  ASSERT_TRUE(loaded.ok()) << loaded;
  EXPECT_EQ(meta.world_size, 3);
  std::ifstream json_file(out / "metrics.json");
  const nlohmann::json json = nlohmann::json::parse(json_file, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << "metrics.json does not parse";
  EXPECT_THAT(json["command_line"].get<std::string>(),
              HasSubstr("--sync-batchnorm"));
}

// A reader polling the run directory while rank 0 writes checkpoints must
// always find a complete, loadable last.pt.
TEST_F(TrainE2E, CheckpointsAreNeverSeenHalfWritten) {
  const fs::path out = work_ / "run";
  const std::string log = (work_ / "log.txt").string();
  const std::string command = MpiRun(2) + train_ + TrainFlags(out, 4) +
                              " > " + log + " 2>&1; echo $? > " +
                              (work_ / "rc").string();
  std::thread trainer([&] { std::system(command.c_str()); });
  int loads = 0;
  int64_t last_epoch_seen = 0;
  while (!fs::exists(work_ / "rc")) {
    const fs::path last = out / "last.pt";
    if (fs::exists(last)) {
      CheckpointMeta meta;
      absl::Status status =
          LoadCheckpoint(last.string(), &meta, nullptr, nullptr, nullptr);
      // The file may be replaced between exists() and open(); then it is
      // the next complete version.
      ASSERT_TRUE(status.ok() || absl::IsNotFound(status)) << status;
      if (status.ok()) {
        ++loads;
        EXPECT_GE(meta.epochs_completed, last_epoch_seen);
        last_epoch_seen = meta.epochs_completed;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  trainer.join();
  std::ifstream rc_file(work_ / "rc");
  int rc = -1;
  rc_file >> rc;
  std::ifstream log_file(log);
  const std::string output(std::istreambuf_iterator<char>(log_file), {});
  ASSERT_EQ(rc, 0) << output;
  EXPECT_GT(loads, 0) << "no checkpoint observed while training";
  EXPECT_EQ(last_epoch_seen, 4);
  for (const auto& entry : fs::directory_iterator(out)) {
    EXPECT_THAT(entry.path().filename().string(), Not(HasSubstr(".tmp.")))
        << "a temporary file was left behind";
  }
  CheckpointMeta meta;
  auto model = *MakeModel("densenet121");
  EXPECT_TRUE(LoadCheckpoint((out / "best.pt").string(), &meta, model.get(),
                             nullptr, nullptr)
                  .ok());
}

struct LoadedRun {
  std::shared_ptr<ChexnetModel> model;
  std::shared_ptr<torch::optim::Adam> adam;
  CheckpointMeta meta;
};

LoadedRun LoadRun(const fs::path& path) {
  LoadedRun run;
  run.model = *MakeModel("densenet121");
  run.adam = std::make_shared<torch::optim::Adam>(run.model->parameters());
  absl::Status status = LoadCheckpoint(path.string(), &run.meta,
                                       run.model.get(), run.adam.get(),
                                       nullptr);
  EXPECT_TRUE(status.ok()) << status;
  return run;
}

// Both runs recorded `epochs` epochs with bit-equal train and validation
// losses.
void ExpectSameHistory(const LoadedRun& a, const LoadedRun& b, size_t epochs) {
  ASSERT_EQ(a.meta.history.size(), epochs);
  ASSERT_EQ(b.meta.history.size(), epochs);
  for (size_t e = 0; e < epochs; ++e) {
    EXPECT_EQ(a.meta.history[e].train_loss, b.meta.history[e].train_loss)
        << "epoch " << e;
    EXPECT_EQ(a.meta.history[e].validation_loss,
              b.meta.history[e].validation_loss)
        << "epoch " << e;
  }
}

// The parameters and Adam state of two checkpoints are bit-identical.
void ExpectSameTraining(const fs::path& a_path, const fs::path& b_path) {
  const LoadedRun a = LoadRun(a_path);
  const LoadedRun b = LoadRun(b_path);
  EXPECT_EQ(a.meta.global_step, b.meta.global_step);
  EXPECT_EQ(a.meta.epochs_completed, b.meta.epochs_completed);
  const auto b_params = b.model->named_parameters();
  int compared = 0;
  for (const auto& item : a.model->named_parameters()) {
    const torch::Tensor& other = b_params[item.key()];
    EXPECT_TRUE(torch::equal(item.value(), other))
        << item.key() << ": max |difference| "
        << (item.value() - other).abs().max().item<double>();
    ++compared;
  }
  EXPECT_GT(compared, 300);
  const auto b_buffers = b.model->named_buffers();
  for (const auto& item : a.model->named_buffers()) {
    EXPECT_TRUE(torch::equal(item.value(), b_buffers[item.key()]))
        << item.key();
  }
  const auto a_list = a.model->parameters();
  const auto b_list = b.model->parameters();
  for (size_t i = 0; i < a_list.size(); ++i) {
    const auto& s = static_cast<const torch::optim::AdamParamState&>(
        *a.adam->state().at(StateKeyOf(a_list[i])));
    const auto& t = static_cast<const torch::optim::AdamParamState&>(
        *b.adam->state().at(StateKeyOf(b_list[i])));
    EXPECT_EQ(s.step(), t.step()) << "parameter " << i;
    EXPECT_TRUE(torch::equal(s.exp_avg(), t.exp_avg())) << "parameter " << i;
    EXPECT_TRUE(torch::equal(s.exp_avg_sq(), t.exp_avg_sq()))
        << "parameter " << i;
  }
}

TEST_F(TrainE2E, ResumedTwoRankRunEndsWithTheUninterruptedRunsParameters) {
  const fs::path straight = work_ / "straight";
  const fs::path resumed = work_ / "resumed";
  CommandResult r = RunCommand(MpiRun(2) + train_ + TrainFlags(straight, 2));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunCommand(MpiRun(2) + train_ + TrainFlags(resumed, 1));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunCommand(MpiRun(2) + train_ + TrainFlags(resumed, 2) + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resume: "));
  EXPECT_THAT(r.output, HasSubstr("after epoch 1"));
  EXPECT_THAT(r.output, Not(HasSubstr("epoch 1/2:")));
  EXPECT_THAT(r.output, HasSubstr("epoch 2/2:"));

  const LoadedRun a = LoadRun(straight / "last.pt");
  const LoadedRun b = LoadRun(resumed / "last.pt");
  EXPECT_EQ(a.meta.epochs_completed, 2);
  EXPECT_EQ(b.meta.epochs_completed, 2);
  EXPECT_EQ(a.meta.global_step, b.meta.global_step);
  EXPECT_EQ(a.meta.plateau.lr_factor, b.meta.plateau.lr_factor);
  EXPECT_EQ(a.meta.best_epoch, b.meta.best_epoch);
  ExpectSameHistory(a, b, 2);
  ExpectSameTraining(straight / "last.pt", resumed / "last.pt");
}

// --update-in-forward makes the same updates as the eager step, only later
// (each block's during the next forward pass): two ranks, two epochs of two
// steps with Adam's warm-up (every step has its own learning rate), a step
// checkpoint mid-epoch and validation between epochs end bit-equal to the
// eager run: parameters, Adam state, losses, the step checkpoint too.
TEST_F(TrainE2E, UpdateInForwardTrainsExactlyLikeTheEagerStep) {
  const fs::path eager = work_ / "eager";
  const fs::path deferred = work_ / "deferred";
  CommandResult r = RunCommand(MpiRun(2) + train_ + TrainFlags(eager, 2) +
                               " --checkpoint-every-steps 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunCommand(MpiRun(2) + train_ + TrainFlags(deferred, 2) +
                 " --checkpoint-every-steps 3 --update-in-forward");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("updates in the forward pass"));

  const LoadedRun a = LoadRun(eager / "last.pt");
  const LoadedRun b = LoadRun(deferred / "last.pt");
  ExpectSameHistory(a, b, 2);
  ExpectSameTraining(eager / "last.pt", deferred / "last.pt");
  ExpectSameTraining(eager / "checkpoints" / "step-0000000003.pt",
                     deferred / "checkpoints" / "step-0000000003.pt");
}

TEST_F(TrainE2E, BadCommandLinesExitTwoWithAMessage) {
  const std::vector<std::string> bad = {
      " --data " + data_,                                  // no --out
      " --data /nonexistent --out x",
      " --data " + data_ + " --out x --arch resnet50",
      " --data " + data_ + " --out x --epochs 0",
      " --data " + data_ + " --out x --batch-size -3",
      " --data " + data_ + " --out x --optimizer sgd",
      " --data " + data_ + " --out x --frobnicate",
  };
  for (const std::string& args : bad) {
    const CommandResult r = RunCommand(train_ + args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_THAT(r.output, Not(testing::IsEmpty())) << args;
  }
  const CommandResult arch = RunCommand(train_ + " --data " + data_ +
                                 " --out x --arch resnet50");
  EXPECT_THAT(arch.output, HasSubstr("--arch"));
  const CommandResult deferred_fp16 =
      RunCommand(train_ + " --data " + data_ +
                 " --out x --update-in-forward --mixed-precision fp16");
  EXPECT_EQ(deferred_fp16.exit_code, 2) << deferred_fp16.output;
  EXPECT_THAT(deferred_fp16.output,
              HasSubstr("--update-in-forward: cannot be combined with "
                        "--mixed-precision fp16"));
  const CommandResult help = RunCommand(train_ + " --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.output, HasSubstr("--max-steps-per-epoch"));
  for (const std::string& args :
       {std::string(" --checkpoint /nonexistent.pt a.png"),
        std::string(" a.png"),  // neither --checkpoint nor --weights
        std::string(" --checkpoint ") + train_,  // no image
        std::string(" --json --frobnicate")}) {
    const CommandResult r = RunCommand(predict_ + args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_THAT(r.output, Not(testing::IsEmpty())) << args;
  }
}

// --device cuda where LibTorch sees no GPU (Debian's CPU LibTorch, or no
// GPU): both programs exit 1 at once with a message naming the flag; and
// mixed precision is refused on the CPU.
TEST_F(TrainE2E, CudaWithoutAGpuFailsNamingTheFlag) {
  if (torch::cuda::is_available()) {
    GTEST_SKIP() << "LibTorch sees a GPU here; the GPU runs are tests/gpu's";
  }
  const fs::path out = work_ / "run";
  for (const std::string device : {"cuda", "cuda:1"}) {
    const CommandResult r =
        RunCommand(train_ + TrainFlags(out, 1) + " --device " + device);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("--device " + device +
                                    ": LibTorch"));
    EXPECT_THAT(r.output, HasSubstr("sees no CUDA device"));
    EXPECT_FALSE(fs::exists(out / "last.pt"));
  }
  const CommandResult amp =
      RunCommand(train_ + TrainFlags(out, 1) + " --amp");
  EXPECT_EQ(amp.exit_code, 1) << amp.output;
  EXPECT_THAT(amp.output, HasSubstr("--mixed-precision bf16 (or --amp) needs "
                                    "a GPU"));
  const CommandResult predict = RunCommand(predict_ + " --device cuda "
                                           "--weights " + train_ +
                                           " --arch densenet121 a.png");
  EXPECT_EQ(predict.exit_code, 1) << predict.output;
  EXPECT_THAT(predict.output, HasSubstr("--device cuda: LibTorch"));
}

class PredictE2E : public TrainE2E {
 protected:
  void SetUp() override {
    TrainE2E::SetUp();
    if (IsSkipped()) return;
    torch::manual_seed(11);
    model_ = *MakeModel("densenet121", kNumLabels, /*head_bias_one=*/false);
    // Nudge batch-norm statistics so eval mode is not an identity.
    model_->train();
    {
      torch::NoGradGuard no_grad;
      model_->forward(torch::randn({4, 3, kSize, kSize}));
    }
    model_->eval();
    CheckpointMeta meta;
    meta.arch = "densenet121";
    meta.image_size = kSize;
    meta.optimizer = "adam";
    checkpoint_ = (work_ / "model.pt").string();
    ASSERT_TRUE(SaveCheckpoint(checkpoint_, meta, *model_, nullptr, nullptr)
                    .ok());
  }

  // A gray gradient PNG of side `size`.
  std::string WriteImage(const std::string& name, int size) {
    std::vector<uint8_t> pixels(size * size);
    for (int y = 0; y < size; ++y) {
      for (int x = 0; x < size; ++x) {
        pixels[y * size + x] = static_cast<uint8_t>((x * 7 + y * 3) % 256);
      }
    }
    const std::string path = (work_ / name).string();
    EXPECT_TRUE(WritePng8(path, pixels.data(), size, size, 1).ok());
    return path;
  }

  // What the model gives for `path` preprocessed as in training.
  torch::Tensor Expected(const std::string& path) {
    ImageOptions options;
    options.image_size = kSize;
    absl::StatusOr<Image> input = LoadModelInput(path, options);
    EXPECT_TRUE(input.ok()) << input.status();
    return model_->Predict(ImageToTensor(*input).unsqueeze(0))[0];
  }

  static constexpr int kSize = 40;
  std::shared_ptr<ChexnetModel> model_;
  std::string checkpoint_;
};

TEST_F(PredictE2E, JsonLinesGiveTheModelsProbabilitiesAndTheResampling) {
  const std::string same = WriteImage("same.png", kSize);
  const std::string larger = WriteImage("larger.png", 2 * kSize + 3);
  const CommandResult r = RunCommand(predict_ + " --checkpoint " + checkpoint_ +
                              " --json --threads 1 " + same + " " + larger);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream lines(r.output);
  std::string line;
  std::vector<nlohmann::ordered_json> objects;
  while (std::getline(lines, line)) {
    nlohmann::ordered_json object =
        nlohmann::ordered_json::parse(line, nullptr, false);
    ASSERT_FALSE(object.is_discarded()) << "not JSON: " << line;
    objects.push_back(object);
  }
  ASSERT_EQ(objects.size(), 2u) << r.output;
  const std::string paths[2] = {same, larger};
  const int sizes[2] = {kSize, 2 * kSize + 3};
  for (int i = 0; i < 2; ++i) {
    const nlohmann::ordered_json& o = objects[i];
    EXPECT_EQ(o["image"], paths[i]);
    EXPECT_EQ(o["width"], sizes[i]);
    EXPECT_EQ(o["height"], sizes[i]);
    EXPECT_EQ(o["input_size"], kSize);
    EXPECT_EQ(o["resampled"], i == 1) << paths[i];
    ASSERT_EQ(o["probabilities"].size(), static_cast<size_t>(kNumLabels));
    int position = 0;
    for (const auto& item : o["probabilities"].items()) {
      EXPECT_EQ(item.key(), std::string(kLabelNames[position++]))
          << "findings out of the paper's order";
    }
    const torch::Tensor expected = Expected(paths[i]);
    for (int c = 0; c < kNumLabels; ++c) {
      const std::string name(kLabelNames[c]);
      ASSERT_TRUE(o["probabilities"].contains(name)) << name;
      EXPECT_NEAR(o["probabilities"][name].get<double>(),
                  expected[c].item<double>(), 1e-5)
          << paths[i] << " " << name;
    }
  }
}

TEST_F(PredictE2E, AnImageAtTheInputSizeIsUsedAsDecoded) {
  // The model input of a kSize image must be its decoded pixels, normalised:
  // no resampling pass over them.
  const std::string same = WriteImage("exact.png", kSize);
  absl::StatusOr<Image> decoded = ReadPng(same);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  Image normalised = *decoded;
  NormalizeImageNet(&normalised);
  const torch::Tensor direct =
      model_->Predict(ImageToTensor(normalised).unsqueeze(0))[0];
  const CommandResult r = RunCommand(predict_ + " --checkpoint " + checkpoint_ +
                              " --json --threads 1 " + same);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json o = nlohmann::json::parse(r.output);
  EXPECT_EQ(o["resampled"], false);
  for (int c = 0; c < kNumLabels; ++c) {
    const std::string name(kLabelNames[c]);
    EXPECT_NEAR(o["probabilities"][name].get<double>(),
                direct[c].item<double>(), 1e-5)
        << name;
  }
}

TEST_F(PredictE2E, TableListsEveryFindingForEveryImage) {
  const std::string a = WriteImage("first.png", kSize);
  const std::string b = WriteImage("second.png", 64);
  const CommandResult r = RunCommand(predict_ + " --checkpoint " + checkpoint_ +
                              " --threads 1 " + a + " " + b);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("first.png"));
  EXPECT_THAT(r.output, HasSubstr("second.png"));
  EXPECT_THAT(r.output, HasSubstr("40x40"));
  EXPECT_THAT(r.output, HasSubstr("64x64->40"));
  const torch::Tensor expected = Expected(a);
  for (int c = 0; c < kNumLabels; ++c) {
    const std::string name(kLabelNames[c]);
    const size_t at = r.output.find("\n" + name + " ");
    ASSERT_NE(at, std::string::npos) << name << " missing:\n" << r.output;
    std::istringstream row(r.output.substr(at + 1 + name.size()));
    double first = -1;
    row >> first;
    EXPECT_NEAR(first, expected[c].item<double>(), 6e-5) << name;
  }
}

TEST_F(PredictE2E, ABadImageFailsNamingTheFile) {
  const std::string good = WriteImage("good.png", kSize);
  const std::string bad = (work_ / "broken.png").string();
  std::ofstream(bad) << "this is not a PNG";
  CommandResult r = RunCommand(predict_ + " --checkpoint " + checkpoint_ + " " +
                        good + " " + bad);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("broken.png"));
  r = RunCommand(predict_ + " --checkpoint " + checkpoint_ + " " +
          (work_ / "missing.png").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("missing.png"));
}

// ---- heat maps, ten-crop, chexnet_localize ---------------------------------

// Reads an .npy written by WriteNpyFloat32 (float32, 2-D).
torch::Tensor ReadNpy(const std::string& path, int rows, int cols) {
  const std::string bytes = *ReadFileToString(path);
  const size_t header =
      static_cast<uint8_t>(bytes[8]) | static_cast<uint8_t>(bytes[9]) << 8;
  torch::Tensor tensor = torch::empty({rows, cols});
  EXPECT_EQ(bytes.size(), 10 + header + tensor.nbytes()) << path;
  std::memcpy(tensor.data_ptr(), bytes.data() + 10 + header,
              std::min(tensor.nbytes(), bytes.size() - 10 - header));
  return tensor;
}

TEST_F(PredictE2E, HeatmapsOfAFolderAreTheModelsGradCam) {
  fs::create_directories(work_ / "folder");
  WriteImage("folder/b.png", kSize);
  WriteImage("folder/a.png", 2 * kSize + 3);
  std::ofstream(work_ / "folder" / "notes.txt") << "not an image";
  const fs::path maps = work_ / "maps";
  const CommandResult r = RunCommand(
      predict_ + " --checkpoint " + checkpoint_ + " --json --threads 1 " +
      "--heatmap " + maps.string() + " --findings Cardiomegaly,Infiltrate " +
      (work_ / "folder").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream lines(r.output);
  std::string line;
  std::vector<nlohmann::json> objects;
  while (std::getline(lines, line)) {
    objects.push_back(nlohmann::json::parse(line, nullptr, false));
    ASSERT_FALSE(objects.back().is_discarded()) << "not JSON: " << line;
  }
  ASSERT_EQ(objects.size(), 2u) << "a.png and b.png, sorted\n" << r.output;
  EXPECT_THAT(objects[0]["image"].get<std::string>(), HasSubstr("a.png"));
  for (const nlohmann::json& object : objects) {
    const std::string image = object["image"];
    ASSERT_EQ(object["heatmaps"].size(), 2u);
    EXPECT_EQ(object["heatmaps"][0]["finding"], "Cardiomegaly");
    EXPECT_EQ(object["heatmaps"][1]["finding"], "Infiltration");
    // The raw map equals Grad-CAM computed here and upsampled to the file.
    ImageOptions options;
    options.image_size = kSize;
    const Image input = *LoadModelInput(image, options);
    const GradCamResult cam =
        ComputeGradCam(*model_, ImageToTensor(input), {1, 3});
    const int side = object["width"];
    const torch::Tensor expected = UpsampleMaps(cam.maps, side, side);
    for (int k = 0; k < 2; ++k) {
      const nlohmann::json& heatmap = object["heatmaps"][k];
      EXPECT_TRUE(fs::is_regular_file(heatmap["png"].get<std::string>()));
      const torch::Tensor map =
          ReadNpy(heatmap["npy"].get<std::string>(), side, side);
      EXPECT_LE((map - expected[k]).abs().max().item<double>(),
                1e-5 * std::max(1.0, expected[k].abs().max().item<double>()))
          << heatmap["npy"];
      EXPECT_NEAR(heatmap["probability"].get<double>(),
                  object["probabilities"][heatmap["finding"].get<std::string>()]
                      .get<double>(),
                  1e-5);
    }
  }
}

TEST_F(PredictE2E, UnknownFindingIsNamed) {
  const std::string image = WriteImage("x.png", kSize);
  CommandResult r =
      RunCommand(predict_ + " --checkpoint " + checkpoint_ + " --heatmap " +
                 (work_ / "m").string() + " --findings Mass,Fracture " + image);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("unknown finding \"Fracture\""));
  r = RunCommand(predict_ + " --checkpoint " + checkpoint_ +
                 " --findings Mass " + image);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--heatmap"));
}

TEST_F(PredictE2E, TenCropAveragesTheTenCropsProbabilities) {
  const std::string image = WriteImage("tta.png", 2 * kSize);
  const CommandResult r =
      RunCommand(predict_ + " --checkpoint " + checkpoint_ +
                 " --json --threads 1 --tta ten-crop " + image);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json object = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_FALSE(object.is_discarded()) << r.output;
  EXPECT_EQ(object["tta"], "ten-crop");
  EXPECT_EQ(object["input_size"], TenCropResizeSide(kSize));
  ImageOptions options;
  options.image_size = TenCropResizeSide(kSize);
  const Image resized = *LoadModelInput(image, options);
  const torch::Tensor expected = TenCropProbabilities(
      *model_, ImageToTensor(resized).unsqueeze(0), kSize)[0];
  for (int c = 0; c < kNumLabels; ++c) {
    EXPECT_NEAR(
        object["probabilities"][std::string(kLabelNames[c])].get<double>(),
        expected[c].item<double>(), 1e-5)
        << kLabelNames[c];
  }
}

constexpr size_t kIoBBThresholdCount = 5;

TEST_F(PredictE2E, LocalizeScoresEveryBoxAndNamesABadRow) {
  const fs::path json_path = work_ / "localization.json";
  CommandResult r = RunCommand(
      localize_ + " --checkpoint " + checkpoint_ + " --image-size 32 --data " +
      data_ + " --threads 1 --json " + json_path.string() + " --heatmap " +
      (work_ / "maps").string() + " --max-heatmaps 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("pointing"));
  EXPECT_THAT(r.output, HasSubstr("accuracy at T(IoU)"));
  const std::vector<FindingBox> boxes =
      *ReadBBoxListCsv((fs::path(data_) / kBBoxList).string());
  const nlohmann::json json =
      nlohmann::json::parse(*ReadFileToString(json_path.string()));
  int scored = 0;
  for (const nlohmann::json& finding : json["findings"]) {
    scored += finding["boxes"].get<int>();
    EXPECT_EQ(finding["iobb"].size(), kIoBBThresholdCount);
  }
  EXPECT_EQ(scored, static_cast<int>(boxes.size()));
  EXPECT_FALSE(fs::is_empty(work_ / "maps"));

  // A box naming an image the data set does not have.
  const fs::path bad = work_ / "boxes.csv";
  std::ofstream(bad) << "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                     << boxes[0].image_index << ",Mass,1,2,3,4\n"
                     << "12345678_000.png,Nodule,1,2,3,4\n";
  r = RunCommand(localize_ + " --checkpoint " + checkpoint_ + " --data " +
                 data_ + " --boxes " + bad.string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr(bad.string() + ":3: image "
                                       "\"12345678_000.png\" is not in"));
}

TEST_F(PredictE2E, HostileWeightsFailWithStatusOneAndAMessage) {
  const std::string image = WriteImage("image.png", kSize);
  // The file: a million nested tuples once overflowed the stack.
  const std::string nested = (work_ / "n.pth").string();
  std::ofstream(nested, std::ios::binary)
      << std::string("\x80\x02N") << std::string(1000000, '\x85') << ".";
  CommandResult r = RunCommand(predict_ + " --weights " + nested +
                               " --arch densenet121 " + image);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(nested));
  EXPECT_THAT(r.output, HasSubstr("nested more than 1000 levels deep"));
  r = RunCommand(predict_ + " --weights /dev/zero --arch densenet121 " + image);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("/dev/zero is not a regular file"));
}

TEST_F(PredictE2E, CheckpointsWithImpossibleMetaFailWithStatusOne) {
  const std::string image = WriteImage("image.png", kSize);
  CheckpointMeta meta;
  meta.arch = "densenet121";
  meta.optimizer = "adam";
  // A 1-pixel input once ended in an uncaught LibTorch error (an abort).
  meta.image_size = 1;
  const std::string tiny = (work_ / "tiny.pt").string();
  ASSERT_TRUE(SaveCheckpoint(tiny, meta, *model_, nullptr, nullptr).ok());
  CommandResult r =
      RunCommand(predict_ + " --checkpoint " + tiny + " " + image);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(tiny + ": not a checkpoint chexnet_train "
                                         "writes: meta/image_size is 1"));
  // A 3-output model: 14 probabilities were once read from 3.
  meta.image_size = kSize;
  meta.num_classes = 3;
  std::shared_ptr<ChexnetModel> three =
      *MakeModel("densenet121", 3, /*head_bias_one=*/false);
  const std::string three_path = (work_ / "three.pt").string();
  ASSERT_TRUE(SaveCheckpoint(three_path, meta, *three, nullptr, nullptr).ok());
  r = RunCommand(predict_ + " --checkpoint " + three_path + " --json " + image);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("meta/num_classes is 3"));
}

TEST_F(TrainE2E, ResumingFromACheckpointWithImpossibleMetaFailsWithStatusOne) {
  const fs::path out = work_ / "out";
  fs::create_directories(out);
  CheckpointMeta meta;
  meta.arch = "densenet121";
  meta.image_size = 32;
  meta.optimizer = "adam";
  meta.epochs_completed = -3;
  std::shared_ptr<ChexnetModel> model = *MakeModel("densenet121");
  ASSERT_TRUE(
      SaveCheckpoint((out / "last.pt").string(), meta, *model, nullptr, nullptr)
          .ok());
  // Named explicitly, a bad checkpoint fails (--resume auto would skip it).
  const CommandResult r = RunCommand(train_ + TrainFlags(out, 1) +
                                     " --resume " + (out / "last.pt").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("last.pt: not a checkpoint chexnet_train "
                                  "writes: inconsistent meta: "
                                  "epochs_completed -3"));
}

// ---- elastic training: step checkpoints, stop requests, resizes ----------


// "KOLO_ELASTIC_STOP_FILE=... KOLO_ELASTIC_RESTART=n " for a command line:
// the variables kolorun's elastic mode sets on every rank.
std::string ElasticEnv(const fs::path& stop_file, int restart) {
  return "KOLO_ELASTIC_STOP_FILE=" + stop_file.string() +
         " KOLO_ELASTIC_RESTART=" + std::to_string(restart) + " ";
}

// (d) and (a): a stop request (the file present from the start) ends the
// run after its first step with status 75 and a step checkpoint; resumed
// from it at the same world size, the run ends bit-identical to one that
// was never interrupted.
TEST_F(TrainE2E,
       StopRequestExits75WithAStepCheckpointThatResumesBitIdentically) {
  const fs::path straight = work_ / "straight";
  const fs::path resumed = work_ / "resumed";
  const fs::path stop_file = work_ / "stop";
  std::ofstream(stop_file).put('\n');
  CommandResult r = RunCommand(ElasticEnv(stop_file, 0) + MpiRun(2) + train_ +
                               TrainFlags(resumed, 1));
  ASSERT_EQ(r.exit_code, 75) << r.output;
  const fs::path step1 = resumed / "checkpoints" / "step-0000000001.pt";
  EXPECT_THAT(r.output,
              HasSubstr("elastic: stop requested; wrote " + step1.string() +
                        " after step 1 (epoch 1, "
                        "8 of its 16 images)"));
  EXPECT_FALSE(fs::exists(resumed / "last.pt"));
  CheckpointMeta meta;
  ASSERT_TRUE(
      LoadCheckpoint(step1.string(), &meta, nullptr, nullptr, nullptr).ok());
  EXPECT_EQ(meta.global_step, 1);
  EXPECT_EQ(meta.epoch_step, 1);
  EXPECT_EQ(meta.epochs_completed, 0);
  EXPECT_EQ(meta.world_size, 2);
  EXPECT_EQ(meta.epoch_loss_rows, 8);
  EXPECT_GT(meta.epoch_loss_sum, 0);

  r = RunCommand(MpiRun(2) + train_ + TrainFlags(straight, 1));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunCommand(MpiRun(2) + train_ + TrainFlags(resumed, 1) + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resume: " + step1.string() +
                                  " in epoch 1 at its step 1 (step 1), 8 of "
                                  "its 16 images done"));
  ExpectSameTraining(straight / "last.pt", resumed / "last.pt");
}

// (b) and (c): a run stopped at 2 ranks continues at 3, whose newest
// checkpoint is then truncated (as a crash while writing would leave it):
// --resume auto names and skips it, the run finishes at 1 rank from the
// previous one, and the sample logs show every epoch trained every image
// exactly once (the steps lost with the truncated checkpoint redone).
TEST_F(TrainE2E,
       ResizedRunsTrainEveryImageOncePerEpochAndSkipATruncatedCheckpoint) {
  const fs::path out = work_ / "run";
  const fs::path stop_file = work_ / "stop";
  const std::string log = (work_ / "samples").string();
  // Whole epochs (no --max-steps-per-epoch) of 8 images per rank.
  std::ostringstream flags;
  flags << " --data " << data_ << " --out " << out.string()
        << " --arch densenet121 --image-size 32 --batch-size 8 --epochs 2"
        << " --workers 1 --threads 1 --seed 5 --warmup-epochs 1 --patience 0"
        << " --no-progress --checkpoint-every-steps 1 --resume"
        << " --sample-log " << log;
  std::ofstream(stop_file).put('\n');
  CommandResult r =
      RunCommand(ElasticEnv(stop_file, 0) + MpiRun(2) + train_ + flags.str());
  ASSERT_EQ(r.exit_code, 75) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resume: no checkpoint in"));
  r = RunCommand(ElasticEnv(stop_file, 1) + MpiRun(3) + train_ + flags.str());
  ASSERT_EQ(r.exit_code, 75) << r.output;
  EXPECT_THAT(r.output, HasSubstr("elastic: restart 1, 3 ranks"));
  EXPECT_THAT(r.output, HasSubstr("was written by 2 ranks, this run has 3"));
  const fs::path step2 = out / "checkpoints" / "step-0000000002.pt";
  ASSERT_TRUE(fs::exists(step2)) << r.output;
  fs::resize_file(step2, fs::file_size(step2) / 2);
  fs::remove(stop_file);
  r = RunCommand(ElasticEnv(stop_file, 2) + MpiRun(1) + train_ + flags.str());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("resume: skipping " + step2.string() +
                                  ": not a readable torch archive"));
  EXPECT_THAT(r.output, HasSubstr("step-0000000001.pt in epoch 1 at its step "
                                  "1 (step 1)"));
  EXPECT_THAT(r.output, HasSubstr("epoch 2/2:"));
  // Only the newest two step checkpoints are kept.
  int step_files = 0;
  for (const auto& entry : fs::directory_iterator(out / "checkpoints")) {
    EXPECT_EQ(entry.path().extension(), ".pt") << entry.path();
    ++step_files;
  }
  EXPECT_EQ(step_files, 2);

  // The number of training images, as chexnet_train reports it.
  const size_t at = r.output.find("data: ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const size_t colon = r.output.find("): ", at);
  const int train_images = std::atoi(r.output.c_str() + colon + 3);
  ASSERT_GT(train_images, 16) << r.output;
  const std::string check = std::string(PYTHON3) + " " + CHECK_SAMPLE_LOG +
                            " " + log + " --epochs 2 --samples " +
                            std::to_string(train_images);
  r = RunCommand(check);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("every sample of"));

  // The checker does find a sample trained twice: one more log line of an
  // already trained image, in a launch after the last.
  std::ofstream(log + ".rank0.restart3")
      << "restart=3 epoch=1 step=99 rank=0 world=1 indices=4,5\n";
  r = RunCommand(check);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("epoch 1: sample 4 trained 2 times"));
}

TEST_F(TrainE2E, ResumeFromAMissingPathFailsNamingIt) {
  const fs::path out = work_ / "out";
  const std::string missing = (work_ / "nowhere.pt").string();
  const CommandResult r =
      RunCommand(train_ + TrainFlags(out, 1) + " --resume " + missing);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(missing + ": no such checkpoint"));
}

}  // namespace
}  // namespace kolo::chexnet
