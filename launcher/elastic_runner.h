// kolorun's elastic loop (see elastic.h for the policy and the contract
// with the program): launch, watch, relaunch.
#ifndef KOLO_LAUNCHER_ELASTIC_RUNNER_H_
#define KOLO_LAUNCHER_ELASTIC_RUNNER_H_

#include "launch_options.h"
#include "launch_plan.h"

namespace kolo {
namespace launcher {

// Runs the job of `options` (options.elastic set) in launches until it
// finishes, gives up or kolorun is stopped, logging every decision to
// stderr with a time stamp. Returns kolorun's exit status: 0 when the job
// finished, kElasticGaveUpExitCode, kElasticTooFewSlotsExitCode, 2 when the
// first discovery fails or a launch cannot be planned, 128+N when kolorun
// was stopped by signal N.
int RunElasticJob(const LaunchOptions& options, Launcher launcher,
                  const LaunchEnvironment& env);

}  // namespace launcher
}  // namespace kolo

#endif  // KOLO_LAUNCHER_ELASTIC_RUNNER_H_
