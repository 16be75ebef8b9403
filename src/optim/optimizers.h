// The optimizers behind make_shard_optimizer (shard_optimizer.cc), one per file, and the checks they share. The
// factory has validated `cfg` for the optimizer it asks for; each constructor allocates its state on param's device
// (or through make_state).
// docs/optimizers.md gives every update rule and the DeepSpeed / torch source it follows.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "optim/shard_optimizer.h"
#include "zerotrain/config.h"

#ifdef ZEROTRAIN_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "optim/optim_kernels.h"
#endif

namespace zerotrain::detail {

// Adam (adam_w_mode false: L2) and AdamW (true: decoupled decay), DeepSpeed FusedAdam (adam.cc).
std::unique_ptr<ShardOptimizer> make_adam_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                    const StateFactory& make_state);
// torch.optim.SGD: momentum, dampening, nesterov, weight_decay as L2 (sgd.cc).
std::unique_ptr<ShardOptimizer> make_sgd_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                    const StateFactory& make_state);
// DeepSpeed FusedLion (lion.cc).
std::unique_ptr<ShardOptimizer> make_lion_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                    const StateFactory& make_state);
// torch.optim.Adagrad: lr_decay, weight_decay as L2, initial_accumulator_value (adagrad.cc).
std::unique_ptr<ShardOptimizer> make_adagrad_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                    const StateFactory& make_state);
// DeepSpeed FusedLamb with one trust ratio per model parameter, its norms summed across ranks (lamb.cc).
std::unique_ptr<ShardOptimizer> make_lamb_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                    std::vector<ShardSegment> segments, int64_t num_params,
                                                    AllReduceSum allreduce);

// Checks what every step() relies on: param is the (numel,) fp32 contiguous shard the optimizer was built for and
// grad matches it (shape, dtype, device, contiguity), args.step >= 1. `optimizer` names the caller in messages.
void check_step_inputs(const char* optimizer, const at::Tensor& param, const at::Tensor& grad, int64_t numel,
                       const at::Device& device, const StepArgs& args);

// A beta as DeepSpeed's kernels see it: they take betas as fp32 and derive 1 - beta (exact in fp32) and the bias
// corrections from that value. Every path here does the same, so CPU, CUDA and DeepSpeed agree to rounding: with
// the double 0.999 instead, 1 - beta2 would differ by 1.3e-5 relative between paths (ATen's CUDA Adam rounds beta
// to fp32, its CPU Adam does not). Optimizers keep betas in float members: GCC 12.2's SLP vectoriser drops a
// double -> float -> double round trip done on two adjacent values at -O2, so a double holding the rounded value
// silently keeps the unrounded one.
inline float fp32_beta(double beta) { return static_cast<float>(beta); }

// The beta1 in effect for a step: StepArgs::beta1 (OneCycle's cycled momentum) when set, else the configured one.
inline float effective_beta1(const StepArgs& args, float configured) {
  return args.beta1 ? fp32_beta(*args.beta1) : configured;
}

// A state tensor of zeros like the shard: from make_state when given (NVMe offload), else on the shard's device.
inline at::Tensor new_state(const StateFactory& make_state, const std::string& name, const at::Tensor& like) {
  return make_state ? make_state(name, like) : at::zeros_like(like);
}

// fp32 data of a tensor the caller has checked (shard, state), for the raw-pointer kernel launchers.
inline float* f32(const at::Tensor& t) { return t.mutable_data_ptr<float>(); }

}  // namespace zerotrain::detail
