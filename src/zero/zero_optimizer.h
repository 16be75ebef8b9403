// The step of ZeRO stages 0-2 on this rank's fp32 shard: overflow check and global gradient norm (one scalar
// all-reduce), DeepSpeed's combined unscale-and-clip, the optimizer on the fp32 master shard, then publishing the
// updated 16-bit (or fp32) parameters: stage 0 writes them in place, stages 1/2 all-gather each bucket's chunks
// in pieces of at most allgather_bucket_size elements.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <optional>

#include "optim/shard_optimizer.h"
#include "precision/loss_scaler.h"
#include "zero/flat_layout.h"
#include "zerotrain/comm.h"
#include "zerotrain/config.h"

namespace zerotrain::detail {

struct StepResult {
  bool skipped = false;   // an inf/NaN gradient: parameters unchanged
  double grad_norm = 0;   // global L2 norm of the unscaled gradients, before clipping
};

class ZeroOptimizer {
 public:
  // `param_flat`: (total_numel,) in the training dtype; the model's parameters are views into it. The master
  // shard is initialized from it. `sharded`: stages 1/2 (the layout is sharded over comm's ranks).
  ZeroOptimizer(const FlatLayout& layout, at::Tensor param_flat, std::shared_ptr<Comm> comm, const Config& cfg,
                bool sharded);

  // Consumes the reduced gradients (fp32, the shard's shape; scaled by the loss scale) and updates the
  // parameters. `grad` is modified.
  StepResult step(at::Tensor& grad, double lr, std::optional<double> beta1);

  double loss_scale() const { return scaler_.scale(); }
  int64_t skipped_steps() const { return scaler_.skipped_steps(); }
  int64_t applied_steps() const { return applied_steps_; }
  at::Tensor& master() { return master_; }
  ShardOptimizer& optimizer() { return *optimizer_; }
  LossScaler& scaler() { return scaler_; }

 private:
  void publish();

  const FlatLayout& layout_;
  at::Tensor param_flat_;  // (total_numel,) training dtype, device
  at::Tensor master_;      // (shard_numel,) fp32, device: this rank's chunks, bucket by bucket
  std::shared_ptr<Comm> comm_;
  bool sharded_;
  double clip_;
  bool check_overflow_;
  int64_t allgather_bucket_size_;
  LossScaler scaler_;
  std::unique_ptr<ShardOptimizer> optimizer_;
  int64_t applied_steps_ = 0;
};

}  // namespace zerotrain::detail
