// The collectives of a Comm over a c10d group: c10d::ProcessGroup (a group a Python program made,
// process_group_comm.cc) or c10d::ProcessGroupNCCL (zerotrain's own NCCL communicator, nccl_comm.cc). Both take the
// same calls with the same options; the Work they return is waited through CommWork (c10d's async ops: wait() makes
// the current CUDA stream wait for the collective, a CPU group blocks until it is done).
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/coalesced.h"
#include "zerotrain/comm.h"

namespace zerotrain::detail {

inline c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return c10d::ReduceOp::SUM;
    case ReduceOp::kAvg: return c10d::ReduceOp::AVG;
    case ReduceOp::kMax: return c10d::ReduceOp::MAX;
  }
  return c10d::ReduceOp::SUM;
}

class C10dWork final : public CommWork {
 public:
  explicit C10dWork(c10::intrusive_ptr<c10d::Work> work) : work_(std::move(work)) {}
  void wait() override {
    // A null Work means the op already ran on the current stream.
    if (work_) {
      work_->wait();
      work_.reset();
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
};

// `coalesces`: the group has c10d's coalesced collectives (NCCL); otherwise (gloo) the coalesced calls fall back to
// Comm's one at a time.
template <class Group>
class C10dComm : public Comm {
 public:
  C10dComm(c10::intrusive_ptr<Group> pg, std::string backend, bool coalesces)
      : pg_(std::move(pg)),
        rank_(pg_->getRank()),
        size_(pg_->getSize()),
        backend_(std::move(backend)),
        coalesces_(coalesces) {}

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string backend() const override { return backend_; }

  void all_reduce(at::Tensor& t, ReduceOp op) override { all_reduce_async(t, op)->wait(); }

  std::unique_ptr<CommWork> all_reduce_async(at::Tensor& t, ReduceOp op) override {
    std::vector<at::Tensor> tensors{t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_c10d(op);
    return std::make_unique<C10dWork>(pg_->allreduce(tensors, opts));
  }

  std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor& out, const at::Tensor& in, ReduceOp op) override {
    TORCH_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input has ", in.numel(), " elements, expected ",
                out.numel(), " x ", size_, " ranks");
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = to_c10d(op);
    at::Tensor input = in;
    return std::make_unique<C10dWork>(pg_->_reduce_scatter_base(out, input, opts));
  }

  std::unique_ptr<CommWork> all_gather_async(at::Tensor& out, const at::Tensor& in) override {
    TORCH_CHECK(out.numel() == in.numel() * size_, "all_gather: output has ", out.numel(), " elements, expected ",
                in.numel(), " x ", size_, " ranks");
    at::Tensor input = in;
    return std::make_unique<C10dWork>(pg_->_allgather_base(out, input, {}));
  }

  std::unique_ptr<CommWork> reduce_scatter_coalesced_async(std::vector<at::Tensor>& outs,
                                                           const std::vector<at::Tensor>& ins, ReduceOp op) override {
    if (!coalesces_) return Comm::reduce_scatter_coalesced_async(outs, ins, op);
    check_coalesced("reduce_scatter_coalesced", outs, ins, size_);
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = to_c10d(op);
    std::vector<at::Tensor> inputs = ins;
    return std::make_unique<C10dWork>(pg_->reduce_scatter_tensor_coalesced(outs, inputs, opts));
  }

  std::unique_ptr<CommWork> all_gather_coalesced_async(std::vector<at::Tensor>& outs,
                                                       const std::vector<at::Tensor>& ins) override {
    if (!coalesces_) return Comm::all_gather_coalesced_async(outs, ins);
    check_coalesced("all_gather_coalesced", ins, outs, size_);
    std::vector<at::Tensor> inputs = ins;
    return std::make_unique<C10dWork>(pg_->allgather_into_tensor_coalesced(outs, inputs, {}));
  }

  void broadcast(at::Tensor& t, int root) override {
    std::vector<at::Tensor> tensors{t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    C10dWork(pg_->broadcast(tensors, opts)).wait();
  }

  void barrier() override { C10dWork(pg_->barrier(c10d::BarrierOptions())).wait(); }

 protected:
  c10::intrusive_ptr<Group> pg_;

 private:
  int rank_;
  int size_;
  std::string backend_;
  bool coalesces_;
};

}  // namespace zerotrain::detail
