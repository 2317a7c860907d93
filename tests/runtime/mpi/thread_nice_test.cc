// KOLO_THREAD_NICE: after Init, kolo's background thread runs at the nice
// value asked for where the process may lower it (root here),
// and at any higher value everywhere; the application's thread is left as
// it was; collectives still run. Exit code 0 when every check holds.
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kolo/kolo.h"

namespace {

// The nice value of every thread of this process but the calling one.
std::vector<int> OtherThreadsNice() {
  std::vector<int> values;
  const std::string self = std::to_string(gettid());
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return values;
  while (dirent* entry = readdir(dir)) {
    const std::string tid = entry->d_name;
    if (tid == "." || tid == ".." || tid == self) continue;
    std::ifstream file("/proc/self/task/" + tid + "/stat");
    std::string stat((std::istreambuf_iterator<char>(file)),
                     std::istreambuf_iterator<char>());
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    // Fields after the command: state is field 3, nice field 19.
    std::istringstream rest(stat.substr(paren + 2));
    std::string field;
    for (int i = 3; i <= 19 && rest >> field; ++i) {
      if (i == 19) values.push_back(std::atoi(field.c_str()));
    }
  }
  closedir(dir);
  return values;
}

bool Has(const std::vector<int>& values, int value) {
  for (int v : values) {
    if (v == value) return true;
  }
  return false;
}

}  // namespace

int main() {
  const char* env = std::getenv("KOLO_THREAD_NICE");
  if (env == nullptr) return 2;  // the test sets it
  const int target = std::atoi(env);
  const int own_before = getpriority(PRIO_PROCESS, 0);
  if (!kolo::Init().ok()) return 2;
  // Only a process with the right (root, CAP_SYS_NICE, RLIMIT_NICE) lowers
  // a nice value; here that is root.
  const bool permitted = target >= own_before || geteuid() == 0;
  std::vector<int> values;
  bool found = false;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!found && std::chrono::steady_clock::now() < deadline) {
    values = OtherThreadsNice();
    found = Has(values, target);
    if (!found) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int failures = 0;
  if (found != permitted) {
    std::fprintf(stderr,
                 "FAIL rank %d: expected %s thread at nice %d (permitted: %d);"
                 " threads at:",
                 kolo::Rank(), permitted ? "a" : "no", target, permitted);
    for (int v : values) std::fprintf(stderr, " %d", v);
    std::fprintf(stderr, "\n");
    ++failures;
  }
  if (getpriority(PRIO_PROCESS, 0) != own_before) {
    std::fprintf(stderr, "FAIL rank %d: the application's thread moved\n",
                 kolo::Rank());
    ++failures;
  }
  std::vector<float> data(1024, 1.0f);
  kolo::Tensor t{data.data(), kolo::DataType::kFloat32, {1024}};
  if (!kolo::Allreduce("nice.check", t, t, {kolo::ReduceOp::kSum}).ok() ||
      data[0] != static_cast<float>(kolo::Size())) {
    std::fprintf(stderr, "FAIL rank %d: allreduce\n", kolo::Rank());
    ++failures;
  }
  if (!kolo::Shutdown().ok()) ++failures;
  if (failures == 0) std::printf("rank ok: thread nice %d\n", target);
  return failures == 0 ? 0 : 1;
}
