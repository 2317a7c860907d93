// Reads kolo's environment parameters (docs/design.md, "Environment parameters").
// Every variable is read once, at Init(); a malformed value is an
// InvalidArgument error that names the variable and the value.
#ifndef KOLO_RUNTIME_CORE_CONFIG_H_
#define KOLO_RUNTIME_CORE_CONFIG_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "kolo/options.h"

namespace kolo {

// Looks up a variable; returns nullptr when it is unset.
using EnvironmentLookup = std::function<const char*(const char* name)>;

// Options from the given lookup over the defaults in kolo/options.h.
StatusOr<Options> OptionsFromLookup(const EnvironmentLookup& lookup);

// The settings every rank of a job must share, because a difference breaks
// the protocol (buffer sizes, cache slots, which data plane or transport
// runs, the wire format) or the failure model (when a silent peer counts as
// dead). Plain bytes, exchanged as they are at init.
struct AgreedSettings {
  char version[16];  // kolo's version and wire-protocol revision
  int64_t fusion_threshold_bytes;
  int64_t shm_slot_bytes;
  int64_t shm_single_copy_bytes;
  int64_t cache_capacity;
  double peer_timeout_seconds;
  int32_t cpu_operations;
  int32_t gpu_operations;
  int32_t ring_transport;
  int32_t nccl_built;
  int32_t fast_lane;
  int32_t autotune;
};

AgreedSettings AgreedSettingsOf(const Options& options, bool nccl_built);

// InvalidArgument naming the first setting on which some rank differs from
// rank 0: the variable, both ranks and both values. all[r] is rank r's.
Status CheckAgreement(const std::vector<AgreedSettings>& all);

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_CONFIG_H_
