// A one-line progress bar for rank 0's epochs on stderr:
//   epoch 3/8 [=========>          ] 45/100  812.3 img/s  loss 0.2314  ETA 0:42
// redrawn in place (carriage return) at most every 200 ms. Disabled bars
// print nothing. Not thread-safe.
#ifndef KOLO_EXAMPLES_CHEXNET_TRAIN_PROGRESS_BAR_H_
#define KOLO_EXAMPLES_CHEXNET_TRAIN_PROGRESS_BAR_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace kolo::chexnet {

class ProgressBar {
 public:
  ProgressBar(bool enabled, std::FILE* out = stderr)
      : enabled_(enabled), out_(out) {}

  // Starts a bar over `total_steps` steps of epoch `epoch` (from 0).
  void Start(int64_t epoch, int64_t epochs, int64_t total_steps);
  // After `steps_done` steps: `images_done` images over all ranks, running
  // mean loss.
  void Update(int64_t steps_done, int64_t images_done, double loss);
  // Draws the final state and ends the line.
  void Finish();

  // The bar's text for the given state (no carriage return), for tests.
  static std::string Render(int64_t epoch, int64_t epochs, int64_t steps_done,
                            int64_t total_steps, double images_per_second,
                            double loss, double eta_seconds);

 private:
  void Draw();

  bool enabled_;
  std::FILE* out_;
  int64_t epoch_ = 0;
  int64_t epochs_ = 0;
  int64_t total_steps_ = 0;
  int64_t steps_done_ = 0;
  int64_t images_done_ = 0;
  double loss_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  bool drawn_ = false;
};

}  // namespace kolo::chexnet

#endif  // KOLO_EXAMPLES_CHEXNET_TRAIN_PROGRESS_BAR_H_
