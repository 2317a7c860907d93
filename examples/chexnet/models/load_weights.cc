// Matching a saved state_dict to a model by name; see load_weights.h.
#include "examples/chexnet/models/load_weights.h"

#include <spdlog/spdlog.h>
#include <torch/utils.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <regex>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kolo {
namespace chexnet {
namespace {

constexpr char kDataParallelPrefix[] = "module.";
constexpr char kBatchesTracked[] = ".num_batches_tracked";
constexpr size_t kMaxListed = 8;  // keys listed per problem in an error

std::string ShapeString(const torch::Tensor& tensor) {
  return absl::StrCat("[", absl::StrJoin(tensor.sizes(), ", "), "]");
}

// "a, b, c and 5 more"
std::string ListKeys(const std::vector<std::string>& keys) {
  std::vector<std::string> shown(
      keys.begin(), keys.begin() + std::min(keys.size(), kMaxListed));
  std::string text = absl::StrJoin(shown, ", ");
  if (keys.size() > kMaxListed) {
    absl::StrAppend(&text, " and ", keys.size() - kMaxListed, " more");
  }
  return text;
}

}  // namespace

std::string NormalizeStateDictKey(const std::string& key) {
  size_t start = 0;
  while (key.compare(start, std::strlen(kDataParallelPrefix),
                     kDataParallelPrefix) == 0) {
    start += std::strlen(kDataParallelPrefix);
  }
  // torchvision.models.densenet._load_state_dict's pattern.
  static const std::regex kLegacyDenseLayer(
      R"(^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$)");
  std::string normalized = key.substr(start);
  std::smatch match;
  if (std::regex_match(normalized, match, kLegacyDenseLayer)) {
    return match[1].str() + match[2].str();
  }
  return normalized;
}

absl::StatusOr<LoadReport> LoadStateDict(const StateDict& state,
                                         ChexnetModel* model) {
  // Model tensors in state_dict() order: parameters, then buffers.
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (const auto& item : model->named_parameters()) {
    targets.emplace_back(item.key(), item.value());
  }
  for (const auto& item : model->named_buffers()) {
    targets.emplace_back(item.key(), item.value());
  }
  std::set<std::string> model_names;
  for (const auto& target : targets) model_names.insert(target.first);

  // The original CheXNet release wraps torchvision's model in an attribute
  // named after the architecture ("densenet121.features.conv0.weight") and
  // its head in nn.Sequential(Linear, Sigmoid) ("classifier.0.weight").
  const std::string wrapper = model->arch() + ".";
  const std::string sequential_head = model->head_prefix() + ".0.";
  std::map<std::string, const torch::Tensor*> source;
  std::vector<std::string> duplicates;
  for (const auto& [key, tensor] : state) {
    std::string name = NormalizeStateDictKey(key);
    if (absl::StartsWith(name, wrapper)) name.erase(0, wrapper.size());
    if (absl::StartsWith(name, sequential_head) && !model_names.count(name)) {
      name = model->head_prefix() + "." + name.substr(sequential_head.size());
    }
    if (!source.emplace(name, &tensor).second) {
      duplicates.push_back(std::move(name));
    }
  }

  // The head is skipped as a unit when any of its tensors differ in shape.
  const std::string head = model->head_prefix() + ".";
  bool skip_head = false;
  std::vector<std::string> head_shapes;
  for (const auto& [name, target] : targets) {
    auto it = source.find(name);
    if (absl::StartsWith(name, head) && it != source.end()) {
      head_shapes.push_back(absl::StrCat(name, " ", ShapeString(*it->second),
                                         " (model ", ShapeString(target), ")"));
      skip_head = skip_head || !it->second->sizes().equals(target.sizes());
    }
  }

  LoadReport report;
  std::vector<std::string> missing, mismatched, untracked;
  std::vector<std::pair<torch::Tensor, const torch::Tensor*>> copies;
  std::map<std::string, bool> used;
  for (const auto& [name, target] : targets) {
    auto it = source.find(name);
    if (it != source.end()) used[name] = true;
    if (skip_head && absl::StartsWith(name, head)) {
      report.skipped.push_back(name);
    } else if (it == source.end()) {
      if (absl::EndsWith(name, kBatchesTracked)) {
        untracked.push_back(name);
        report.skipped.push_back(name);
      } else {
        missing.push_back(name);
      }
    } else if (!it->second->sizes().equals(target.sizes())) {
      mismatched.push_back(absl::StrCat(name, " (file ",
                                        ShapeString(*it->second), ", model ",
                                        ShapeString(target), ")"));
    } else {
      copies.emplace_back(target, it->second);
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, tensor] : source) {
    if (!used.count(name)) unexpected.push_back(name);
  }

  std::vector<std::string> problems;
  if (!missing.empty()) {
    problems.push_back(
        absl::StrCat(missing.size(), " missing: ", ListKeys(missing)));
  }
  if (!mismatched.empty()) {
    problems.push_back(absl::StrCat(
        mismatched.size(), " shape mismatches: ", ListKeys(mismatched)));
  }
  if (!unexpected.empty()) {
    problems.push_back(absl::StrCat(
        unexpected.size(), " not in the model: ", ListKeys(unexpected)));
  }
  if (!duplicates.empty()) {
    problems.push_back(
        absl::StrCat(duplicates.size(),
                     " duplicated after removing \"module.\" prefixes "
                     "and legacy names: ",
                     ListKeys(duplicates)));
  }
  if (!problems.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights do not fit ", model->arch(), ": ",
                     absl::StrJoin(problems, "; ")));
  }

  torch::NoGradGuard no_grad;
  for (auto& [target, tensor] : copies) target.copy_(*tensor);
  report.loaded = static_cast<int64_t>(copies.size());
  if (skip_head) {
    report.notes.push_back(absl::StrCat(
        "classifier head not loaded (its shape differs; it keeps its "
        "initialisation): ",
        absl::StrJoin(head_shapes, ", ")));
  }
  if (!untracked.empty()) {
    report.notes.push_back(absl::StrCat(
        untracked.size(),
        " batch-norm num_batches_tracked buffers are absent from the file "
        "(saved before PyTorch 0.4.1) and keep their value"));
  }
  return report;
}

absl::StatusOr<LoadReport> LoadWeights(const std::string& path,
                                       ChexnetModel* model) {
  absl::StatusOr<StateDict> state = ReadStateDict(path);
  if (!state.ok()) return state.status();
  absl::StatusOr<LoadReport> report = LoadStateDict(*state, model);
  if (!report.ok()) {
    return absl::Status(report.status().code(),
                        absl::StrCat(path, ": ", report.status().message()));
  }
  spdlog::info("loaded {} tensors from {} into {}", report->loaded, path,
               model->arch());
  for (const std::string& note : report->notes) {
    spdlog::info("{}: {}", path, note);
  }
  return report;
}

}  // namespace chexnet
}  // namespace kolo
