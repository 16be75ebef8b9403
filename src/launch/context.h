// The facts about the machine and process a launch depends on, gathered once so that planning is a pure
// function of (flags, context) and tests can supply their own.
#pragma once

#include <string>

#include "launch/environment.h"

namespace zerotrain::detail {

struct LaunchContext {
  Environment env;          // the launcher's environment
  std::string cwd;          // the working directory (every node runs in the same one)
  std::string home;         // $HOME, where ~/.deepspeed_env is read
  std::string self_exe;     // this zerotrain binary: other nodes run it under the same path
  std::string scratch_dir;  // files of this launch (the OpenMPI hostfile): $TMPDIR/zerotrain-launch-<pid>
  std::string timestamp;    // local start time, %Y%m%d%H%M%S (per-rank log names, as DeepSpeed)
  int pid = 0;
  int gpu_count = 0;        // GPUs of this machine (count_local_gpus)
  int cpu_count = 0;        // cores this process may run on (allowed_cpus): OMP_NUM_THREADS per rank
  bool is_root = false;

  // The context of this process.
  static LaunchContext current();
};

}  // namespace zerotrain::detail
