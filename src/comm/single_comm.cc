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
  // Many tensors at once (stage 3's small units): one multi-tensor copy (one launch on CUDA) for those not in place.
  std::unique_ptr<CommWork> all_gather_coalesced_async(std::vector<at::Tensor>& outs,
                                                       const std::vector<at::Tensor>& ins) override {
    copy_all("all_gather_coalesced", outs, ins);
    return std::make_unique<DoneWork>();
  }
  std::unique_ptr<CommWork> reduce_scatter_coalesced_async(std::vector<at::Tensor>& outs,
                                                           const std::vector<at::Tensor>& ins, ReduceOp) override {
    copy_all("reduce_scatter_coalesced", outs, ins);
    return std::make_unique<DoneWork>();
  }
  void broadcast(at::Tensor&, int root) override {
    TORCH_CHECK(root == 0, "broadcast: root ", root, " is not a rank of a single-rank group");
  }
  void barrier() override {}

 private:
  static void copy_all(const char* op, std::vector<at::Tensor>& outs, const std::vector<at::Tensor>& ins) {
    TORCH_CHECK(outs.size() == ins.size(), op, ": ", outs.size(), " outputs for ", ins.size(), " inputs");
    std::vector<at::Tensor> dst, src;
    for (size_t i = 0; i < outs.size(); ++i) {
      TORCH_CHECK(outs[i].numel() == ins[i].numel(), op, ": output ", i, " has ", outs[i].numel(),
                  " elements, input ", ins[i].numel());
      if (outs[i].data_ptr() == ins[i].data_ptr()) continue;  // in place
      // Flat views only where a shape differs (the engine's buffers are 1-D already: no view call per tensor).
      const bool flat = outs[i].dim() == 1 && ins[i].dim() == 1;
      dst.push_back(flat ? outs[i] : outs[i].view({-1}));
      src.push_back(flat ? ins[i] : ins[i].view({-1}));
    }
    if (dst.size() == 1) {
      dst[0].copy_(src[0]);
    } else if (!dst.empty()) {
      at::_foreach_copy_(dst, src);
    }
  }
};

}  // namespace

std::shared_ptr<Comm> make_single_comm() { return std::make_shared<SingleComm>(); }

}  // namespace zerotrain
