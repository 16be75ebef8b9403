// Adam / AdamW over a flat fp32 shard with DeepSpeed FusedAdam's semantics (deepspeed/ops/adam/fused_adam.py,
// csrc/adam/multi_tensor_adam.cu):
//   adam_w_mode false (L2):        g += wd * p;  m, v from g;  p -= lr * m_hat / (sqrt(v_hat) + eps)
//   adam_w_mode true (decoupled):  m, v from g;  p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)
// with m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t), or m, v themselves when bias_correction is false.
// DeepSpeed builds FusedAdam for both "Adam" and "AdamW"; "Adam" is decoupled too unless adam_w_mode is false.
//
// Every step runs one pass over memory that also folds in the unscale-and-clip multiplier and writes the
// parameters' copies in the training dtype (step_and_copy): on CUDA our kernel (adam_kernels.cu), on the CPU its twin
// (host_kernels.cc: the same formula in fp32, multi-threaded, vectorized; what optimizer offload runs).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "optim/host_kernels.h"
#include "optim/optimizers.h"

namespace zerotrain::detail {
namespace {

class AdamShardOptimizer final : public ShardOptimizer {
 public:
  AdamShardOptimizer(const OptimizerConfig& cfg, const at::Tensor& param, const StateFactory& make_state)
      : beta1_(fp32_beta(cfg.betas[0])),
        beta2_(fp32_beta(cfg.betas[1])),
        eps_(cfg.eps),
        weight_decay_(cfg.weight_decay),
        adam_w_mode_(cfg.kind == OptimizerKind::kAdamW || cfg.adam_w_mode),
        bias_correction_(cfg.bias_correction),
        numel_(param.numel()),
        device_(param.device()),
        exp_avg_(new_state(make_state, "exp_avg", param)),
        exp_avg_sq_(new_state(make_state, "exp_avg_sq", param)) {}

  void step(at::Tensor& param, const at::Tensor& grad, const StepArgs& args) override {
    check_step_inputs(adam_w_mode_ ? "AdamW" : "Adam", param, grad, numel_, device_, args);
    step_runs(param, grad, args, effective_beta1(args, beta1_), 1.0, nullptr, {});
  }

  void step_and_copy(at::Tensor& param, at::Tensor& grad, const StepArgs& args, const GradMultiplier& grad_multiplier,
                     const std::vector<ParamCopyRange>& copies) override {
    check_step_inputs(adam_w_mode_ ? "AdamW" : "Adam", param, grad, numel_, device_, args);
    const at::Tensor& t = grad_multiplier.tensor;
    TORCH_CHECK(!t.defined() || (t.numel() == 1 && t.scalar_type() == at::kFloat && t.device() == device_),
                "Adam.step_and_copy: the gradient multiplier's tensor must be one fp32 element on ", device_, "; got ",
                t.defined() ? t.toString() : "", " of ", t.defined() ? t.numel() : 0, " elements on ",
                t.defined() ? t.device() : device_);
    step_runs(param, grad, args, effective_beta1(args, beta1_), grad_multiplier.value,
              t.defined() ? t.const_data_ptr<float>() : nullptr, copies);
  }

  bool reads_multiplier_tensor() const override { return true; }
  bool steps_in_pieces() const override { return true; }

  void step_piece(at::Tensor& param, const at::Tensor& grad, const StepArgs& args, double grad_multiplier,
                  int64_t begin, int64_t end, const at::Tensor& copy) override {
    check_step_inputs(adam_w_mode_ ? "AdamW" : "Adam", param, grad, numel_, device_, args);
    TORCH_CHECK(0 <= begin && begin <= end && end <= numel_, "Adam.step_piece: [", begin, ", ", end,
                ") is not a range of the shard [0, ", numel_, ")");
    TORCH_CHECK(!copy.defined() || (copy.numel() == end - begin && copy.is_contiguous() && copy.device() == device_),
                "Adam.step_piece: the copy must be ", end - begin, " contiguous elements on ", device_, "; got ",
                copy.numel(), " elements on ", copy.device(), copy.is_contiguous() ? "" : ", not contiguous");
    run(param, grad, kernel_args(args, effective_beta1(args, beta1_), grad_multiplier), begin, end,
        copy.defined() ? ParamCopy{copy.data_ptr(), copy_dtype(copy)} : ParamCopy{});
  }

  std::vector<std::pair<std::string, at::Tensor>> state() override {
    return {{"exp_avg", exp_avg_}, {"exp_avg_sq", exp_avg_sq_}};
  }

 private:
  AdamKernelArgs kernel_args(const StepArgs& args, double beta1, double grad_multiplier,
                             const float* grad_multiplier_device = nullptr) const {
    AdamKernelArgs a{
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
        .grad_multiplier_device = grad_multiplier_device,
    };
    if (bias_correction_) {
      // 1 - beta^t from the fp32 betas, in double (DeepSpeed computes them on the host too)
      a.bias_correction1 = static_cast<float>(1 - std::pow(beta1, static_cast<double>(args.step)));
      a.bias_correction2 = static_cast<float>(1 - std::pow(double{beta2_}, static_cast<double>(args.step)));
    }
    return a;
  }

  static CopyDtype copy_dtype(const at::Tensor& dest) {
    switch (dest.scalar_type()) {
      case at::kFloat: return CopyDtype::kFloat;
      case at::kBFloat16: return CopyDtype::kBFloat16;
      case at::kHalf: return CopyDtype::kHalf;
      default: TORCH_CHECK(false, "Adam: parameter copy dtype ", dest.scalar_type(), "; allowed: fp32, bf16, fp16");
    }
  }

  // One kernel on [begin, end) of the shard: ours on CUDA, its CPU twin on the host.
  void run(at::Tensor& param, const at::Tensor& grad, const AdamKernelArgs& a, int64_t begin, int64_t end,
           ParamCopy copy) {
    if (end == begin) return;
    if (!device_.is_cuda()) {
      adam_step_host(f32(param) + begin, grad.const_data_ptr<float>() + begin, f32(exp_avg_) + begin,
                     f32(exp_avg_sq_) + begin, end - begin, a, copy);
      return;
    }
#ifdef ZEROTRAIN_WITH_CUDA
    const c10::cuda::CUDAGuard guard(device_);
    adam_step_cuda(f32(param) + begin, grad.const_data_ptr<float>() + begin, f32(exp_avg_) + begin,
                   f32(exp_avg_sq_) + begin, end - begin, a, c10::cuda::getCurrentCUDAStream(device_.index()), copy);
#else
    TORCH_CHECK(false, "Adam: the shard is on ", device_, " but zerotrain was built without CUDA");
#endif
  }

  // One kernel per run of the shard: the copy ranges (sorted, disjoint) and the gaps between them.
  void step_runs(at::Tensor& param, const at::Tensor& grad, const StepArgs& args, double beta1,
                 double grad_multiplier, const float* grad_multiplier_device,
                 const std::vector<ParamCopyRange>& copies) {
    const AdamKernelArgs a = kernel_args(args, beta1, grad_multiplier, grad_multiplier_device);
    std::vector<const ParamCopyRange*> order;
    for (const ParamCopyRange& c : copies) order.push_back(&c);
    std::sort(order.begin(), order.end(), [](auto* x, auto* y) { return x->offset < y->offset; });
    int64_t done = 0;
    for (const ParamCopyRange* c : order) {
      const at::Tensor& dest = c->dest;
      TORCH_CHECK(c->offset >= done && c->offset + dest.numel() <= numel_ && dest.is_contiguous() &&
                      dest.device() == device_,
                  "Adam.step_and_copy: copy range [", c->offset, ", ", c->offset + dest.numel(),
                  ") must lie in the shard [0, ", numel_, "), not overlap another, and be contiguous on ", device_);
      run(param, grad, a, done, c->offset, {});
      run(param, grad, a, c->offset, c->offset + dest.numel(), ParamCopy{dest.data_ptr(), copy_dtype(dest)});
      done = c->offset + dest.numel();
    }
    run(param, grad, a, done, numel_, {});
  }

  float beta1_, beta2_;  // fp32, as DeepSpeed's kernels take them (fp32_beta)
  double eps_, weight_decay_;
  bool adam_w_mode_, bias_correction_;
  int64_t numel_;
  at::Device device_;
  at::Tensor exp_avg_;     // (n,) fp32, param's device: first moment, not bias-corrected
  at::Tensor exp_avg_sq_;  // (n,) fp32, param's device: second moment, not bias-corrected
};

}  // namespace

std::unique_ptr<ShardOptimizer> make_adam_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                    const StateFactory& make_state) {
  return std::make_unique<AdamShardOptimizer>(cfg, param, make_state);
}

}  // namespace zerotrain::detail
