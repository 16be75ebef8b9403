// Adam / AdamW over a flat fp32 shard with DeepSpeed FusedAdam's semantics (deepspeed/ops/adam/fused_adam.py,
// csrc/adam/multi_tensor_adam.cu):
//   adam_w_mode false (L2):        g += wd * p;  m, v from g;  p -= lr * m_hat / (sqrt(v_hat) + eps)
//   adam_w_mode true (decoupled):  m, v from g;  p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)
// with m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t), or m, v themselves when bias_correction is false.
// DeepSpeed builds FusedAdam for both "Adam" and "AdamW"; "Adam" is decoupled too unless adam_w_mode is false.
//
// On CUDA every step runs our kernel (adam_kernels.cu), which also folds in the unscale-and-clip multiplier and
// writes the 16-bit parameter copy (step_and_copy): one pass over memory for the whole ZeRO step. On CPU,
// bias-corrected steps use ATen's fused kernel (_fused_adam_ / _fused_adamw_: one multi-threaded vectorised pass),
// whose math is this rule exactly (AdamW's p *= 1 - lr * wd before the step equals the decay term inside it); it
// cannot switch bias correction off, so that case runs a few in-place ATen ops.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "optim/optimizers.h"

namespace zerotrain::detail {
namespace {

class AdamShardOptimizer final : public ShardOptimizer {
 public:
  AdamShardOptimizer(const OptimizerConfig& cfg, const at::Tensor& param)
      : beta1_(fp32_beta(cfg.betas[0])),
        beta2_(fp32_beta(cfg.betas[1])),
        eps_(cfg.eps),
        weight_decay_(cfg.weight_decay),
        adam_w_mode_(cfg.kind == OptimizerKind::kAdamW || cfg.adam_w_mode),
        bias_correction_(cfg.bias_correction),
        numel_(param.numel()),
        device_(param.device()),
        exp_avg_(at::zeros_like(param)),
        exp_avg_sq_(at::zeros_like(param)),
        // the step count ATen's fused CPU kernel reads
        step_(at::zeros({}, param.options())) {}

  void step(at::Tensor& param, const at::Tensor& grad, const StepArgs& args) override {
    check_step_inputs(adam_w_mode_ ? "AdamW" : "Adam", param, grad, numel_, device_, args);
    const double beta1 = effective_beta1(args, beta1_);
    if (device_.is_cuda()) {
      step_cuda(param, grad, args, beta1, 1.0, {});
    } else if (bias_correction_) {
      step_fused_aten(param, grad, args, beta1);
    } else {
      step_uncorrected_cpu(param, grad, args, beta1);
    }
  }

  void step_and_copy(at::Tensor& param, at::Tensor& grad, const StepArgs& args, double grad_multiplier,
                     const std::vector<ParamCopyRange>& copies) override {
    if (!device_.is_cuda()) return ShardOptimizer::step_and_copy(param, grad, args, grad_multiplier, copies);
    check_step_inputs(adam_w_mode_ ? "AdamW" : "Adam", param, grad, numel_, device_, args);
    step_cuda(param, grad, args, effective_beta1(args, beta1_), grad_multiplier, copies);
  }

  std::vector<std::pair<std::string, at::Tensor>> state() override {
    return {{"exp_avg", exp_avg_}, {"exp_avg_sq", exp_avg_sq_}};
  }

 private:
  void step_fused_aten(at::Tensor& param, const at::Tensor& grad, const StepArgs& args, double beta1) {
    step_.fill_(static_cast<double>(args.step));
    // The fused kernels write the gradient back only when given a grad_scale (torch's GradScaler contract); we pass
    // none, so `grad` stays untouched although the op's schema marks it mutable.
    const std::vector<at::Tensor> params{param}, grads{grad}, exp_avgs{exp_avg_}, exp_avg_sqs{exp_avg_sq_},
        steps{step_};
    if (adam_w_mode_) {
      at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, args.lr, beta1, beta2_,
                        weight_decay_, eps_, /*amsgrad=*/false, /*maximize=*/false);
    } else {
      at::_fused_adam_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, args.lr, beta1, beta2_,
                       weight_decay_, eps_, /*amsgrad=*/false, /*maximize=*/false);
    }
  }

  // One kernel launch per run of the shard: the copy ranges (sorted, disjoint) and the gaps between them.
  void step_cuda(at::Tensor& param, const at::Tensor& grad, const StepArgs& args, double beta1,
                 double grad_multiplier, const std::vector<ParamCopyRange>& copies) {
#ifdef ZEROTRAIN_WITH_CUDA
    AdamKernelArgs kernel_args{
        .lr = static_cast<float>(args.lr),
        .beta1 = static_cast<float>(beta1),
        .one_minus_beta1 = static_cast<float>(1 - beta1),
        .beta2 = static_cast<float>(beta2_),
        .one_minus_beta2 = static_cast<float>(1 - beta2_),
        .eps = static_cast<float>(eps_),
        .weight_decay = static_cast<float>(weight_decay_),
        .bias_correction1 = 1.f,
        .bias_correction2 = 1.f,
        .adam_w_mode = adam_w_mode_,
        .grad_multiplier = static_cast<float>(grad_multiplier),
    };
    if (bias_correction_) {
      // 1 - beta^t from the fp32 betas, in double (DeepSpeed computes them on the host too)
      kernel_args.bias_correction1 = static_cast<float>(1 - std::pow(beta1, static_cast<double>(args.step)));
      kernel_args.bias_correction2 = static_cast<float>(1 - std::pow(double{beta2_}, static_cast<double>(args.step)));
    }
    const c10::cuda::CUDAGuard guard(device_);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device_.index());
    std::vector<const ParamCopyRange*> order;
    for (const ParamCopyRange& c : copies) order.push_back(&c);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    auto run = [&](int64_t begin, int64_t end, ParamCopy copy) {
      adam_step_cuda(f32(param) + begin, grad.const_data_ptr<float>() + begin, f32(exp_avg_) + begin,
                     f32(exp_avg_sq_) + begin, end - begin, kernel_args, stream, copy);
    };
    int64_t done = 0;
    for (const ParamCopyRange* c : order) {
      const at::Tensor& dest = c->dest;
      TORCH_CHECK(c->offset >= done && c->offset + dest.numel() <= numel_ && dest.is_contiguous() &&
                      dest.device() == device_,
                  "Adam.step_and_copy: copy range [", c->offset, ", ", c->offset + dest.numel(),
                  ") must lie in the shard [0, ", numel_, "), not overlap another, and be contiguous on ", device_);
      CopyDtype dtype = CopyDtype::kNone;
      switch (dest.scalar_type()) {
        case at::kFloat: dtype = CopyDtype::kFloat; break;
        case at::kBFloat16: dtype = CopyDtype::kBFloat16; break;
        case at::kHalf: dtype = CopyDtype::kHalf; break;
        default: TORCH_CHECK(false, "Adam.step_and_copy: copy dtype ", dest.scalar_type(), "; allowed: fp32, bf16, fp16");
      }
      run(done, c->offset, {});
      run(c->offset, c->offset + dest.numel(), ParamCopy{dest.data_ptr(), dtype});
      done = c->offset + dest.numel();
    }
    run(done, numel_, {});
#else
    (void)param, (void)grad, (void)args, (void)beta1, (void)grad_multiplier, (void)copies;
    TORCH_CHECK(false, "Adam: the shard is on ", device_, " but zerotrain was built without CUDA");
#endif
  }

  // Five in-place passes; the L2 gradient needs one temporary because the caller's gradient is read-only.
  void step_uncorrected_cpu(at::Tensor& param, const at::Tensor& grad, const StepArgs& args, double beta1) {
    const at::Tensor g = !adam_w_mode_ && weight_decay_ != 0 ? at::add(grad, param, weight_decay_) : grad;
    exp_avg_.mul_(beta1).add_(g, 1 - beta1);
    exp_avg_sq_.mul_(beta2_).addcmul_(g, g, 1 - beta2_);
    const at::Tensor denom = exp_avg_sq_.sqrt().add_(eps_);
    // p - lr * (m / denom + wd * p) == p * (1 - lr * wd) - lr * m / denom
    if (adam_w_mode_ && weight_decay_ != 0) param.mul_(1 - args.lr * weight_decay_);
    param.addcdiv_(exp_avg_, denom, -args.lr);
  }

  float beta1_, beta2_;  // fp32, as DeepSpeed's kernels take them (fp32_beta)
  double eps_, weight_decay_;
  bool adam_w_mode_, bias_correction_;
  int64_t numel_;
  at::Device device_;
  at::Tensor exp_avg_;     // (n,) fp32, param's device: first moment, not bias-corrected
  at::Tensor exp_avg_sq_;  // (n,) fp32, param's device: second moment, not bias-corrected
  at::Tensor step_;        // () fp32, param's device: the step count ATen's fused kernels read
};

}  // namespace

std::unique_ptr<ShardOptimizer> make_adam_optimizer(const OptimizerConfig& cfg, const at::Tensor& param) {
  return std::make_unique<AdamShardOptimizer>(cfg, param);
}

}  // namespace zerotrain::detail
