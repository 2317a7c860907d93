// chexnet_train: data-parallel CheXNet training with kolo (see trainer.h).
// Exit status: 0 on success, 2 for a bad command line, 75 when stopped on
// kolorun's elastic stop request (after writing a step checkpoint), 1 for
// any other error (printed with this rank's number).
#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>
#include <string>

#include "examples/chexnet/train/train_options.h"
#include "examples/chexnet/train/trainer.h"
#include "kolo/elastic.h"
#include "kolo/kolo.h"
#include "kolo/memory.h"

namespace {

void ReportError(const std::string& message) {
  std::fflush(stdout);
  // Rank() is -1 when the run failed before kolo started (e.g. --device).
  const int rank = kolo::Rank();
  if (rank >= 0) {
    std::fprintf(stderr, "chexnet_train: rank %d: error: %s\n", rank,
                 message.c_str());
  } else {
    std::fprintf(stderr, "chexnet_train: error: %s\n", message.c_str());
  }
  std::fflush(stderr);
}

}  // namespace

// Whatever escapes (LibTorch throws, memory runs out) ends as a message and
// exit status 1, never as std::terminate's abort.
int main(int argc, char** argv) {
  // Training frees and reallocates its activations every step; see
  // kolo/memory.h (a no-op under kolorun, which already chose).
  kolo::TuneMemoryAllocator();
  try {
    kolo::chexnet::TrainOptions options;
    int exit_code = 0;
    if (!kolo::chexnet::ParseTrainOptions(argc, argv, &options, &exit_code)) {
      return exit_code;
    }
    const absl::StatusOr<kolo::chexnet::TrainingOutcome> outcome =
        kolo::chexnet::RunTraining(options);
    if (outcome.ok()) {
      return *outcome == kolo::chexnet::TrainingOutcome::kStopped
                 ? kolo::torch::elastic::kStoppedExitCode
                 : 0;
    }
    ReportError(std::string(outcome.status().message()));
  } catch (const c10::Error& e) {
    ReportError(e.what_without_backtrace());
  } catch (const std::exception& e) {
    ReportError(e.what());
  } catch (...) {
    ReportError("unknown exception");
  }
  return 1;
}
