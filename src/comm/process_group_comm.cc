// A Comm over a c10d process group that already exists in this process: the one a Python program made with
// torch.distributed.init_process_group (gloo for CPU tensors, nccl for CUDA tensors), found by its name in c10d's
// group registry. The group's own timeout and error handling apply.
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <stdexcept>

#include "comm/coalesced.h"
#include "zerotrain/comm.h"

namespace zerotrain {
namespace {

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return c10d::ReduceOp::SUM;
    case ReduceOp::kAvg: return c10d::ReduceOp::AVG;
    case ReduceOp::kMax: return c10d::ReduceOp::MAX;
  }
  return c10d::ReduceOp::SUM;
}

class GroupWork final : public CommWork {
 public:
  explicit GroupWork(c10::intrusive_ptr<c10d::Work> work) : work_(std::move(work)) {}
  void wait() override {
    if (work_) {
      work_->wait();
      work_.reset();
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
};

class ProcessGroupComm final : public Comm {
 public:
  explicit ProcessGroupComm(c10::intrusive_ptr<c10d::ProcessGroup> pg)
      : pg_(std::move(pg)), rank_(pg_->getRank()), size_(pg_->getSize()), backend_(pg_->getBackendName()) {}

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string backend() const override { return backend_; }

  void all_reduce(at::Tensor& t, ReduceOp op) override { all_reduce_async(t, op)->wait(); }

  std::unique_ptr<CommWork> all_reduce_async(at::Tensor& t, ReduceOp op) override {
    std::vector<at::Tensor> tensors{t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_c10d(op);
    return std::make_unique<GroupWork>(pg_->allreduce(tensors, opts));
  }

  std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor& out, const at::Tensor& in, ReduceOp op) override {
    TORCH_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input has ", in.numel(), " elements, expected ",
                out.numel(), " x ", size_, " ranks");
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = to_c10d(op);
    at::Tensor input = in;
    return std::make_unique<GroupWork>(pg_->_reduce_scatter_base(out, input, opts));
  }

  std::unique_ptr<CommWork> all_gather_async(at::Tensor& out, const at::Tensor& in) override {
    TORCH_CHECK(out.numel() == in.numel() * size_, "all_gather: output has ", out.numel(), " elements, expected ",
                in.numel(), " x ", size_, " ranks");
    at::Tensor input = in;
    return std::make_unique<GroupWork>(pg_->_allgather_base(out, input, {}));
  }

  std::unique_ptr<CommWork> reduce_scatter_coalesced_async(std::vector<at::Tensor>& outs,
                                                           const std::vector<at::Tensor>& ins, ReduceOp op) override {
    if (backend_ != "nccl") return Comm::reduce_scatter_coalesced_async(outs, ins, op);  // gloo: one at a time
    detail::check_coalesced("reduce_scatter_coalesced", outs, ins, size_);
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = to_c10d(op);
    std::vector<at::Tensor> inputs = ins;
    return std::make_unique<GroupWork>(pg_->reduce_scatter_tensor_coalesced(outs, inputs, opts));
  }

  std::unique_ptr<CommWork> all_gather_coalesced_async(std::vector<at::Tensor>& outs,
                                                       const std::vector<at::Tensor>& ins) override {
    if (backend_ != "nccl") return Comm::all_gather_coalesced_async(outs, ins);  // gloo: CPU, one at a time
    detail::check_coalesced("all_gather_coalesced", ins, outs, size_);
    std::vector<at::Tensor> inputs = ins;
    return std::make_unique<GroupWork>(pg_->allgather_into_tensor_coalesced(outs, inputs, {}));
  }

  void broadcast(at::Tensor& t, int root) override {
    std::vector<at::Tensor> tensors{t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    GroupWork(pg_->broadcast(tensors, opts)).wait();
  }

  void barrier() override { GroupWork(pg_->barrier(c10d::BarrierOptions())).wait(); }

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  int rank_;
  int size_;
  std::string backend_;
};

}  // namespace

std::shared_ptr<Comm> make_process_group_comm(const std::string& group_name) {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  try {
    pg = c10d::resolve_process_group(group_name);
  } catch (const std::exception& e) {
    throw std::invalid_argument("process group \"" + group_name +
                                "\" is not registered in this process (initialize it with "
                                "torch.distributed.init_process_group first): " + e.what());
  }
  return std::make_shared<ProcessGroupComm>(std::move(pg));
}

}  // namespace zerotrain
