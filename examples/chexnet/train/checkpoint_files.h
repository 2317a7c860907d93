// The checkpoint files of a chexnet_train run in its output directory OUT:
// OUT/last.pt (after every epoch), OUT/best.pt (the lowest validation loss)
// and OUT/checkpoints/step-<global step>.pt (mid-epoch, the newest two
// kept); and which of them --resume auto reads. The format is checkpoint.h's.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_CHECKPOINT_FILES_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_CHECKPOINT_FILES_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kolo::chexnet {

std::string LastCheckpointPath(const std::string& out_dir);
std::string BestCheckpointPath(const std::string& out_dir);

// OUT/checkpoints/step-<global step>.pt, zero-padded so that names sort by
// step.
std::string StepCheckpointPath(const std::string& out_dir, int64_t global_step);

// The step checkpoints in OUT/checkpoints, by global step.
std::vector<std::pair<int64_t, std::string>> StepCheckpoints(
    const std::string& out_dir);

// Removes all but the newest two step checkpoints (call it once a new one is
// complete).
void RemoveOldStepCheckpoints(const std::string& out_dir);

// --resume auto: OUT/last.pt and the step checkpoints whose meta reads,
// newest (by global step) first; at equal steps last.pt first, since it
// also holds that epoch's evaluation. Unreadable files are named and
// skipped.
std::vector<std::string> AutoResumeCandidates(const std::string& out_dir);

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_CHECKPOINT_FILES_H_
