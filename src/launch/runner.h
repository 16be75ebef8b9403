// Runners: how the processes of a launch are started. A runner turns the job (flags, world, rendezvous)
// into a plan: the processes to start and supervise, files to write first, and a command that stops
// remote work. `local` starts this node's ranks; `ssh` and `pdsh` start `zerotrain launch --no_ssh` on
// every node (which then runs its local ranks); `openmpi`, `mpich` and `slurm` start every rank through
// mpirun or srun, each rank as `zerotrain launch --from_launcher=...`, which sets RANK etc. from the MPI or
// Slurm variables and execs the program.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "launch/context.h"
#include "launch/environment.h"
#include "launch/options.h"
#include "launch/process.h"
#include "launch/resources.h"
#include "launch/supervisor.h"

namespace zerotrain::detail {

// What a runner plans from.
struct Job {
  const LaunchOptions& opts;
  const LaunchContext& ctx;
  const WorldInfo& world;
  Rendezvous rdzv;
  Environment exports;            // variables every rank on every node gets (multi-node runners)
  int node_rank = 0;              // the local runner: which node of `world` this machine is
  bool world_from_hostfile = true;  // false: slurm without a hostfile (node names are placeholders)
};

struct FileToWrite {
  std::string path;
  std::string text;
};

// Everything needed to run a launch.
struct LaunchPlan {
  std::string runner;                  // "local", "ssh", "pdsh", "openmpi", "mpich", "slurm"; empty: exec a rank
  WorldInfo world;
  Rendezvous rdzv;
  int node_rank = 0;
  std::vector<ProcessSpec> processes;
  SupervisorOptions supervisor;
  std::vector<FileToWrite> files;      // written before the processes start, removed after
  std::string scratch_dir;             // created (mode 0700) for `files` when set, removed after
  std::string log_dir;                 // created (with parents) before the processes start
  std::string pid_file;                // --save_pid: holds this process's pid while the launch runs
  std::vector<std::string> notes;      // printed to stderr before the start
};

class Runner {
 public:
  virtual ~Runner() = default;
  virtual std::string_view name() const = 0;
  // The program that must be on PATH to use this runner; empty for none.
  virtual std::string_view backend() const = 0;
  // Fills plan.processes (and files, supervisor.stop_command) for `job`. User errors are LaunchErrors.
  virtual void plan(const Job& job, LaunchPlan& plan) const = 0;
};

std::unique_ptr<Runner> make_local_runner();
std::unique_ptr<Runner> make_runner(LauncherKind kind);

// The command a node runs under ssh/pdsh: `cd CWD && export K=V ... && exec ZEROTRAIN launch --no_ssh
// --world_info=... --master_port=P NODE_FLAG --master_addr=A [rank flags] [extra] PROGRAM ARGS...`, quoted for
// a POSIX shell. `node_flag` selects the node (--node_rank=K, or pdsh's --node_name=%h).
std::string node_agent_script(const Job& job, const std::string& node_flag, const std::vector<std::string>& extra);

// argv of the per-rank helper that mpirun or srun starts: ZEROTRAIN launch --from_launcher=SOURCE
// [--world_info=...] --master_addr=A --master_port=P [rank flags] PROGRAM ARGS...
std::vector<std::string> rank_helper_command(const Job& job, std::string_view source, bool with_world_info);

// The words of --launcher_args.
std::vector<std::string> launcher_args(const Job& job);

}  // namespace zerotrain::detail
