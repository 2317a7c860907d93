// chexnet_train: data-parallel CheXNet training with kolo (see trainer.h).
// Exit status: 0 on success, 2 for a bad command line, 1 for any other
// error (printed with this rank's number).
#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>
#include <string>

#include "examples/chexnet/train/train_options.h"
#include "examples/chexnet/train/trainer.h"
#include "kolo/kolo.h"

namespace {

void ReportError(const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "chexnet_train: rank %d: error: %s\n", kolo::Rank(),
               message.c_str());
  std::fflush(stderr);
}

}  // namespace

int main(int argc, char** argv) {
  kolo::chexnet::TrainOptions options;
  int exit_code = 0;
  if (!kolo::chexnet::ParseTrainOptions(argc, argv, &options, &exit_code)) {
    return exit_code;
  }
  try {
    const absl::Status status = kolo::chexnet::RunTraining(options);
    if (status.ok()) return 0;
    ReportError(std::string(status.message()));
  } catch (const c10::Error& e) {
    ReportError(e.what_without_backtrace());
  } catch (const std::exception& e) {
    ReportError(e.what());
  }
  return 1;
}
