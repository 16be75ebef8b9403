// The NCCL backend: c10d ProcessGroupNCCL with TCPStore rendezvous, for CUDA tensors.
#pragma once

#include <chrono>
#include <memory>

#include "zerotrain/comm.h"

namespace zerotrain::detail {

// True when this build has CUDA (and so c10d's NCCL process group).
bool nccl_available();

// Rendezvous through a TCPStore at info.master_addr:master_port (rank 0 hosts it) and builds the process group on
// the CUDA device info.local_rank. Throws std::runtime_error naming the address, rank and timeout on failure.
std::shared_ptr<Comm> make_nccl_comm(const RankInfo& info, std::chrono::milliseconds timeout);

}  // namespace zerotrain::detail
