// The step of ZeRO stages 0-3 on this rank's fp32 shard: overflow check and global gradient norm (one scalar
// all-reduce), DeepSpeed's combined unscale-and-clip, the optimizer on the fp32 master shard, then publishing the
// updated 16-bit (or fp32) parameters: stage 0 writes them in place, stages 1/2 all-gather each bucket's chunks
// in pieces of at most allgather_bucket_size elements; stage 3 publishes nothing (units gather from the master).
//
// Optimizer offload to the CPU (ZeRO-Offload, `offload_optimizer.device: "cpu"`, stages 1-3): the master shard and
// the optimizer state live in host memory (pinned when `pin_memory` and the parameters are on a GPU); each step copies
// the reduced gradient shard to the host after the norm, runs the optimizer's CPU implementation there (Adam: one
// multi-threaded pass that also writes the updated shard in the training dtype; others: step, then a cast) and
// copies that to this rank's chunks on the device (asynchronously, from pinned memory) before the all-gather. Device
// memory keeps the parameters and the gradient shard only: 12 bytes per parameter of this rank's shard move to the
// host. At stage 3 the "parameters" are the units' shard in the training dtype (ParamUnits::shard()), which the
// upload writes and the units gather from; nothing is all-gathered after the step.
// To NVMe (`offload_optimizer.device: "nvme"`): the same, with the master shard and the optimizer state in swap files
// on the drive (zero/swap_file.h, [Note: NVMe offload]).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "optim/shard_optimizer.h"
#include "precision/loss_scaler.h"
#include "zero/flat_layout.h"
#include "zero/swap_file.h"
#include "zerotrain/comm.h"
#include "zerotrain/config.h"

namespace zerotrain::detail {

struct StepResult {
  bool skipped = false;   // an inf/NaN gradient: parameters unchanged
  // The global L2 norm of the unscaled gradients, before clipping: 0-dim double on the gradients' device (reading
  // it makes the host wait for backward; the step itself may not have: [Note: a step the host does not wait for]).
  at::Tensor grad_norm;
};

// DeepSpeed's unscale-and-clip factor (unscale_and_clip_grads): a step reads grad * factor, factor =
// 1 / (max((norm + 1e-6) / clip, 1) * scale), `norm` the unscaled global norm; clip <= 0: 1 / scale. A NaN norm clips
// nothing (DeepSpeed's `if clip > 1`). The _tensor form computes the same double arithmetic on the norm's device
// (dividing by device tensors: CUDA divides by a plain number as a multiplication by its reciprocal, one bit off) and
// returns one fp32 element, equal to the host form's value cast to fp32, bit for bit.
double clip_multiplier(double norm, double clip, double scale);
at::Tensor clip_multiplier_tensor(const at::Tensor& norm, double clip, double scale);

// Where the training-dtype parameters live.
enum class ParamPlacement {
  kReplicated,  // stage 0: (total_numel,) flat buffer, every rank owns all of it
  kGathered,    // stages 1/2: (total_numel,) flat buffer, sharded ownership, all-gathered after each step
  kShardOnly,   // stage 3: (shard_numel,), this rank's chunks only: the master shard itself (fp32), or, with the
                // optimizer offloaded, its device copy in the training dtype
};

class ZeroOptimizer {
 public:
  // `params`: the training-dtype parameters as `placement` says; the master shard is initialized from them.
  // `weight_decay`: empty, or per parameter (layout slot) its weight decay where it differs from the config's
  // (DeepSpeed's param groups); supported for optimizers whose decay is decoupled (AdamW, Adam with adam_w_mode,
  // Lion) or an L2 term of the gradient (Adam without adam_w_mode, SGD, Adagrad); Lamb: std::invalid_argument.
  // `lr_scale`: empty, or per parameter its multiplier of the learning rate (param groups with their own lr): the
  // step interpolates those runs between their values before and after the optimizer's pass (every optimizer here
  // moves a parameter by lr times a direction that does not depend on lr), at the cost of a copy of the runs.
  ZeroOptimizer(const FlatLayout& layout, at::Tensor params, std::shared_ptr<Comm> comm, const Config& cfg,
                ParamPlacement placement, const std::vector<std::optional<double>>& weight_decay = {},
                const std::vector<std::optional<double>>& lr_scale = {});

  // Consumes the reduced gradients (fp32, the shard's shape; scaled by the loss scale) and updates the
  // parameters. `grad` is modified.
  StepResult step(at::Tensor& grad, double lr, std::optional<double> beta1);

  // Re-reads the master shard from the training-dtype parameters (after user code changed them): elements whose
  // 16-bit value differs from the rounded master take it, the others keep their fp32 value.
  void load_master();

  // After loading a checkpoint into master(): sets the step count and writes the parameters from the master.
  void restore(int64_t applied_steps) {
    applied_steps_ = applied_steps;
    publish();
    evict_swapped();
  }
  // NVMe offload: writes the master shard and optimizer state back to their swap files and drops them from host
  // memory (after anything that read or wrote them whole: a checkpoint's save or load).
  void evict_swapped();
  // NVMe parameter offload: the units' shard (the parameters this step writes) is in this swap file; the step evicts
  // it piece by piece with its own.
  void add_swap(std::shared_ptr<SwapFile> swap) { swaps_.push_back(std::move(swap)); }

  double loss_scale() const { return scaler_.scale(); }
  int64_t skipped_steps() const { return scaler_.skipped_steps(); }
  int64_t applied_steps() const { return applied_steps_; }
  at::Tensor& master() { return master_; }
  ShardOptimizer& optimizer() { return *optimizer_; }
  LossScaler& scaler() { return scaler_; }

 private:
  // This rank's chunks of the training parameters, as ranges of the master shard (none at stage 3).
  std::vector<ParamCopyRange> local_copies() const;
  // Writes local_copies() from the master, then gather().
  void publish();
  // Offloaded: copies elements [begin, end) of `host` (the updated shard in the training dtype, or the fp32 master)
  // into `dests` (local_copies(): this rank's chunks on the device), where they cover them.
  void upload(const at::Tensor& host, int64_t begin, int64_t end, const std::vector<ParamCopyRange>& dests);
  // Offloaded, with an optimizer that steps in pieces (Adam): the gradient's copy to the host, the update (unscale
  // and clip folded in, the training-dtype copy written as it goes) and the copies back to local_copies(), pipelined
  // piece by piece.
  void step_offloaded(const at::Tensor& grad, const StepArgs& args, double grad_multiplier);
  // All-gathers every bucket's chunks into the training parameters (stages 1/2 on more than one rank).
  void gather();

  const FlatLayout& layout_;
  at::Tensor param_flat_;  // training dtype, device: (total_numel,); kShardOnly: (shard_numel,), see ParamPlacement
  at::Tensor master_;      // (shard_numel,) fp32, device (host when offloaded): this rank's chunks, bucket by bucket
  // Optimizer offload: host buffers of the shard's gradient (fp32) and of the updated parameters in the training
  // dtype (undefined when that is fp32: master_ itself is copied).
  bool offload_ = false;
  at::Tensor grad_host_, param_host_;
  // NVMe offload: the swap files behind master_ (when it is its own tensor) and the optimizer's state tensors.
  std::vector<std::shared_ptr<SwapFile>> swaps_;
  std::shared_ptr<Comm> comm_;
  ParamPlacement placement_;
  bool sharded_;
  double clip_;
  bool check_overflow_;
  int64_t allgather_bucket_size_;
  LossScaler scaler_;
  std::unique_ptr<ShardOptimizer> optimizer_;
  int64_t applied_steps_ = 0;
  bool master_initialized_ = false;
  // A run of the master shard whose per-parameter value (weight decay, lr multiplier) differs from the default.
  struct Run {
    int64_t offset, numel;
    double value;
  };
  // The runs of `per_param` (by layout slot; empty: none) whose value is set and not `same`, adjacent pieces with one
  // value merged; `check(value, param_index)` throws for values the optimizer cannot take.
  std::vector<Run> runs_of(const std::vector<std::optional<double>>& per_param, double same,
                           const std::function<void(double, int64_t)>& check) const;
  // Per-parameter weight decay: runs whose decay differs from the optimizer's (cfg), and how the optimizer applies
  // decay. The step corrects those runs before the (single) optimizer pass: decoupled decay scales the parameter by
  // (1 - lr wd_run) / (1 - lr wd); L2 decay adds (wd_run - wd) param to the gradient.
  std::vector<Run> decay_runs_;
  double weight_decay_ = 0;
  bool decoupled_decay_ = true;
  void correct_weight_decay(at::Tensor& grad, double lr, double grad_multiplier);
  // Per-parameter learning-rate multipliers: runs whose multiplier is not 1.
  std::vector<Run> lr_runs_;
};

}  // namespace zerotrain::detail
