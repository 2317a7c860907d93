// Implementation of the Chrome-trace timeline.
#include "runtime/common/timeline.h"

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace kolo {
namespace {

constexpr int kPid = 0;

std::string Quoted(const std::string& text) {
  return nlohmann::json(text).dump();
}

}  // namespace

int64_t TimelineNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Status Timeline::Start(const std::string& path, bool mark_cycles) {
  Stop();
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot write the timeline to '", path, "': ", std::strerror(errno)));
  }
  std::fputs("[\n", file);
  {
    MutexLock lock(&mu_);
    file_ = file;
    stopping_ = false;
    rows_.clear();
    agreed_ns_.clear();
    pending_.push_back(
        R"({"name": "process_name", "ph": "M", "pid": 0, "args": {"name": "kolo rank 0"}},)");
  }
  mark_cycles_ = mark_cycles;
  origin_ns_ = TimelineNowNs();
  writer_ = std::thread([this] { WriterLoop(); });
  active_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

void Timeline::Stop() {
  if (!writer_.joinable()) return;
  active_.store(false, std::memory_order_release);
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  wake_.SignalAll();
  writer_.join();
  MutexLock lock(&mu_);
  // A last event without a trailing comma closes the array.
  std::fputs(
      R"({"name": "timeline end", "ph": "i", "s": "g", "pid": 0, "ts": )",
      file_);
  std::fprintf(file_, "%lld}\n]\n",
               static_cast<long long>(Micros(TimelineNowNs())));
  std::fclose(file_);
  file_ = nullptr;
}

void Timeline::WriterLoop() {
  std::vector<std::string> batch;
  for (;;) {
    {
      MutexLock lock(&mu_);
      while (pending_.empty() && !stopping_) wake_.Wait(&mu_);
      batch.swap(pending_);
      if (batch.empty() && stopping_) return;
    }
    std::FILE* file;
    {
      MutexLock lock(&mu_);
      file = file_;
    }
    for (const std::string& line : batch) {
      std::fputs(line.c_str(), file);
      std::fputc('\n', file);
    }
    std::fflush(file);  // a killed process keeps what was written
    batch.clear();
  }
}

void Timeline::Emit(std::string line) {
  pending_.push_back(std::move(line));
  wake_.SignalAll();
}

int Timeline::RowOf(const std::string& tensor) {
  auto [it, added] = rows_.emplace(tensor, static_cast<int>(rows_.size()) + 1);
  if (added) {
    Emit(absl::StrCat(R"({"name": "thread_name", "ph": "M", "pid": )", kPid,
                      R"(, "tid": )", it->second, R"(, "args": {"name": )",
                      Quoted(tensor), "}},"));
  }
  return it->second;
}

void Timeline::NegotiateStart(const std::string& tensor, const char* op) {
  if (!active()) return;
  const int64_t now = Micros(TimelineNowNs());
  MutexLock lock(&mu_);
  const int row = RowOf(tensor);
  std::string name = absl::StrCat("NEGOTIATE_", op);
  for (char& c : name) c = static_cast<char>(std::toupper(c));
  Emit(absl::StrCat(R"({"name": ")", name, R"(", "ph": "B", "pid": )", kPid,
                    R"(, "tid": )", row, R"(, "ts": )", now, "},"));
}

void Timeline::NegotiateRankReady(const std::string& tensor, int rank) {
  if (!active()) return;
  const int64_t now = Micros(TimelineNowNs());
  MutexLock lock(&mu_);
  Emit(absl::StrCat(R"({"name": ")", rank, R"(", "ph": "i", "s": "t", "pid": )",
                    kPid, R"(, "tid": )", RowOf(tensor), R"(, "ts": )", now,
                    R"(, "args": {"rank": )", rank, "}},"));
}

void Timeline::NegotiateEnd(const std::string& tensor) {
  if (!active()) return;
  const int64_t now_ns = TimelineNowNs();
  MutexLock lock(&mu_);
  agreed_ns_[tensor] = now_ns;
  Emit(absl::StrCat(R"({"ph": "E", "pid": )", kPid, R"(, "tid": )",
                    RowOf(tensor), R"(, "ts": )", Micros(now_ns), "},"));
}

void Timeline::Span(const std::string& tensor, const std::string& activity,
                    int64_t start_ns, int64_t end_ns) {
  if (!active()) return;
  MutexLock lock(&mu_);
  Emit(absl::StrCat(R"({"name": )", Quoted(activity), R"(, "ph": "X", "pid": )",
                    kPid, R"(, "tid": )", RowOf(tensor), R"(, "ts": )",
                    Micros(start_ns), R"(, "dur": )",
                    std::max<int64_t>((end_ns - start_ns) / 1000, 0), "},"));
}

void Timeline::Queued(const std::string& tensor, int64_t start_ns) {
  if (!active()) return;
  int64_t agreed = start_ns;
  {
    MutexLock lock(&mu_);
    auto it = agreed_ns_.find(tensor);
    if (it == agreed_ns_.end()) return;
    agreed = it->second;
    agreed_ns_.erase(it);
  }
  Span(tensor, "QUEUE", agreed, start_ns);
}

void Timeline::Cycle() {
  if (!active() || !mark_cycles_) return;
  const int64_t now = Micros(TimelineNowNs());
  MutexLock lock(&mu_);
  Emit(absl::StrCat(R"({"name": "CYCLE", "ph": "i", "s": "p", "pid": )", kPid,
                    R"(, "ts": )", now, "},"));
}

}  // namespace kolo
