// Machine and process facts for kolorun (Linux).
#include "machine_facts.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "process.h"

namespace kolo {
namespace launcher {
namespace {

int ReadIntFile(const std::string& path, int fallback) {
  std::ifstream in(path);
  int value = fallback;
  if (!(in >> value)) return fallback;
  return value;
}

int UsableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) {
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? static_cast<int>(online) : 1;
  }
  std::vector<std::pair<int, int>> cpu_cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    const std::string topology =
        absl::StrCat("/sys/devices/system/cpu/cpu", cpu, "/topology/");
    // Without topology files each CPU counts as its own core.
    cpu_cores.emplace_back(
        ReadIntFile(topology + "physical_package_id", -1 - cpu),
        ReadIntFile(topology + "core_id", cpu));
  }
  return CountPhysicalCores(cpu_cores);
}

std::vector<std::string> InterfaceAddresses() {
  std::vector<std::string> addresses;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return addresses;
  for (ifaddrs* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
    if (ifa->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (ifa->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET,
                &reinterpret_cast<sockaddr_in*>(ifa->ifa_addr)->sin_addr, text,
                sizeof(text));
    } else if (ifa->ifa_addr->sa_family == AF_INET6) {
      inet_ntop(AF_INET6,
                &reinterpret_cast<sockaddr_in6*>(ifa->ifa_addr)->sin6_addr,
                text, sizeof(text));
    } else {
      continue;
    }
    addresses.emplace_back(text);
  }
  freeifaddrs(list);
  return addresses;
}

std::string SelfPath() {
  char path[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) return "kolorun";
  return std::string(path, static_cast<size_t>(n));
}

// kolo's build names its MPI (CMake's KOLO_MPI). Debian installs MPICH's
// launcher as mpiexec.hydra/mpiexec.mpich beside Open MPI's, while plain
// `mpirun` follows the alternatives system (Open MPI when both are there),
// so an MPICH build looks for its own names first.
#if defined(KOLO_LAUNCHER_MPI_MPICH)
constexpr Launcher kBuiltMpi = Launcher::kHydra;
constexpr const char* kMpirunNames[] = {"mpiexec.hydra", "mpiexec.mpich",
                                        "mpirun"};
#else
constexpr Launcher kBuiltMpi = Launcher::kOpenMpi;
constexpr const char* kMpirunNames[] = {"mpirun"};
#endif

}  // namespace

int CountPhysicalCores(const std::vector<std::pair<int, int>>& cpu_cores) {
  std::set<std::pair<int, int>> distinct(cpu_cores.begin(), cpu_cores.end());
  return distinct.empty() ? 1 : static_cast<int>(distinct.size());
}

LaunchEnvironment DetectLaunchEnvironment() {
  LaunchEnvironment facts;
  facts.env = CurrentEnvironment();
  auto path = facts.env.find("PATH");
  const std::string search_path =
      path != facts.env.end() ? path->second : "/usr/local/bin:/usr/bin:/bin";
  facts.built_mpi = kBuiltMpi;
  for (const char* name : kMpirunNames) {
    facts.mpirun_path = FindOnPath(name, search_path);
    if (!facts.mpirun_path.empty()) break;
  }
  facts.srun_path = FindOnPath("srun", search_path);
  facts.kolorun_path = SelfPath();
  facts.is_root = geteuid() == 0;
  facts.local_cores = UsableCores();
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) == 0) facts.hostname = name;
  facts.local_addresses = InterfaceAddresses();
  return facts;
}

}  // namespace launcher
}  // namespace kolo
