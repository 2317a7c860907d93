// Gathers the LaunchEnvironment of the running process: paths of mpirun,
// srun and kolorun, root or not, usable cores, host name, interface
// addresses and the environment. All the I/O the launch planner needs.
#ifndef KOLO_LAUNCHER_MACHINE_FACTS_H_
#define KOLO_LAUNCHER_MACHINE_FACTS_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "launch_plan.h"

namespace kolo {
namespace launcher {

LaunchEnvironment DetectLaunchEnvironment();

// Physical cores among the CPUs this process may use, counted the way Open
// MPI counts default slots (hyperthreads of one core count once).
// `cpu_cores` holds one (package id, core id) pair per usable CPU.
int CountPhysicalCores(const std::vector<std::pair<int, int>>& cpu_cores);

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_MACHINE_FACTS_H_
