// chexnet_train's checkpoint files (see checkpoint_files.h).
#include "examples/chexnet/train/checkpoint_files.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "examples/chexnet/train/checkpoint.h"

namespace kolo::chexnet {

std::string LastCheckpointPath(const std::string& out_dir) {
  return (std::filesystem::path(out_dir) / "last.pt").string();
}

std::string BestCheckpointPath(const std::string& out_dir) {
  return (std::filesystem::path(out_dir) / "best.pt").string();
}

std::string StepCheckpointPath(const std::string& out_dir,
                               int64_t global_step) {
  return (std::filesystem::path(out_dir) / "checkpoints" /
          absl::StrFormat("step-%010d.pt", global_step))
      .string();
}

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

void RemoveOldStepCheckpoints(const std::string& out_dir) {
  std::vector<std::pair<int64_t, std::string>> steps = StepCheckpoints(out_dir);
  for (size_t i = 0; i + 2 < steps.size(); ++i) {
    std::error_code ignored;
    std::filesystem::remove(steps[i].second, ignored);
  }
}

std::vector<std::string> AutoResumeCandidates(const std::string& out_dir) {
  struct Candidate {
    int64_t global_step;
    bool is_last;
    std::string path;
  };
  std::vector<std::string> paths;
  const std::string last = LastCheckpointPath(out_dir);
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

}  // namespace kolo::chexnet
