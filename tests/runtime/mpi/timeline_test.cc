// Writes timelines for check_timeline.py: DIR/started.json (from
// KOLO_TIMELINE, stopped through the API), DIR/api.json (started through
// the API with cycle markers) and, with "kill", DIR/killed.json, cut short
// because rank 0 is SIGKILLed while it is being written.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kolo/kolo.h"

namespace {

// Small tensors that fuse (the shared-memory plane's direct allreduce), one
// of 1 MiB (its reduce-scatter + allgather rounds), and a broadcast (slot
// rounds).
bool Step(int step) {
  std::vector<std::vector<float>> tensors(6, std::vector<float>(256, 1.0f));
  std::vector<kolo::Handle> handles;
  for (size_t i = 0; i < tensors.size(); ++i) {
    kolo::Tensor t{tensors[i].data(), kolo::DataType::kFloat32, {256}};
    auto h = kolo::AllreduceAsync(absl::StrCat("layer", i, ".grad"), t, t);
    if (!h.ok()) return false;
    handles.push_back(*h);
  }
  std::vector<float> large(1 << 18, 1.0f);
  kolo::Tensor l{large.data(), kolo::DataType::kFloat32, {1 << 18}};
  auto hl = kolo::AllreduceAsync("large.grad", l, l);
  if (!hl.ok()) return false;
  handles.push_back(*hl);
  std::vector<double> big(1 << 16, 2.0);
  kolo::Tensor b{big.data(), kolo::DataType::kFloat64, {1 << 16}};
  auto hb = kolo::BroadcastAsync(absl::StrCat("weights.", step % 2), b, 0);
  if (!hb.ok()) return false;
  handles.push_back(*hb);
  for (auto& h : handles) {
    if (!h.Wait().ok()) return false;
  }
  return true;
}

// Waits (at most 10 s) until the timeline writer thread has put every event
// check_timeline.py looks for into `path`: the test is about what survives a
// SIGKILL on disk, not about how soon a loaded machine runs the writer.
void WaitForWrittenEvents(const std::string& path) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    const std::string s = text.str();
    bool all = true;
    for (const char* needed :
         {"MEMCPY_OUT_FUSION_BUFFER", "CYCLE", "layer0.grad"}) {
      all = all && s.find(needed) != std::string::npos;
    }
    // A broadcast's backend span (e.g. SHM_BROADCAST_ROUNDS), not only its
    // negotiation (NEGOTIATE_BROADCAST).
    bool backend_broadcast = false;
    for (size_t at = s.find("_BROADCAST"); at != std::string::npos;
         at = s.find("_BROADCAST", at + 1)) {
      backend_broadcast = backend_broadcast ||
                          at < 9 || s.compare(at - 9, 9, "NEGOTIATE") != 0;
    }
    if (all && backend_broadcast) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  const bool kill = argc > 2 && std::string(argv[2]) == "kill";
  if (!kolo::Init().ok()) return 2;
  for (int step = 0; step < 3; ++step) {
    if (!Step(step)) return 1;
  }
  if (!kolo::StopTimeline().ok()) return 1;
  if (!kolo::StartTimeline(dir + (kill ? "/killed.json" : "/api.json"), true)
           .ok()) {
    return 1;
  }
  for (int step = 0; step < 3; ++step) {
    if (!Step(step)) return 1;
  }
  if (kill && kolo::Rank() == 0) {
    WaitForWrittenEvents(dir + "/killed.json");
    std::fflush(stdout);
    raise(SIGKILL);
  }
  if (!kolo::StopTimeline().ok()) return 1;
  return kolo::Shutdown().ok() ? 0 : 1;
}
