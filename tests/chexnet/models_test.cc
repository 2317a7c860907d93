// Tests of the CheXNet models and --weights loading against torchvision.
//
// The reference files come from export_torchvision_reference.py (a CTest
// fixture) in $KOLO_CHEXNET_REFERENCE_DIR; tests that need them skip when
// they are absent (no python3 with torch and torchvision).
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "examples/chexnet/models/chexnet_model.h"
#include "examples/chexnet/models/load_weights.h"
#include "examples/chexnet/models/state_dict_reader.h"
#include "nlohmann/json.hpp"
#include "tests/chexnet/pickle_fixture.h"

namespace kolo {
namespace chexnet {
namespace {

namespace fs = std::filesystem;

constexpr double kLogitTolerance = 1e-4;

std::string ReferencePath(const std::string& name) {
  const char* dir = std::getenv("KOLO_CHEXNET_REFERENCE_DIR");
  return (fs::path(dir == nullptr ? "" : dir) / name).string();
}

// Skips the test when a reference file is missing.
#define REQUIRE_REFERENCE(name)                                               \
  do {                                                                        \
    if (!fs::exists(ReferencePath(name))) {                                   \
      GTEST_SKIP() << "reference file " << ReferencePath(name)                \
                   << " is missing: it is written by "                        \
                      "tests/chexnet/export_torchvision_reference.py, which " \
                      "needs python3 with torch and torchvision "             \
                      "(KOLO_CHEXNET_REFERENCE_DIR names its directory)";     \
    }                                                                         \
  } while (0)

std::shared_ptr<ChexnetModel> Make(const std::string& arch,
                                   int64_t num_classes = kNumFindings,
                                   bool head_bias_one = true) {
  absl::StatusOr<std::shared_ptr<ChexnetModel>> model =
      MakeModel(arch, num_classes, head_bias_one);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

nlohmann::json ReadJson(const std::string& name) {
  std::ifstream file(ReferencePath(name));
  return nlohmann::json::parse(file);
}

std::vector<int64_t> Shape(const nlohmann::json& shape) {
  return shape.get<std::vector<int64_t>>();
}

// A float32 little-endian file written by the export script.
torch::Tensor ReadFloats(const std::string& name,
                         const std::vector<int64_t>& shape) {
  torch::Tensor tensor = torch::empty(shape, torch::kFloat32);
  std::ifstream file(ReferencePath(name), std::ios::binary);
  file.read(static_cast<char*>(tensor.data_ptr()), tensor.nbytes());
  EXPECT_EQ(file.gcount(), static_cast<std::streamsize>(tensor.nbytes()))
      << name;
  return tensor;
}

std::string ShapeOf(const torch::Tensor& tensor) {
  std::string text;
  for (int64_t size : tensor.sizes()) text += std::to_string(size) + ",";
  return text;
}

// The model's logits on the exported input, in eval mode.
torch::Tensor Logits(ChexnetModel& model, const std::string& arch) {
  const nlohmann::json info = ReadJson(arch + ".json");
  torch::Tensor images =
      ReadFloats(arch + "_input.bin", Shape(info["input_shape"]));
  model.eval();
  torch::NoGradGuard no_grad;
  return model.forward(images);
}

torch::Tensor ReferenceLogits(const std::string& arch) {
  const nlohmann::json info = ReadJson(arch + ".json");
  return ReadFloats(arch + "_logits.bin", Shape(info["logits_shape"]));
}

double MaxAbsDifference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// Loads `file` into a fresh 14-class model and checks the torchvision logits.
void ExpectLogitsMatch(const std::string& arch, const std::string& file) {
  std::shared_ptr<ChexnetModel> model = Make(arch);
  ASSERT_NE(model, nullptr);
  absl::StatusOr<LoadReport> report =
      LoadWeights(ReferencePath(file), model.get());
  ASSERT_TRUE(report.ok()) << report.status();
  const torch::Tensor logits = Logits(*model, arch);
  const torch::Tensor reference = ReferenceLogits(arch);
  ASSERT_EQ(logits.sizes(), reference.sizes());
  const double difference = MaxAbsDifference(logits, reference);
  std::cout << arch << " from " << file
            << ": max abs logit difference vs torchvision " << difference
            << " (" << report->loaded << " tensors loaded)\n";
  EXPECT_LE(difference, kLogitTolerance)
      << "kolo " << logits << "\ntorchvision " << reference;
}

// Sample standard deviation against the expected one, within `relative`.
void ExpectStd(const torch::Tensor& tensor, double expected, double relative,
               const std::string& name) {
  const double actual = tensor.std().item<double>();
  EXPECT_NEAR(actual, expected, relative * expected) << name;
}

// The name and shape lists of torchvision's model equal kolo's, in order.
void ExpectNamesMatch(const std::string& arch) {
  std::shared_ptr<ChexnetModel> model = Make(arch);
  ASSERT_NE(model, nullptr);
  const nlohmann::json info = ReadJson(arch + ".json");
  const auto parameters = model->named_parameters();
  const auto buffers = model->named_buffers();
  ASSERT_EQ(parameters.size(), info["parameters"].size());
  ASSERT_EQ(buffers.size(), info["buffers"].size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    EXPECT_EQ(parameters[i].key(), info["parameters"][i][0].get<std::string>())
        << "parameter " << i;
    EXPECT_EQ(parameters[i].value().sizes().vec(),
              Shape(info["parameters"][i][1]))
        << parameters[i].key();
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    EXPECT_EQ(buffers[i].key(), info["buffers"][i][0].get<std::string>())
        << "buffer " << i;
    EXPECT_EQ(buffers[i].value().sizes().vec(), Shape(info["buffers"][i][1]))
        << buffers[i].key();
  }
  int64_t count = 0;
  for (const torch::Tensor& parameter : model->parameters()) {
    count += parameter.numel();
  }
  EXPECT_EQ(count, info["num_parameters"].get<int64_t>());
}

// Writes the first `fraction` of a reference file to a temporary file.
std::string TruncatedCopy(const std::string& name, double fraction) {
  std::ifstream in(ReferencePath(name), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  const std::string path =
      (fs::temp_directory_path() /
       ("kolo_truncated_" + std::to_string(::getpid()) + "_" + name))
          .string();
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(),
            static_cast<std::streamsize>(bytes.size() * fraction));
  return path;
}

// ---------------------------------------------------------------------------

TEST(MakeModel, RejectsUnknownArchAndBadClassCount) {
  absl::StatusOr<std::shared_ptr<ChexnetModel>> model = MakeModel("resnet50");
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(model.status().message().find("resnet50"), std::string::npos)
      << model.status();
  EXPECT_FALSE(MakeModel("densenet121", 0).ok());
}

TEST(DenseNet121, ForwardGivesOneLogitPerFindingAndPredictIsSigmoid) {
  std::shared_ptr<ChexnetModel> model = Make("densenet121");
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->arch(), "densenet121");
  model->eval();
  const torch::Tensor images = torch::randn({1, 3, 32, 32});
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = model->forward(images);
  }
  EXPECT_EQ(logits.sizes().vec(), (std::vector<int64_t>{1, kNumFindings}));
  const torch::Tensor probabilities = model->Predict(images);
  EXPECT_FALSE(probabilities.requires_grad());
  EXPECT_LE(MaxAbsDifference(probabilities, torch::sigmoid(logits)), 1e-6);
}

TEST(DenseNet121, TrainingStepGivesEveryParameterAGradient) {
  torch::manual_seed(0);
  std::shared_ptr<ChexnetModel> model = Make("densenet121");
  ASSERT_NE(model, nullptr);
  model->train();
  const torch::Tensor logits = model->forward(torch::randn({2, 3, 32, 32}));
  torch::binary_cross_entropy_with_logits(
      logits, torch::randint(0, 2, logits.sizes()).to(torch::kFloat32))
      .backward();
  for (const auto& item : model->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_TRUE(item.value().grad().isfinite().all().item<bool>())
        << item.key();
  }
  // Batch norm running statistics were updated by the training forward.
  EXPECT_EQ(model->named_buffers()["features.norm0.num_batches_tracked"]
                .item<int64_t>(),
            1);
}

// The block hook (DistributedOptimizer::ready in update_in_forward) sees
// every parameter exactly once per forward pass, before the pass uses it, in
// the order of named_parameters(), and does not change the result.
TEST(ChexnetModel, BeforeBlockSeesEveryParameterOnceInForwardOrder) {
  for (const std::string arch : {"densenet121", "vgg16"}) {
    SCOPED_TRACE(arch);
    torch::manual_seed(0);
    std::shared_ptr<ChexnetModel> model = Make(arch);
    ASSERT_NE(model, nullptr);
    model->eval();
    const torch::Tensor images = torch::randn({1, 3, 32, 32});
    const torch::Tensor plain = model->forward(images);
    std::vector<const void*> seen;
    model->set_before_block([&](const torch::nn::Module& block) {
      for (const torch::Tensor& p : block.parameters()) {
        seen.push_back(p.unsafeGetTensorImpl());
      }
    });
    const torch::Tensor hooked = model->forward(images);
    EXPECT_TRUE(torch::equal(plain, hooked));
    std::vector<const void*> expected;
    for (const auto& item : model->named_parameters()) {
      expected.push_back(item.value().unsafeGetTensorImpl());
    }
    EXPECT_EQ(seen, expected);
    model->set_before_block({});
    seen.clear();
    model->forward(images);
    EXPECT_TRUE(seen.empty());
  }
}

TEST(DenseNet121, InitialisesLikeTorchvisionWithHeadBiasOption) {
  torch::manual_seed(0);
  std::shared_ptr<ChexnetModel> model = Make("densenet121");
  ASSERT_NE(model, nullptr);
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor& value = item.value();
    if (value.dim() == 4) {  // convolution: kaiming_normal_, fan in
      const int64_t fan_in = value.numel() / value.size(0);
      ExpectStd(value, std::sqrt(2.0 / fan_in), 0.1, name);
    } else if (name.find("norm") != std::string::npos) {
      const double expected = name.find("weight") != std::string::npos ? 1 : 0;
      EXPECT_TRUE(value.eq(expected).all().item<bool>()) << name;
    }
  }
  const torch::Tensor head_bias = model->named_parameters()["classifier.bias"];
  EXPECT_TRUE(head_bias.eq(1).all().item<bool>()) << head_bias;
  // Linear weight: torchvision keeps PyTorch's default U(-1/sqrt(fan_in), ..).
  const torch::Tensor head_weight =
      model->named_parameters()["classifier.weight"];
  EXPECT_LE(head_weight.abs().max().item<double>(), 1 / std::sqrt(1024.0));

  std::shared_ptr<ChexnetModel> zero_bias =
      Make("densenet121", kNumFindings, /*head_bias_one=*/false);
  ASSERT_NE(zero_bias, nullptr);
  EXPECT_TRUE(zero_bias->named_parameters()["classifier.bias"]
                  .eq(0)
                  .all()
                  .item<bool>());
}

TEST(Vgg16, InitialisesLikeTorchvisionAndAcceptsSmallInputs) {
  torch::manual_seed(0);
  std::shared_ptr<ChexnetModel> model = Make("vgg16");
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->head_prefix(), "classifier.6");
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor& value = item.value();
    if (value.dim() == 4) {  // convolution: kaiming_normal_, fan out, ReLU
      const int64_t fan_out = value.numel() / value.size(1);
      ExpectStd(value, std::sqrt(2.0 / fan_out), 0.1, name);
    } else if (value.dim() == 2) {  // Linear: N(0, 0.01)
      ExpectStd(value, 0.01, 0.1, name);
    } else {
      const double expected = name == "classifier.6.bias" ? 1 : 0;
      EXPECT_TRUE(value.eq(expected).all().item<bool>()) << name;
    }
  }
  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(model->forward(torch::randn({2, 3, 32, 32})).sizes().vec(),
            (std::vector<int64_t>{2, kNumFindings}));
}

TEST(DenseNet121, NamesShapesAndParameterCountMatchTorchvision) {
  REQUIRE_REFERENCE("densenet121.json");
  ExpectNamesMatch("densenet121");
}

TEST(Vgg16, NamesShapesAndParameterCountMatchTorchvision) {
  REQUIRE_REFERENCE("vgg16.json");
  ExpectNamesMatch("vgg16");
}

TEST(DenseNet121, LogitsMatchTorchvision) {
  REQUIRE_REFERENCE("densenet121.pt");
  ExpectLogitsMatch("densenet121", "densenet121.pt");
  // The comparison discriminates: a model that did not load is far off.
  std::shared_ptr<ChexnetModel> unloaded = Make("densenet121");
  ASSERT_NE(unloaded, nullptr);
  EXPECT_GT(MaxAbsDifference(Logits(*unloaded, "densenet121"),
                             ReferenceLogits("densenet121")),
            100 * kLogitTolerance);
}

TEST(Vgg16, LogitsMatchTorchvision) {
  REQUIRE_REFERENCE("vgg16.pt");
  ExpectLogitsMatch("vgg16", "vgg16.pt");
}

TEST(StateDictReader, ReadsKeysInFileOrderWithValues) {
  REQUIRE_REFERENCE("densenet121.pt");
  absl::StatusOr<StateDict> state =
      ReadStateDict(ReferencePath("densenet121.pt"));
  ASSERT_TRUE(state.ok()) << state.status();
  const nlohmann::json info = ReadJson("densenet121.json");
  ASSERT_EQ(state->size(), info["state_dict_keys"].size());
  for (size_t i = 0; i < state->size(); ++i) {
    EXPECT_EQ((*state)[i].first, info["state_dict_keys"][i].get<std::string>())
        << "entry " << i;
  }
  for (const auto& [key, tensor] : *state) {
    if (key == "features.norm0.num_batches_tracked") {
      EXPECT_EQ(tensor.scalar_type(), torch::kInt64);
      EXPECT_EQ(tensor.dim(), 0);
      EXPECT_EQ(tensor.item<int64_t>(), 7);  // set by the export script
    }
  }
}

TEST(LoadWeights, ImageNetHeadIsSkippedAndFeaturesLoad) {
  REQUIRE_REFERENCE("densenet121_imagenet.pt");
  std::shared_ptr<ChexnetModel> model = Make("densenet121");
  ASSERT_NE(model, nullptr);
  const std::string path = ReferencePath("densenet121_imagenet.pt");
  absl::StatusOr<LoadReport> report = LoadWeights(path, model.get());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->skipped,
            (std::vector<std::string>{"classifier.weight", "classifier.bias"}));
  ASSERT_EQ(report->notes.size(), 1u);
  EXPECT_NE(report->notes[0].find("[1000, 1024]"), std::string::npos)
      << report->notes[0];
  // Head untouched (bias still the initial ones), everything else from file.
  EXPECT_TRUE(
      model->named_parameters()["classifier.bias"].eq(1).all().item<bool>());
  absl::StatusOr<StateDict> state = ReadStateDict(path);
  ASSERT_TRUE(state.ok()) << state.status();
  auto parameters = model->named_parameters();
  auto buffers = model->named_buffers();
  int64_t compared = 0;
  for (const auto& [key, tensor] : *state) {
    if (key.rfind("classifier.", 0) == 0) continue;
    const torch::Tensor* target = parameters.find(key);
    if (target == nullptr) target = buffers.find(key);
    ASSERT_NE(target, nullptr) << key;
    EXPECT_TRUE(target->equal(tensor)) << key;
    ++compared;
  }
  EXPECT_EQ(compared, report->loaded);
  EXPECT_EQ(compared + 2, static_cast<int64_t>(state->size()));
}

TEST(LoadWeights, LegacyFormatAndKeyNamesLoad) {
  REQUIRE_REFERENCE("densenet121_legacy.pth");
  // Pre-0.4.1 files lack num_batches_tracked: those buffers keep their value.
  std::shared_ptr<ChexnetModel> model = Make("densenet121");
  ASSERT_NE(model, nullptr);
  absl::StatusOr<LoadReport> report =
      LoadWeights(ReferencePath("densenet121_legacy.pth"), model.get());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->skipped.size(), 121u);  // one per batch norm
  EXPECT_EQ(model->named_buffers()["features.norm5.num_batches_tracked"]
                .item<int64_t>(),
            0);
  ExpectLogitsMatch("densenet121", "densenet121_legacy.pth");
}

TEST(LoadWeights, DataParallelCheckpointLoads) {
  REQUIRE_REFERENCE("densenet121_checkpoint.pth.tar");
  ExpectLogitsMatch("densenet121", "densenet121_checkpoint.pth.tar");
}

TEST(LoadWeights, OriginalChexnetReleaseLayoutLoads) {
  REQUIRE_REFERENCE("densenet121_chexnet_release.pth.tar");
  ExpectLogitsMatch("densenet121", "densenet121_chexnet_release.pth.tar");
}

TEST(LoadWeights, NormalizesDataParallelAndLegacyKeys) {
  EXPECT_EQ(NormalizeStateDictKey("module.features.conv0.weight"),
            "features.conv0.weight");
  EXPECT_EQ(
      NormalizeStateDictKey("features.denseblock1.denselayer1.norm.1.weight"),
      "features.denseblock1.denselayer1.norm1.weight");
  EXPECT_EQ(NormalizeStateDictKey(
                "module.features.denseblock4.denselayer16.conv.2.weight"),
            "features.denseblock4.denselayer16.conv2.weight");
  EXPECT_EQ(NormalizeStateDictKey(
                "features.denseblock2.denselayer3.norm.2.running_var"),
            "features.denseblock2.denselayer3.norm2.running_var");
  // Transition layers have no numbered sub-modules and keep their names.
  EXPECT_EQ(NormalizeStateDictKey("features.transition1.norm.weight"),
            "features.transition1.norm.weight");
  EXPECT_EQ(NormalizeStateDictKey("classifier.6.bias"), "classifier.6.bias");
}

TEST(LoadWeights, MissingKeyIsNamedAndModelIsUnchanged) {
  REQUIRE_REFERENCE("densenet121.pt");
  absl::StatusOr<StateDict> state =
      ReadStateDict(ReferencePath("densenet121.pt"));
  ASSERT_TRUE(state.ok()) << state.status();
  const std::string removed = "features.denseblock2.denselayer3.conv1.weight";
  size_t before = state->size();
  state->erase(
      std::remove_if(state->begin(), state->end(),
                     [&](const auto& e) { return e.first == removed; }),
      state->end());
  ASSERT_EQ(state->size(), before - 1);

  std::shared_ptr<ChexnetModel> model = Make("densenet121");
  ASSERT_NE(model, nullptr);
  const torch::Tensor conv0 =
      model->named_parameters()["features.conv0.weight"].clone();
  absl::StatusOr<LoadReport> report = LoadStateDict(*state, model.get());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(report.status().message().find("1 missing: " + removed),
            std::string::npos)
      << report.status();
  EXPECT_TRUE(model->named_parameters()["features.conv0.weight"].equal(conv0))
      << "a failed load must leave the model unchanged";
}

TEST(LoadWeights, ShapeMismatchAndUnexpectedKeysAreNamed) {
  REQUIRE_REFERENCE("densenet121.pt");
  absl::StatusOr<StateDict> state =
      ReadStateDict(ReferencePath("densenet121.pt"));
  ASSERT_TRUE(state.ok()) << state.status();
  for (auto& [key, tensor] : *state) {
    if (key == "features.conv0.weight") tensor = torch::zeros({64, 3, 3, 3});
  }
  state->emplace_back("features.conv9.weight", torch::zeros({1}));
  std::shared_ptr<ChexnetModel> model = Make("densenet121");
  ASSERT_NE(model, nullptr);
  absl::StatusOr<LoadReport> report = LoadStateDict(*state, model.get());
  ASSERT_FALSE(report.ok());
  const std::string message(report.status().message());
  EXPECT_NE(message.find("features.conv0.weight (file [64, 3, 3, 3], model "
                         "[64, 3, 7, 7])"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("not in the model: features.conv9.weight"),
            std::string::npos)
      << message;
}

TEST(LoadWeights, WrongArchitectureIsRejected) {
  REQUIRE_REFERENCE("densenet121.pt");
  std::shared_ptr<ChexnetModel> model = Make("vgg16");
  ASSERT_NE(model, nullptr);
  absl::StatusOr<LoadReport> report =
      LoadWeights(ReferencePath("densenet121.pt"), model.get());
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.status().message().find("do not fit vgg16"),
            std::string::npos)
      << report.status();
}

TEST(StateDictReader, TruncatedFilesAreDataLossErrors) {
  REQUIRE_REFERENCE("densenet121_legacy.pth");
  for (const char* name : {"densenet121.pt", "densenet121_legacy.pth"}) {
    for (double fraction : {0.5, 0.999}) {
      const std::string path = TruncatedCopy(name, fraction);
      absl::StatusOr<StateDict> state = ReadStateDict(path);
      fs::remove(path);
      ASSERT_FALSE(state.ok()) << name << " cut at " << fraction;
      EXPECT_EQ(state.status().code(), absl::StatusCode::kDataLoss)
          << state.status();
      EXPECT_NE(state.status().message().find(path), std::string::npos)
          << state.status();
    }
  }
}

TEST(StateDictReader, OtherFilesAreRejectedClearly) {
  const std::string path =
      (fs::temp_directory_path() /
       ("kolo_not_weights_" + std::to_string(::getpid()) + ".txt"))
          .string();
  std::ofstream(path) << "Image Index,Finding Labels\n";
  absl::StatusOr<StateDict> text = ReadStateDict(path);
  fs::remove(path);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(text.status().message().find("not a torch.save file"),
            std::string::npos)
      << text.status();

  absl::StatusOr<StateDict> missing = ReadStateDict(path);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

// The legacy torch.save format written by hand, so the reader is tested even
// without Python: {"w": tensor([1.5, -2, 0.25])} (one float storage of 3).
using std::string_literals::operator""s;

std::string LegacyHeader() {
  const std::string magic =
      "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."s;
  const std::string protocol = "\x80\x02M\xe9\x03."s;  // 1001
  const std::string sys_info = "\x80\x02}."s;          // {}
  return magic + protocol + sys_info;
}

std::string Bin(const std::string& text) {  // BINUNICODE
  const uint32_t size = static_cast<uint32_t>(text.size());
  return "X" + std::string(reinterpret_cast<const char*>(&size), 4) + text;
}

std::string WriteTemporary(const std::string& tag, const std::string& bytes) {
  const std::string path =
      (fs::temp_directory_path() /
       ("kolo_" + tag + "_" + std::to_string(::getpid()) + ".pth"))
          .string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(StateDictReader, ReadsHandWrittenLegacyFile) {
  const std::string object =
      "\x80\x02}q\x00("s + Bin("w") + "ctorch._utils\n_rebuild_tensor_v2\n((" +
      Bin("storage") + "ctorch\nFloatStorage\n" + Bin("0") + Bin("cpu") +
      "K\x03NtQK\x00K\x03\x85K\x01\x85\x89"s +
      "ccollections\nOrderedDict\n)Rt"
      "Ru.";
  const std::string keys = "\x80\x02]"s + Bin("0") + "a.";
  const int64_t count = 3;
  const float values[3] = {1.5f, -2.0f, 0.25f};
  const std::string bytes =
      LegacyHeader() + object + keys +
      std::string(reinterpret_cast<const char*>(&count), 8) +
      std::string(reinterpret_cast<const char*>(values), sizeof(values));
  const std::string path = WriteTemporary("handwritten", bytes);
  absl::StatusOr<StateDict> state = ReadStateDict(path);
  fs::remove(path);
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->size(), 1u);
  EXPECT_EQ((*state)[0].first, "w");
  const torch::Tensor expected = torch::tensor({1.5f, -2.0f, 0.25f});
  EXPECT_TRUE((*state)[0].second.equal(expected)) << (*state)[0].second;
}

TEST(StateDictReader, CorruptPickleNamesOpcodeAndOffset) {
  const std::string prefix = "\x80\x02}q\x00("s + Bin("w");
  const std::string bytes = LegacyHeader() + prefix + "\xff" + "u.";
  const std::string path = WriteTemporary("corrupt", bytes);
  absl::StatusOr<StateDict> state = ReadStateDict(path);
  fs::remove(path);
  ASSERT_FALSE(state.ok());
  EXPECT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string offset =
      std::to_string(LegacyHeader().size() + prefix.size());
  EXPECT_NE(state.status().message().find("unsupported opcode (pickle opcode "
                                          "unknown, 0xff, at offset " +
                                          offset + ")"),
            std::string::npos)
      << state.status() << " (expected offset " << offset << ")";
}

TEST(StateDictReader, UnsupportedOpcodeIsNamedWithItsOffset) {
  REQUIRE_REFERENCE("unsupported_opcode.pt");
  absl::StatusOr<StateDict> state =
      ReadStateDict(ReferencePath("unsupported_opcode.pt"));
  ASSERT_FALSE(state.ok());
  const std::string message(state.status().message());
  EXPECT_NE(message.find("unsupported opcode (pickle opcode EMPTY_SET, 0x8f, "
                         "at offset "),
            std::string::npos)
      << message;
}

TEST(StateDictReader, PickledModuleIsNotAStateDict) {
  REQUIRE_REFERENCE("whole_module.pt");
  absl::StatusOr<StateDict> state =
      ReadStateDict(ReferencePath("whole_module.pt"));
  ASSERT_FALSE(state.ok());
  EXPECT_NE(state.status().message().find(
                "holds a torch.nn.modules.linear.Linear object, not a "
                "state_dict"),
            std::string::npos)
      << state.status();
}

// ---- hostile files
// --------------------------------------------------------------

// A zip-format torch.save file written with LibTorch's own zip writer.
std::string WriteZip(
    const std::string& tag, const std::string& pickle,
    const std::vector<std::pair<std::string, std::string>>& records) {
  const std::string path =
      (fs::temp_directory_path() /
       ("kolo_" + tag + "_" + std::to_string(::getpid()) + ".pt"))
          .string();
  caffe2::serialize::PyTorchStreamWriter writer(path);
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  for (const auto& [key, bytes] : records) {
    writer.writeRecord("data/" + key, bytes.data(), bytes.size());
  }
  writer.writeEndOfFile();
  return path;
}

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()),
                     values.size() * sizeof(float));
}

void ExpectRefused(const std::string& path, absl::StatusCode code,
                   const std::string& text) {
  absl::StatusOr<StateDict> state = ReadStateDict(path);
  ASSERT_FALSE(state.ok()) << path << " accepted";
  EXPECT_EQ(state.status().code(), code) << state.status();
  EXPECT_NE(state.status().message().find(path), std::string::npos)
      << state.status();
  EXPECT_NE(state.status().message().find(text), std::string::npos)
      << state.status() << " (expected: " << text << ")";
}

TEST(StateDictReader, ReadsHandWrittenZipFileWithASharedStorage) {
  const std::string storage = testing::Storage("0", 3, false);
  const std::string path = WriteZip(
      "zip",
      testing::StateDictPickle({{"w", testing::Tensor(storage, 0, {3}, {1})},
                                {"b", testing::Tensor(storage, 1, {2}, {1})}}),
      {{"0", FloatBytes({1.5f, -2.0f, 0.25f})}});
  absl::StatusOr<StateDict> state = ReadStateDict(path);
  fs::remove(path);
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->size(), 2u);
  EXPECT_TRUE((*state)[0].second.equal(torch::tensor({1.5f, -2.0f, 0.25f})));
  EXPECT_TRUE((*state)[1].second.equal(torch::tensor({-2.0f, 0.25f})));
  EXPECT_EQ((*state)[1].second.data_ptr<float>(),
            (*state)[0].second.data_ptr<float>() + 1);
}

TEST(StateDictReader, DeeplyNestedPickleIsAnErrorNotAStackOverflow) {
  // The file: None in a million nested 1-tuples.
  const std::string path = WriteTemporary(
      "nested", "\x80\x02N"s + std::string(1000000, '\x85') + ".");
  ExpectRefused(path, absl::StatusCode::kInvalidArgument,
                "objects are nested more than 1000 levels deep");
  fs::remove(path);
}

TEST(StateDictReader, SpecialFilesAreRefusedUnread) {
  ExpectRefused("/dev/zero", absl::StatusCode::kInvalidArgument,
                "not a regular file");
  const fs::path dir = fs::temp_directory_path() /
                       ("kolo_weights_dir_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  ExpectRefused(dir.string(), absl::StatusCode::kInvalidArgument,
                "not a regular file");
  // Opening a FIFO for reading once waited for a writer forever.
  const std::string fifo = (dir / "weights.pth").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ExpectRefused(fifo, absl::StatusCode::kInvalidArgument, "not a regular file");
  fs::remove_all(dir);
}

TEST(StateDictReader, LegacyStorageLargerThanTheFileIsRefusedUnallocated) {
  // 2^40 floats (4 TiB) declared, 12 bytes present: the storage was once
  // allocated before its bytes were looked for.
  const std::string storage = testing::Storage("0", int64_t{1} << 40, true);
  const std::string path = WriteTemporary(
      "huge_legacy", testing::LegacyHeader() +
                         testing::StateDictPickle(
                             {{"w", testing::Tensor(storage, 0, {3}, {1})}}) +
                         testing::KeyList({"0"}) +
                         testing::Le(uint64_t{1} << 40, 8) +
                         FloatBytes({1, 2, 3}));
  ExpectRefused(path, absl::StatusCode::kDataLoss,
                "expected 1099511627776 elements of 4 bytes");
  fs::remove(path);
}

TEST(StateDictReader, ZipStorageLargerThanTheFileIsRefusedUnread) {
  const std::string storage = testing::Storage("0", int64_t{1} << 40, false);
  const std::string path = WriteZip(
      "huge_zip",
      testing::StateDictPickle({{"w", testing::Tensor(storage, 0, {3}, {1})}}),
      {{"0", FloatBytes({1, 2, 3})}});
  ExpectRefused(path, absl::StatusCode::kDataLoss,
                "needs 4398046511104 bytes but the file ends");
  fs::remove(path);
}

TEST(StateDictReader, TruncatedOrLyingZipFilesAreErrors) {
  const std::string storage = testing::Storage("0", 3, false);
  const std::string path = WriteZip(
      "cut_zip",
      testing::StateDictPickle({{"w", testing::Tensor(storage, 0, {3}, {1})}}),
      {{"0", FloatBytes({1, 2, 3})}});
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  in.close();
  for (size_t size = 4; size < bytes.size(); size += 7) {
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        << bytes.substr(0, size);
    absl::StatusOr<StateDict> state = ReadStateDict(path);
    ASSERT_FALSE(state.ok()) << "accepted the first " << size << " bytes";
    EXPECT_NE(state.status().message().find(path), std::string::npos)
        << state.status();
  }
  // The central directory entry of data/0 (its name follows a 46-byte
  // header) made to declare 2 GiB: as its uncompressed size, then as its
  // compressed size.
  const std::string name = fs::path(path).stem().string() + "/data/0";
  const size_t entry = bytes.rfind(name) - 46;
  ASSERT_EQ(bytes.substr(entry, 4), "PK\x01\x02");
  for (size_t field : {size_t{24}, size_t{20}}) {
    std::string lying = bytes;
    lying.replace(entry + field, 4, testing::Le(0x7fffffff, 4));
    std::ofstream(path, std::ios::binary | std::ios::trunc) << lying;
    absl::StatusOr<StateDict> state = ReadStateDict(path);
    ASSERT_FALSE(state.ok()) << "accepted a lying size at +" << field;
    EXPECT_EQ(state.status().code(), absl::StatusCode::kDataLoss)
        << state.status();
  }
  fs::remove(path);
}

}  // namespace
}  // namespace chexnet
}  // namespace kolo
