// `zerotrain launch --autotuning tune|run`: the launcher's entry to the autotuner ([Note: autotuning] in
// autotuner.h).
#pragma once

#include <string>
#include <vector>

#include "launch/options.h"

namespace zerotrain::detail {

enum class AutotuneMode { kTune, kRun };

// Parses --autotuning's value; a LaunchError names the allowed values.
AutotuneMode parse_autotune_mode(const std::string& value);

// Tunes the launch `opts` (PROGRAM and its arguments, which must name a DeepSpeed config) by running it once per
// experiment as `zerotrain_exe launch LAUNCH_WORDS PROGRAM ARGS'`; with kRun, then launches the best config. Returns
// the exit code: 0 when an optimal config was found (and, with kRun, the training's own exit code).
int autotune(const LaunchOptions& opts, const std::vector<std::string>& launch_words, AutotuneMode mode,
             const std::string& zerotrain_exe);

}  // namespace zerotrain::detail
