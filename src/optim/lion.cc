// Lion over a flat fp32 shard with DeepSpeed FusedLion's semantics (deepspeed/ops/lion/fused_lion.py,
// csrc/lion/multi_tensor_lion.cu):
//   c = beta1 * m + (1 - beta1) * g
//   p = p * (1 - lr * wd) + (c > 0 ? -lr : +lr)      (decoupled decay; c == 0 steps by +lr, as the kernel does)
//   m = beta2 * m + (1 - beta2) * g
// DeepSpeed's CPU Lion (csrc/lion/cpu_lion_impl.cpp) uses -copysign(lr, c), which differs only at c == -0.0 and
// NaN; we follow the GPU kernel, which DeepSpeed builds unless the optimizer is offloaded.
//
// CPU: in-place ATen ops over the whole shard (ATen has no fused Lion). CUDA: lion_kernels.cu (one launch).
#include <ATen/ATen.h>

#include "optim/optimizers.h"

namespace zerotrain::detail {
namespace {

class LionShardOptimizer final : public ShardOptimizer {
 public:
  LionShardOptimizer(const OptimizerConfig& cfg, const at::Tensor& param, const StateFactory& make_state)
      : beta1_(fp32_beta(cfg.betas[0])),
        beta2_(fp32_beta(cfg.betas[1])),
        weight_decay_(cfg.weight_decay),
        numel_(param.numel()),
        device_(param.device()),
        exp_avg_(new_state(make_state, "exp_avg", param)) {}

  void step(at::Tensor& param, const at::Tensor& grad, const StepArgs& args) override {
    check_step_inputs("Lion", param, grad, numel_, device_, args);
    const double beta1 = effective_beta1(args, beta1_);
    const double after_decay = 1 - args.lr * weight_decay_;
    if (device_.is_cuda()) {
#ifdef ZEROTRAIN_WITH_CUDA
      const LionKernelArgs kernel_args{
          .lr = static_cast<float>(args.lr),
          .beta1 = static_cast<float>(beta1),
          .one_minus_beta1 = static_cast<float>(1 - beta1),
          .beta2 = static_cast<float>(beta2_),
          .one_minus_beta2 = static_cast<float>(1 - beta2_),
          .after_decay = static_cast<float>(after_decay),
      };
      const c10::cuda::CUDAGuard guard(device_);
      lion_step_cuda(f32(param), grad.const_data_ptr<float>(), f32(exp_avg_), numel_, kernel_args,
                     c10::cuda::getCurrentCUDAStream(device_.index()));
#else
      TORCH_CHECK(false, "Lion: the shard is on ", device_, " but zerotrain was built without CUDA");
#endif
      return;
    }
    // c > 0 picks -lr, anything else (0, NaN) +lr, as FusedLion's `c > 0 ? -lr : lr`.
    const at::Tensor c = at::mul(exp_avg_, beta1).add_(grad, 1 - beta1);
    const at::Tensor update = at::where(c > 0, -args.lr, args.lr);
    if (weight_decay_ != 0) param.mul_(after_decay);
    param.add_(update);
    exp_avg_.mul_(beta2_).add_(grad, 1 - beta2_);
  }

  std::vector<std::pair<std::string, at::Tensor>> state() override { return {{"exp_avg", exp_avg_}}; }

 private:
  float beta1_, beta2_;  // fp32, as DeepSpeed's kernels take them (fp32_beta)
  double weight_decay_;
  int64_t numel_;
  at::Device device_;
  at::Tensor exp_avg_;  // (n,) fp32, param's device: the momentum m
};

}  // namespace

std::unique_ptr<ShardOptimizer> make_lion_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                    const StateFactory& make_state) {
  return std::make_unique<LionShardOptimizer>(cfg, param, make_state);
}

}  // namespace zerotrain::detail
