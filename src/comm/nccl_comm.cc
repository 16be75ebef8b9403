// NCCL through c10d. Collectives run on c10d's NCCL streams (asyncOp): Work::wait() makes the current stream
// wait for them, so a reduce-scatter issued from an autograd hook overlaps with the rest of backward. c10d's
// watchdog ends the process when a collective outlives the timeout, naming the rank and the operation
// (TORCH_NCCL_ASYNC_ERROR_HANDLING is set so that it tears the process down instead of hanging).
#include "comm/nccl_comm.h"

#include <stdexcept>

#ifdef ZEROTRAIN_WITH_CUDA
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "comm/c10d_comm.h"

#include <cstdlib>
#endif

namespace zerotrain::detail {

#ifndef ZEROTRAIN_WITH_CUDA

bool nccl_available() { return false; }
std::shared_ptr<Comm> make_nccl_comm(const RankInfo&, std::chrono::milliseconds) {
  throw std::runtime_error("this zerotrain build has no CUDA, so no NCCL backend: rebuild where nvcc is present");
}

#else

namespace {

c10::intrusive_ptr<c10d::TCPStore> rendezvous(const RankInfo& info, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions store_opts;
  store_opts.port = static_cast<uint16_t>(info.master_port);
  store_opts.isServer = info.rank == 0;
  store_opts.numWorkers = info.world_size;
  store_opts.waitWorkers = true;
  store_opts.timeout = timeout;
  try {
    return c10::make_intrusive<c10d::TCPStore>(info.master_addr, store_opts);
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(info.rank) + ": rendezvous at " + info.master_addr + ":" +
                             std::to_string(info.master_port) + " failed within " +
                             std::to_string(timeout.count() / 1000) + " s: " + e.what());
  }
}

c10::intrusive_ptr<c10d::ProcessGroupNCCL> make_group(const RankInfo& info, std::chrono::milliseconds timeout) {
  auto store = rendezvous(info, timeout);
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(info.local_rank));
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, info.rank, info.world_size, opts);  // keeps the store
}

class NcclComm final : public C10dComm<c10d::ProcessGroupNCCL> {
 public:
  NcclComm(const RankInfo& info, std::chrono::milliseconds timeout)
      : C10dComm(make_group(info, timeout), "nccl", /*coalesces=*/true) {}

  ~NcclComm() override {
    // Tear the communicators down in order (c10d warns, and may leak, when a process group is just dropped).
    try {
      pg_->shutdown();
    } catch (...) {
    }
  }
};

}  // namespace

bool nccl_available() { return true; }

std::shared_ptr<Comm> make_nccl_comm(const RankInfo& info, std::chrono::milliseconds timeout) {
  // Tear the process down on a timed-out or failed collective instead of hanging (c10d's watchdog reads this).
  setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", /*overwrite=*/0);
  return std::make_shared<NcclComm>(info, timeout);
}

#endif  // ZEROTRAIN_WITH_CUDA

}  // namespace zerotrain::detail
