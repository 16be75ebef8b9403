// Starting one process of a launch (a rank, an ssh to a node, mpirun) and owning it until it is reaped.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "launch/environment.h"
#include "launch/unique_fd.h"

namespace zerotrain::detail {

// Where a started process reads stdin from.
enum class StdinMode {
  kInherit,  // the launcher's stdin (a debugger on rank 0 still works)
  kNull,     // /dev/null
  kPipe,     // a pipe whose write end the launcher holds: closing it tells the process to stop (ssh runner)
};

// What to start.
struct ProcessSpec {
  std::string label;                         // how messages name it: "rank 3", "node 1 (worker-1)", "mpirun"
  std::vector<std::string> argv;             // argv[0]: a path, or a name looked up in env's PATH
  Environment env;                           // the complete environment of the process
  std::string log_path;                      // when set: stdout and stderr go to this file (truncated)
  std::vector<int> cpus;                     // when set: the process's CPU affinity
  StdinMode stdin_mode = StdinMode::kInherit;
};

// A started process. It stays in the launcher's process group (so a terminal's Ctrl-C reaches it as under
// DeepSpeed and torchrun) and gets SIGTERM if the launcher dies (PR_SET_PDEATHSIG). Destroying a
// ChildProcess that still runs kills (SIGKILL) and reaps it.
class ChildProcess {
 public:
  // Starts `spec` with signal mask `child_mask`. A LaunchError names the label, program and reason when
  // argv[0] is not found or cannot be executed; nothing is left running then.
  static ChildProcess start(const ProcessSpec& spec, const sigset_t& child_mask);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  ChildProcess(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  const std::string& label() const { return label_; }
  bool running() const { return pid_ > 0 && !exited_; }
  bool has_stdin_pipe() const { return static_cast<bool>(stdin_pipe_); }

  // Reaps the process if it has exited (never blocks); true once it has. wait_status() is valid then.
  bool poll();
  int wait_status() const { return status_; }

  // Sends `signo` if the process still runs.
  void signal(int signo) const;

  // Closes the launcher's end of a StdinMode::kPipe stdin (the process reads EOF).
  void close_stdin() { stdin_pipe_.reset(); }

  // Gives up on a process that does not die (stuck in the kernel): forgets it without waiting.
  void abandon() { pid_ = -1; }

 private:
  ChildProcess(pid_t pid, std::string label, UniqueFd stdin_pipe)
      : pid_(pid), label_(std::move(label)), stdin_pipe_(std::move(stdin_pipe)) {}

  pid_t pid_ = -1;
  std::string label_;
  UniqueFd stdin_pipe_;  // write end, for StdinMode::kPipe
  bool exited_ = false;
  int status_ = 0;
};

// How a wait status reads: "exited with code 3", "was killed by signal 9 (SIGKILL)".
std::string describe_wait_status(int status);

// The code a shell reports for a wait status: the exit code, or 128 + the signal number.
int exit_code_of(int status);

// "SIGTERM" for SIGTERM, "signal 42" for one without a name.
std::string signal_name(int signo);

}  // namespace zerotrain::detail
