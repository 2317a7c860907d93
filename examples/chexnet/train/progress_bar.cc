// Rank 0's progress bar.
#include "examples/chexnet/train/progress_bar.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace kolo::chexnet {
namespace {

constexpr int kBarWidth = 24;

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) {
    return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  }
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

}  // namespace

std::string ProgressBar::Render(int64_t epoch, int64_t epochs,
                                int64_t steps_done, int64_t total_steps,
                                double images_per_second, double loss,
                                double eta_seconds) {
  const double fraction =
      total_steps > 0
          ? std::clamp(static_cast<double>(steps_done) / total_steps, 0.0, 1.0)
          : 1.0;
  const int filled = static_cast<int>(fraction * kBarWidth);
  std::string bar(kBarWidth, ' ');
  for (int i = 0; i < filled; ++i) bar[i] = '=';
  if (filled < kBarWidth) bar[filled] = '>';
  return absl::StrFormat(
      "epoch %d/%d [%s] %d/%d  %.1f img/s  loss %.4f  ETA %s", epoch + 1,
      epochs, bar, steps_done, total_steps, images_per_second, loss,
      FormatDuration(eta_seconds));
}

void ProgressBar::Start(int64_t epoch, int64_t epochs, int64_t total_steps) {
  epoch_ = epoch;
  epochs_ = epochs;
  total_steps_ = total_steps;
  steps_done_ = 0;
  images_done_ = 0;
  loss_ = 0;
  start_ = std::chrono::steady_clock::now();
  drawn_ = false;
}

void ProgressBar::Update(int64_t steps_done, int64_t images_done,
                         double loss) {
  steps_done_ = steps_done;
  images_done_ = images_done;
  loss_ = loss;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(200)) return;
  Draw();
}

void ProgressBar::Finish() {
  if (!enabled_) return;
  Draw();
  std::fputc('\n', out_);
  std::fflush(out_);
}

void ProgressBar::Draw() {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? images_done_ / elapsed : 0.0;
  const double eta =
      steps_done_ > 0
          ? elapsed / steps_done_ * (total_steps_ - steps_done_)
          : std::nan("");
  std::fprintf(out_, "\r%s\033[K",
               Render(epoch_, epochs_, steps_done_, total_steps_, rate, loss_,
                      eta)
                   .c_str());
  std::fflush(out_);
  last_draw_ = now;
  drawn_ = true;
}

}  // namespace kolo::chexnet
