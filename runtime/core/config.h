// Reads kolo's environment parameters (DESIGN.md, "Environment parameters").
// Every variable is read once, at Init(); a malformed value is an
// InvalidArgument error that names the variable and the value.
#ifndef KOLO_RUNTIME_CORE_CONFIG_H_
#define KOLO_RUNTIME_CORE_CONFIG_H_

#include <functional>

#include "kolo/options.h"

namespace kolo {

// Looks up a variable; returns nullptr when it is unset.
using EnvironmentLookup = std::function<const char*(const char* name)>;

// Options from the given lookup over the defaults in kolo/options.h.
StatusOr<Options> OptionsFromLookup(const EnvironmentLookup& lookup);

}  // namespace kolo

#endif  // KOLO_RUNTIME_CORE_CONFIG_H_
