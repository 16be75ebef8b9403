// Runs the processes of a launch to the end: starts them, forwards signals, and stops all when one fails.
//
// [Note: stopping a launch]
// A launch ends when every process has exited. While all succeed, the launcher just waits. The first process
// that exits non-zero (or is killed) makes the launcher stop the others: processes with a StdinMode::kPipe
// stdin (ssh to a node) have that pipe closed, which the node's `zerotrain launch --no_ssh` reads as "stop";
// the others get SIGTERM. SIGINT, SIGTERM or SIGHUP sent to the launcher stops the launch the same way, but
// forwards the signal received instead of SIGTERM. Processes still running `terminate_timeout_s` later get
// SIGKILL; a second signal to the launcher sends SIGKILL at once. Processes that survive SIGKILL for 10 s
// (stuck in the kernel) are reported and abandoned, so the launcher itself never hangs. Last, descendants
// the ranks left behind (reparented to the launcher, a child subreaper) get SIGTERM, then SIGKILL.
#pragma once

#include <string>
#include <vector>

#include "launch/environment.h"
#include "launch/process.h"

namespace zerotrain::detail {

struct SupervisorOptions {
  double terminate_timeout_s = 30;     // SIGTERM -> SIGKILL grace (DeepSpeed's launch.py waits 30 s)
  bool stop_on_stdin_eof = false;      // the node agent of the ssh runner: EOF on stdin means "stop"
  std::vector<std::string> stop_command;  // run once when stopping (pdsh: kill the node agents); may be empty
  Environment stop_command_env;
};

// Runs `processes` as described in [Note: stopping a launch] and returns the launch's exit code: 0 when all
// exit 0; else the exit code of the first process that failed (128 + signal number when it was killed); else,
// when the launcher was stopped by a signal (or stdin EOF, read as SIGTERM), 128 + that signal's number.
// Messages ("rank 2 (pid 4242) exited with code 3; stopping the other 3 processes") go to stderr. A process
// that cannot be started is a LaunchError, thrown after the ones already started have been stopped.
int supervise(const std::vector<ProcessSpec>& processes, const SupervisorOptions& options);

}  // namespace zerotrain::detail
