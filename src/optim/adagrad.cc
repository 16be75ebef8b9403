// Adagrad over a flat fp32 shard with torch.optim.Adagrad's rule (DeepSpeed builds torch.optim.Adagrad for
// "Adagrad" unless the optimizer is offloaded):
//   d = g + wd * p;  sum += d * d;  p -= lr / (1 + (t - 1) * lr_decay) * d / (sqrt(sum) + eps)
// with sum starting at initial_accumulator_value. Adagrad has no momentum: StepArgs::beta1 is refused, since
// DeepSpeed's OneCycle turns momentum cycling off for optimizers without "betas".
//
// CPU: ATen's _fused_adagrad_ (one vectorised multi-threaded pass, same rule). CUDA: adagrad_kernels.cu.
#include <ATen/ATen.h>

#include "optim/optimizers.h"

namespace zerotrain::detail {
namespace {

class AdagradShardOptimizer final : public ShardOptimizer {
 public:
  AdagradShardOptimizer(const OptimizerConfig& cfg, const at::Tensor& param, const StateFactory& make_state)
      : lr_decay_(cfg.lr_decay),
        weight_decay_(cfg.weight_decay),
        eps_(cfg.eps),
        numel_(param.numel()),
        device_(param.device()),
        sum_(new_state(make_state, "sum", param).fill_(cfg.initial_accumulator_value)),
        step_(at::zeros({}, param.options().device(at::kCPU))) {}

  void step(at::Tensor& param, const at::Tensor& grad, const StepArgs& args) override {
    check_step_inputs("Adagrad", param, grad, numel_, device_, args);
    TORCH_CHECK(!args.beta1, "Adagrad.step: StepArgs::beta1 ", args.beta1.value_or(0),
                " given, but Adagrad has no momentum to cycle (DeepSpeed disables OneCycle's cycle_momentum for it)");
    if (device_.is_cuda()) {
#ifdef ZEROTRAIN_WITH_CUDA
      const double clr = args.lr / (1 + static_cast<double>(args.step - 1) * lr_decay_);
      const AdagradKernelArgs kernel_args{
          .clr = static_cast<float>(clr),
          .weight_decay = static_cast<float>(weight_decay_),
          .eps = static_cast<float>(eps_),
      };
      const c10::cuda::CUDAGuard guard(device_);
      adagrad_step_cuda(f32(param), grad.const_data_ptr<float>(), f32(sum_), numel_, kernel_args,
                        c10::cuda::getCurrentCUDAStream(device_.index()));
#else
      TORCH_CHECK(false, "Adagrad: the shard is on ", device_, " but zerotrain was built without CUDA");
#endif
      return;
    }
    // The fused CPU kernel reads the step (it does not advance it) and leaves the gradient untouched.
    step_.fill_(static_cast<double>(args.step));
    const std::vector<at::Tensor> params{param}, grads{grad}, sums{sum_}, steps{step_};
    at::_fused_adagrad_(params, grads, sums, steps, args.lr, lr_decay_, weight_decay_, eps_, /*maximize=*/false);
  }

  std::vector<std::pair<std::string, at::Tensor>> state() override { return {{"sum", sum_}}; }

 private:
  double lr_decay_, weight_decay_, eps_;
  int64_t numel_;
  at::Device device_;
  at::Tensor sum_;   // (n,) fp32, param's device: running sum of squared gradients
  at::Tensor step_;  // () fp32, CPU: the step count _fused_adagrad_ reads (CPU path only)
};

}  // namespace

std::unique_ptr<ShardOptimizer> make_adagrad_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                    const StateFactory& make_state) {
  return std::make_unique<AdagradShardOptimizer>(cfg, param, make_state);
}

}  // namespace zerotrain::detail
