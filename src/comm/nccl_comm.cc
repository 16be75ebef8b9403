// NCCL through c10d. Collectives run on c10d's NCCL streams (asyncOp): Work::wait() makes the current stream
// wait for them, so a reduce-scatter issued from an autograd hook overlaps with the rest of backward. c10d's
// watchdog ends the process when a collective outlives the timeout, naming the rank and the operation
// (TORCH_NCCL_ASYNC_ERROR_HANDLING is set so that it tears the process down instead of hanging).
#include "comm/nccl_comm.h"
#include "comm/coalesced.h"

#include <stdexcept>

#ifdef ZEROTRAIN_WITH_CUDA
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

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

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return c10d::ReduceOp::SUM;
    case ReduceOp::kAvg: return c10d::ReduceOp::AVG;
    case ReduceOp::kMax: return c10d::ReduceOp::MAX;
  }
  return c10d::ReduceOp::SUM;
}

class NcclWork final : public CommWork {
 public:
  explicit NcclWork(c10::intrusive_ptr<c10d::Work> work) : work_(std::move(work)) {}
  void wait() override {
    // With asyncOp the process group returns a Work; a null one means the op already ran on the current stream.
    if (work_) {
      work_->wait();
      work_.reset();
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
};

class NcclComm final : public Comm {
 public:
  NcclComm(const RankInfo& info, std::chrono::milliseconds timeout) : rank_(info.rank), size_(info.world_size) {
    c10d::TCPStoreOptions store_opts;
    store_opts.port = static_cast<uint16_t>(info.master_port);
    store_opts.isServer = info.rank == 0;
    store_opts.numWorkers = info.world_size;
    store_opts.waitWorkers = true;
    store_opts.timeout = timeout;
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(info.master_addr, store_opts);
    } catch (const std::exception& e) {
      throw std::runtime_error("rank " + std::to_string(info.rank) + ": rendezvous at " + info.master_addr + ":" +
                               std::to_string(info.master_port) + " failed within " +
                               std::to_string(timeout.count() / 1000) + " s: " + e.what());
    }
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(info.local_rank));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    pg_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store_, info.rank, info.world_size, opts);
  }

  ~NcclComm() override {
    // Tear the communicators down in order (c10d warns, and may leak, when a process group is just dropped).
    try {
      pg_->shutdown();
    } catch (...) {
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string backend() const override { return "nccl"; }

  void all_reduce(at::Tensor& t, ReduceOp op) override { all_reduce_async(t, op)->wait(); }

  std::unique_ptr<CommWork> all_reduce_async(at::Tensor& t, ReduceOp op) override {
    std::vector<at::Tensor> tensors{t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_c10d(op);
    return std::make_unique<NcclWork>(pg_->allreduce(tensors, opts));
  }

  std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor& out, const at::Tensor& in, ReduceOp op) override {
    TORCH_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input has ", in.numel(), " elements, expected ",
                out.numel(), " x ", size_, " ranks");
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = to_c10d(op);
    at::Tensor input = in;
    return std::make_unique<NcclWork>(pg_->_reduce_scatter_base(out, input, opts));
  }

  std::unique_ptr<CommWork> all_gather_async(at::Tensor& out, const at::Tensor& in) override {
    TORCH_CHECK(out.numel() == in.numel() * size_, "all_gather: output has ", out.numel(), " elements, expected ",
                in.numel(), " x ", size_, " ranks");
    at::Tensor input = in;
    return std::make_unique<NcclWork>(pg_->_allgather_base(out, input, {}));
  }

  std::unique_ptr<CommWork> reduce_scatter_coalesced_async(std::vector<at::Tensor>& outs,
                                                           const std::vector<at::Tensor>& ins, ReduceOp op) override {
    detail::check_coalesced("reduce_scatter_coalesced", outs, ins, size_);
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = to_c10d(op);
    std::vector<at::Tensor> inputs = ins;
    return std::make_unique<NcclWork>(pg_->reduce_scatter_tensor_coalesced(outs, inputs, opts));
  }

  std::unique_ptr<CommWork> all_gather_coalesced_async(std::vector<at::Tensor>& outs,
                                                       const std::vector<at::Tensor>& ins) override {
    detail::check_coalesced("all_gather_coalesced", ins, outs, size_);
    std::vector<at::Tensor> inputs = ins;
    return std::make_unique<NcclWork>(pg_->allgather_into_tensor_coalesced(outs, inputs, {}));
  }

  void broadcast(at::Tensor& t, int root) override {
    std::vector<at::Tensor> tensors{t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    NcclWork(pg_->broadcast(tensors, opts)).wait();
  }

  void barrier() override {
    c10d::BarrierOptions opts;
    NcclWork(pg_->barrier(opts)).wait();
  }

 private:
  int rank_;
  int size_;
  c10::intrusive_ptr<c10d::TCPStore> store_;
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> pg_;
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
