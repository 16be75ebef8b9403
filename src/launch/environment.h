// The environment variables the launcher sets for each rank, forwards to other nodes, and reads back from
// MPI and Slurm launchers.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "launch/resources.h"

namespace zerotrain::detail {

// An environment: name -> value (sorted, so generated command lines are deterministic).
using Environment = std::map<std::string, std::string>;

// The process environment as given to main (`environ`).
Environment environment_from(char** envp);

// "NAME=VALUE" strings for execve.
std::vector<std::string> environment_strings(const Environment& env);

// Where the ranks meet (torch's env:// rendezvous, zerotrain's TCPStore).
struct Rendezvous {
  std::string master_addr;
  int master_port = 29500;
};

// The variables of the rank with index `local_index` on node `node_rank` of `world`, the set torchrun and
// DeepSpeed's launch.py give each process:
//   RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE (torchrun), LOCAL_SIZE (DeepSpeed), CROSS_RANK, CROSS_SIZE
//   (DeepSpeed), GROUP_RANK, GROUP_WORLD_SIZE (torchrun: node rank and count), MASTER_ADDR, MASTER_PORT, and
//   CUDA_VISIBLE_DEVICES = the node's slots, so LOCAL_RANK indexes the visible devices.
// Ranks are numbered node by node in world order. Unlike DeepSpeed's launch.py (LOCAL_RANK = RANK % the node's
// rank count), LOCAL_RANK is the index on the node, which stays right when nodes have different slot counts.
Environment rank_environment(const WorldInfo& world, int node_rank, int local_index, const Rendezvous& rdzv);

// The variables a multi-node launch forwards to every node, as DeepSpeed's runner does: every variable of
// `launcher_env` whose name starts with NCCL, PYTHON, UCX, MV2 or MLFLOW (or is one of DeepSpeed's Nebula /
// AzureML names), except NCCL_IB_HCA and UCX_NET_DEVICES when AISC_JOB_NAME is set; PYTHONPATH with `cwd`
// prepended; then the KEY=VALUE lines of ~/.deepspeed_env and ./.deepspeed_env (the file name is $DS_ENV_FILE
// when set), later ones overriding earlier ones.
Environment multinode_exports(const Environment& launcher_env, const std::string& cwd, const std::string& home);

// The KEY=VALUE lines of an environment file (blank lines, '#' comments and a leading `export ` are allowed;
// a value in matching single or double quotes loses them). Errors name path:line. `text` is its contents.
Environment parse_env_file(std::string_view text, std::string_view path);

// The launchers that start ranks themselves and tell each its place through their own variables.
enum class RankSource { kOpenMpi, kMpich, kSlurm };

// A rank's place as its launcher reported it.
struct LauncherRank {
  int rank = 0;
  int local_rank = 0;
  int world_size = 1;
  int local_world_size = 1;
  std::optional<int> node_rank;  // Slurm reports it; MPI does not
  std::optional<int> num_nodes;
};

// Reads the rank's place from the launcher's variables: OpenMPI's OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,
// LOCAL_SIZE}; MPICH/Hydra's PMI_RANK (or PMIX_RANK), PMI_SIZE, MPI_LOCALRANKID (or PALS_LOCAL_RANKID),
// MPI_LOCALNRANKS; Slurm's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID, SLURM_NNODES and
// SLURM_STEP_TASKS_PER_NODE ("2(x3),1"). A missing or malformed variable is a LaunchError naming it.
LauncherRank launcher_rank(RankSource source, const Environment& env);

// The environment of a rank started by an MPI launcher or srun: RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, LOCAL_SIZE, MASTER_ADDR, MASTER_PORT always; when `world` is given and the rank's place is
// what filling the nodes in order gives (mpirun's default mapping onto zerotrain's hostfile), also the node
// variables and CUDA_VISIBLE_DEVICES of rank_environment; else CROSS_RANK/CROSS_SIZE/GROUP_* only when the
// launcher reported the node (Slurm).
Environment launcher_rank_environment(const LauncherRank& place, const WorldInfo* world, const Rendezvous& rdzv);

}  // namespace zerotrain::detail
