// The command line each rank runs, and the `zerotrain launch` flags that reproduce it on another node.
#pragma once

#include <string>
#include <vector>

#include "launch/options.h"

namespace zerotrain::detail {

// Whether PROGRAM runs under python3: with --module, or when it ends in ".py" and --no_python is not given.
// (DeepSpeed always prepends python unless --no_python; zerotrain executes anything else directly.)
bool runs_under_python(const LaunchOptions& opts);

// argv of local rank `local_rank`: [python3 -u [-m]] PROGRAM [--local_rank=N] ARGS... (python3 is looked up on
// PATH when the rank starts). --module with --no_python is a LaunchError, as in DeepSpeed.
std::vector<std::string> rank_command(const LaunchOptions& opts, int local_rank);

// The flags that make a `zerotrain launch` on another node start ranks as this one would: --no_python,
// --module, --no_local_rank, --enable_each_rank_log, --bind_cores_to_rank, --bind_core_list,
// --save_pid_as (when --save_pid; the launcher's pid `launcher_pid`), --terminate_timeout, --quiet.
std::vector<std::string> forwarded_rank_flags(const LaunchOptions& opts, int launcher_pid);

}  // namespace zerotrain::detail
