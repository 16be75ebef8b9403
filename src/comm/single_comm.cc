// One rank: reductions are identities, gathers copies.
#include <ATen/ATen.h>

#include "zerotrain/comm.h"

namespace zerotrain {
namespace {

class DoneWork final : public CommWork {
 public:
  void wait() override {}
};

class SingleComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void all_reduce(at::Tensor&, ReduceOp) override {}
  std::unique_ptr<CommWork> all_reduce_async(at::Tensor&, ReduceOp) override { return std::make_unique<DoneWork>(); }
  std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor& out, const at::Tensor& in, ReduceOp) override {
    TORCH_CHECK(out.numel() == in.numel(), "reduce_scatter: output has ", out.numel(), " elements, input ", in.numel());
    if (out.data_ptr() != in.data_ptr()) out.copy_(in);  // equal: in place
    return std::make_unique<DoneWork>();
  }
  std::unique_ptr<CommWork> all_gather_async(at::Tensor& out, const at::Tensor& in) override {
    TORCH_CHECK(out.numel() == in.numel(), "all_gather: output has ", out.numel(), " elements, input ", in.numel());
    if (out.data_ptr() != in.data_ptr()) out.copy_(in);  // equal: in place
    return std::make_unique<DoneWork>();
  }
  void broadcast(at::Tensor&, int root) override {
    TORCH_CHECK(root == 0, "broadcast: root ", root, " is not a rank of a single-rank group");
  }
  void barrier() override {}
};

}  // namespace

std::shared_ptr<Comm> make_single_comm() { return std::make_shared<SingleComm>(); }

}  // namespace zerotrain
