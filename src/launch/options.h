// The flags of `zerotrain launch`, DeepSpeed's launcher flags plus a few of zerotrain's own.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "launch/environment.h"
#include "launch/hostfile.h"

namespace zerotrain::detail {

// The multi-node backends (--launcher).
enum class LauncherKind { kPdsh, kSsh, kOpenMpi, kMpich, kSlurm };

// Parses --launcher (case-insensitive, as DeepSpeed lowercases it); a LaunchError lists the allowed names.
LauncherKind parse_launcher(std::string_view name);
std::string_view launcher_name(LauncherKind kind);

struct LaunchOptions {
  // Resources (DeepSpeed's runner).
  std::string hostfile{kDefaultHostfile};
  bool hostfile_given = false;  // a missing default hostfile means "this machine"; a missing given one is an error
  std::string include, exclude;
  int num_nodes = -1;           // -1: all nodes
  int num_gpus = -1;            // -1: all slots (on a machine without hostfile and GPUs: 1 CPU rank)
  // Rendezvous.
  std::string master_addr;      // empty: 127.0.0.1 on one node, else the first node's host name
  int master_port = 29500;
  // Multi-node.
  std::optional<LauncherKind> launcher;  // unset: ssh (DeepSpeed: pdsh)
  std::string launcher_args;             // extra words for ssh/pdsh/mpirun/srun (shell-split)
  std::optional<int> ssh_port;
  bool force_multi = false;
  bool no_ssh = false;                   // run only this node's ranks (node given by node_rank)
  std::optional<int> node_rank;
  std::string node_name;                 // zerotrain: this node's host name in the world info (pdsh's %h)
  std::string world_info;                // DeepSpeed's launch.py --world_info (base64 JSON); replaces the hostfile
  // How each rank runs the program.
  bool module = false;                   // python3 -u -m PROGRAM
  bool no_python = false;                // exec PROGRAM
  bool no_local_rank = false;            // do not append --local_rank=N
  bool bind_cores_to_rank = false;
  std::string bind_core_list;
  std::string each_rank_log_dir;         // --enable_each_rank_log DIR
  bool save_pid = false;                 // write /tmp/<pid>.deepspeed
  std::optional<int> save_pid_as;        // internal: the <pid> of the file (the launcher's, on other nodes)
  double terminate_timeout_s = 30;       // SIGTERM -> SIGKILL grace when stopping
  bool quiet = false;                    // -q / --log_level error: no informational lines
  // Internal modes, set by zerotrain's own runners on the nodes.
  bool exit_on_stdin_eof = false;        // ssh runner: the node agent stops its ranks when stdin closes
  std::optional<RankSource> from_launcher;  // mpirun/srun started this process as one rank: exec PROGRAM
  // The program and its arguments.
  std::string program;
  std::vector<std::string> program_args;
};

}  // namespace zerotrain::detail
