// Where a process learns its rank: the variables each launcher sets.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "zerotrain/comm.h"

namespace zerotrain {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

int env_int(const char* name, int fallback, int min_value) {
  const char* v = env(name);
  if (v == nullptr) return fallback;
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || value < min_value || value > (1 << 30)) {
    throw std::runtime_error(std::string("environment variable ") + name + "='" + v + "' is not an integer >= " +
                             std::to_string(min_value));
  }
  return static_cast<int>(value);
}

}  // namespace

RankInfo rank_info_from_env() {
  RankInfo info;
  // mpirun's own variables first: `zerotrain launch --launcher openmpi` exports RANK/WORLD_SIZE too, and under
  // mpirun the MPI ranks are the truth.
  if (env("OMPI_COMM_WORLD_RANK") != nullptr) {
    info.source = "openmpi";
    info.rank = env_int("OMPI_COMM_WORLD_RANK", 0, 0);
    info.world_size = env_int("OMPI_COMM_WORLD_SIZE", 1, 1);
    info.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0, 0);
  } else if (env("RANK") != nullptr || env("WORLD_SIZE") != nullptr) {
    info.source = "torchrun";
    info.rank = env_int("RANK", 0, 0);
    info.world_size = env_int("WORLD_SIZE", 1, 1);
    info.local_rank = env_int("LOCAL_RANK", 0, 0);
  } else if (env("SLURM_PROCID") != nullptr && env("SLURM_NTASKS") != nullptr) {
    info.source = "slurm";
    info.rank = env_int("SLURM_PROCID", 0, 0);
    info.world_size = env_int("SLURM_NTASKS", 1, 1);
    info.local_rank = env_int("SLURM_LOCALID", 0, 0);
  } else {
    info.source = "none";
  }
  if (info.rank >= info.world_size) {
    throw std::runtime_error("rank " + std::to_string(info.rank) + " is not below the world size " +
                             std::to_string(info.world_size) + " (from the " + info.source + " environment)");
  }
  if (const char* addr = env("MASTER_ADDR")) info.master_addr = addr;
  info.master_port = env_int("MASTER_PORT", 29500, 1);
  if (info.master_port > 65535) {
    throw std::runtime_error("MASTER_PORT=" + std::to_string(info.master_port) + " is not a TCP port (1..65535)");
  }
  return info;
}

}  // namespace zerotrain
