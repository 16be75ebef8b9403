// SGD over a flat fp32 shard with torch.optim.SGD's rule (DeepSpeed builds torch.optim.SGD for "SGD"):
//   d = g + wd * p
//   buf = d on the first step, else momentum * buf + (1 - dampening) * d      (momentum != 0 only)
//   d = d + momentum * buf with nesterov, else buf                            (momentum != 0 only)
//   p -= lr * d
// The first step is StepArgs::step == 1, torch's "momentum_buffer is None"; a resumed run (step > 1) continues
// from the loaded buffer. StepArgs::beta1 replaces the momentum (OneCycle); the buffer exists only when the
// configured momentum is non-zero, since DeepSpeed's OneCycle does not cycle SGD's momentum (it needs "betas").
//
// CPU: ATen's _fused_sgd_ (one vectorised multi-threaded pass, same rule). CUDA: sgd_kernels.cu (one launch).
#include <ATen/ATen.h>

#include "optim/optimizers.h"

namespace zerotrain::detail {
namespace {

class SgdShardOptimizer final : public ShardOptimizer {
 public:
  SgdShardOptimizer(const OptimizerConfig& cfg, const at::Tensor& param, const StateFactory& make_state)
      : momentum_(cfg.momentum),
        dampening_(cfg.dampening),
        weight_decay_(cfg.weight_decay),
        nesterov_(cfg.nesterov),
        numel_(param.numel()),
        device_(param.device()) {
    if (momentum_ != 0) momentum_buffer_ = new_state(make_state, "momentum_buffer", param);
  }

  void step(at::Tensor& param, const at::Tensor& grad, const StepArgs& args) override {
    check_step_inputs("SGD", param, grad, numel_, device_, args);
    const double momentum = args.beta1.value_or(momentum_);  // torch rounds it to fp32 at use, as we do
    TORCH_CHECK(momentum == 0 || momentum_buffer_.defined(), "SGD.step: momentum ", momentum,
                " from StepArgs::beta1, but the optimizer was configured with momentum 0 and keeps no momentum "
                "buffer; configure a non-zero momentum to cycle it");
    const bool first_step = args.step == 1;
    const at::Tensor buffer = momentum != 0 ? momentum_buffer_ : at::Tensor();
    if (device_.is_cuda()) {
#ifdef ZEROTRAIN_WITH_CUDA
      const SgdKernelArgs kernel_args{
          .lr = static_cast<float>(args.lr),
          .weight_decay = static_cast<float>(weight_decay_),
          .momentum = static_cast<float>(momentum),
          .one_minus_dampening = static_cast<float>(1 - dampening_),
          .nesterov = nesterov_,
          .first_step = first_step,
      };
      const c10::cuda::CUDAGuard guard(device_);
      sgd_step_cuda(f32(param), grad.const_data_ptr<float>(), buffer.defined() ? f32(buffer) : nullptr, numel_,
                    kernel_args, c10::cuda::getCurrentCUDAStream(device_.index()));
#else
      TORCH_CHECK(false, "SGD: the shard is on ", device_, " but zerotrain was built without CUDA");
#endif
      return;
    }
    // _fused_sgd_ leaves the gradient untouched without a grad_scale, as its CUDA twin does.
    const std::vector<at::Tensor> params{param}, grads{grad};
    std::vector<at::Tensor> buffers;
    if (buffer.defined()) buffers.push_back(buffer);
    at::_fused_sgd_(params, grads, buffers, weight_decay_, momentum, args.lr, dampening_, nesterov_,
                    /*maximize=*/false, first_step);
  }

  std::vector<std::pair<std::string, at::Tensor>> state() override {
    if (!momentum_buffer_.defined()) return {};
    return {{"momentum_buffer", momentum_buffer_}};
  }

 private:
  double momentum_, dampening_, weight_decay_;
  bool nesterov_;
  int64_t numel_;
  at::Device device_;
  at::Tensor momentum_buffer_;  // (n,) fp32, param's device; undefined when the configured momentum is 0
};

}  // namespace

std::unique_ptr<ShardOptimizer> make_sgd_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                    const StateFactory& make_state) {
  return std::make_unique<SgdShardOptimizer>(cfg, param, make_state);
}

}  // namespace zerotrain::detail
