// Optimizers over a flat fp32 shard: the local partition of all parameters, one contiguous 1-D tensor, as ZeRO
// keeps them. One call updates the whole shard with as few kernels as possible (fused on GPU).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "zerotrain/config.h"

namespace zerotrain::detail {

// Where each parameter's elements sit in the local shard. A parameter may be split across ranks: a segment is
// the local piece of one parameter. Needed by optimizers whose update depends on whole-parameter norms (LAMB).
struct ShardSegment {
  int64_t param_index;  // index of the parameter in the model's parameter list (same on every rank)
  int64_t offset;       // first element of the piece in the local shard
  int64_t numel;        // elements of the piece
  int64_t param_offset = 0;  // first element of the piece within the parameter (flattened)
};

struct StepArgs {
  double lr;                    // learning rate for this step (from the schedule)
  int64_t step;                 // 1-based count of optimizer steps taken, this one included (bias correction)
  std::optional<double> beta1;  // OneCycle's cycled momentum: overrides betas[0] (Adam/Lamb/Lion) or momentum (SGD)
};

// A run of the shard whose updated values the model trains with: dest (contiguous, fp32 / bf16 / fp16, param's
// device) receives shard[offset, offset + dest.numel()), cast.
struct ParamCopyRange {
  int64_t offset;
  at::Tensor dest;
};

// The factor a step reads the gradient with (unscale and clip): grad * value * tensor. `tensor`: undefined, or one
// fp32 element on the shard's device that the step reads there (a clip factor computed on the device, so that the
// host does not wait for backward to finish before launching the step).
struct GradMultiplier {
  GradMultiplier(double v = 1.0) : value(v) {}  // NOLINT(google-explicit-constructor): a plain factor
  GradMultiplier(double v, at::Tensor t) : value(v), tensor(std::move(t)) {}
  double value;
  at::Tensor tensor;
};

class ShardOptimizer {
 public:
  virtual ~ShardOptimizer() = default;
  // Updates `param` ((n,) fp32, contiguous) in place from `grad` ((n,) fp32, same device), already unscaled and
  // clipped. Optimizer state lives on param's device, created at construction.
  virtual void step(at::Tensor& param, const at::Tensor& grad, const StepArgs& args) = 0;
  // step() on grad * grad_multiplier (the unscale-and-clip factor), then each range of `copies` written from the
  // updated shard. This form does it in passes (grad.mul_, step, copy_), so `grad` may change; optimizers with a
  // kernel that does it all in one pass over memory override it (Adam on CUDA).
  virtual void step_and_copy(at::Tensor& param, at::Tensor& grad, const StepArgs& args,
                             const GradMultiplier& grad_multiplier, const std::vector<ParamCopyRange>& copies);
  // Whether step_and_copy reads a GradMultiplier's tensor inside its own kernel (no extra pass over the gradient).
  virtual bool reads_multiplier_tensor() const { return false; }
  // Optimizers whose update is elementwise with a kernel that takes any range of the shard (Adam): an offloaded ZeRO
  // step pipelines the gradient's copy to the host, the update and the parameters' copy back, piece by piece.
  virtual bool steps_in_pieces() const { return false; }
  // step_and_copy on [begin, end) of the shard only (`grad` read only); `copy` (undefined: none) receives the updated
  // param[begin, end), cast. The caller covers the shard with disjoint pieces, each once per step.
  virtual void step_piece(at::Tensor& param, const at::Tensor& grad, const StepArgs& args, double grad_multiplier,
                          int64_t begin, int64_t end, const at::Tensor& copy);
  // Named state tensors ("exp_avg", "exp_avg_sq", "momentum_buffer", "sum", ...), each (n,) fp32, for
  // checkpoints; loading copies into them.
  virtual std::vector<std::pair<std::string, at::Tensor>> state() = 0;
};

// Sum-reduces a small fp32 tensor across the data-parallel ranks in place (LAMB's per-parameter norms). Identity
// on one rank.
using AllReduceSum = std::function<void(at::Tensor&)>;
// Makes an optimizer state tensor: zeros shaped like `like` (the shard), for the state named `name` (as state() names
// it). Unset: at::zeros_like on the shard's device. NVMe offload makes them in swap files (zero/swap_file.h).
using StateFactory = std::function<at::Tensor(const std::string& name, const at::Tensor& like)>;

// Builds the optimizer of `cfg` for a shard shaped like `param` (its device and numel). `segments` describe the
// shard's layout (LAMB uses them; others ignore them); `num_params` is the model's parameter count; `allreduce`
// is used by LAMB only. Throws ConfigError for OptimizerKind::kNone / kOther.
std::unique_ptr<ShardOptimizer> make_shard_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                     std::vector<ShardSegment> segments, int64_t num_params,
                                                     AllReduceSum allreduce, const StateFactory& make_state = {});

}  // namespace zerotrain::detail
