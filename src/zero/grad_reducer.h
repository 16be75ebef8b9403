// Gradient reduction for ZeRO stages 0-3.
//
// [Note: gradient path]
// A post-accumulate hook on every trainable parameter (on its AccumulateGrad node, as c10d's DDP Reducer does)
// takes param.grad the moment autograd has produced it and moves it into a flat buffer (small ones a few at a time,
// with one batched copy: see pending_grads_), freeing param.grad:
//   stage 0/1: added into the full fp32 accumulation buffer `acc_`; reduced only on the accumulation boundary
//              (stage 0: all-reduce in place; stage 1: reduce-scatter into this rank's fp32 gradient shard);
//   stage 2/3: added into a per-bucket staging buffer in the communication dtype and reduce-scattered on EVERY
//              micro-step, accumulating into the fp32 gradient shard: no full-size gradient is ever kept (at
//              stage 3 a bucket never spans two units, so a unit's gradients go as soon as its backward is done).
// When a bucket's last parameter arrives it is launched (with overlap_comm, from the hook, so communication
// overlaps the rest of backward; without it, after backward). Buckets are launched strictly in index order,
// identical on every rank, so collectives always match even when the graph differs between ranks; parameters
// that receive no gradient (unused) are flushed as zeros after backward. At most two buckets are in flight: the
// oldest lands before a third is launched, so staging memory stays two buckets however large the model
// (DeepSpeed's double buffering; on GPUs landing only makes the compute stream wait for that collective). A parameter may report more than once
// in one backward (used in two activation-checkpointed segments: each recomputation is its own autograd pass);
// the later parts are added, and parts arriving after their bucket was launched are collected per bucket and
// reduced after backward, bucket by bucket in order.
#pragma once

#include <ATen/ATen.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "torch/batched_copy.h"
#include "zero/flat_layout.h"
#include "zerotrain/comm.h"

namespace torch::autograd {
struct Node;
}

namespace zerotrain::detail {

struct ReduceSettings {
  int stage = 0;
  bool overlap_comm = false;
  at::ScalarType comm_dtype = at::kFloat;  // dtype of the collective
  double pre_scale = 1.0;                  // applied before the reduction (prescale / predivide)
  double post_scale = 1.0;                 // applied after it (averaging over ranks)
  // Stages 2-3: consecutive buckets are reduced together, one collective per this many elements (at least one
  // bucket); 0: each bucket alone. Stage 3 sets it for its units' small buckets (see GradReducer::enqueue).
  int64_t coalesce_numel = 0;
};

class GradReducer {
 public:
  // `params`: the trainable parameters in registration order, already views into the flat parameter buffer.
  GradReducer(const FlatLayout& layout, std::vector<at::Tensor> params, std::shared_ptr<Comm> comm,
              ReduceSettings settings);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Before backward: whether this micro-step ends the accumulation (stage 0/1 reduce only then).
  void begin_backward(bool boundary);
  // After autograd returns: launches buckets not yet launched (in order), waits for every reduction and lands
  // the results in grad_shard().
  void end_backward();
  // The reduced gradients this rank steps on, fp32: (shard_numel,) for stages 1-3, the whole (total_numel,)
  // buffer for stage 0. Valid after end_backward() of a boundary micro-step. Stages 1-3 allocate it (zeros) at the
  // first reduction after zero(), or here.
  at::Tensor& grad_shard();
  // After the optimizer step: clears the accumulated gradients (stages 1-3: frees the reduced shard).
  void zero();

 private:
  void on_grad_ready(int param);
  void launch_ready_in_order();
  void enqueue(int bucket);  // launches the bucket (stages 0-1) or adds it to the group (stages 2-3)
  void launch(int bucket);   // stages 0-1
  void flush_group();        // stages 2-3: one reduce-scatter for the grouped buckets
  // Stages 1-3: reduce-scatters ins[i] (bucket buckets[i], comm dtype; pre-scaled here) in one collective; each
  // result is added, post-scaled, to the bucket's range of grad_shard() when it lands.
  void reduce_scatter_to_shard(const std::vector<int>& buckets, std::vector<at::Tensor> ins);
  void launch_late(int bucket);
  void land_pending();  // lands the waiting small gradients (see pending_grads_)

  const FlatLayout& layout_;
  std::vector<at::Tensor> params_;
  std::shared_ptr<Comm> comm_;
  ReduceSettings settings_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // kept alive: autograd holds them weakly
  std::vector<uintptr_t> hook_keys_;                                    // our hook on each, for removal

  at::Tensor acc_;         // (total_numel,) fp32, stages 0/1: gradients summed over micro-steps
  at::Tensor grad_shard_;  // (shard_numel,) fp32 (stage 0: aliases acc_; stages 1-3: undefined between steps)
  at::TensorOptions shard_options_;  // fp32 on the parameters' device
  std::vector<at::Tensor> staging_;  // stages 2-3: per bucket, (bucket.numel,) comm dtype, alive while in flight
  // Stages 2-3: each bucket's reduction group (consecutive buckets, as flush_group() forms them), its offset there,
  // each group's elements, and the group's staging buffer this micro-step (the buckets' staging_ are views into it):
  // one allocation per group, made when its first gradient arrives (at most coalesce_numel elements at once; stage 2
  // groups are single buckets), instead of one per bucket (stage 3's small units: one per unit and step).
  std::vector<int> group_of_;
  std::vector<int64_t> offset_in_group_, group_numel_of_;
  std::vector<at::Tensor> group_staging_;
  // Per bucket: the ranges no parameter covers (the padding), zeroed before the bucket's collective: the
  // parameters' ranges are written by their first gradient (or zeroed at launch when none came).
  std::vector<std::vector<std::pair<int64_t, int64_t>>> gaps_;  // (offset in the bucket, numel)
  // Ranges of staging buffers to zero before their collective reads them (the padding, unused parameters): zeroed
  // together with one multi-tensor zero (one launch on CUDA) instead of a kernel each.
  std::vector<at::Tensor> pending_zeros_;

  // Gradients smaller than kPackNumel wait here, moved out of param.grad, and land together: stages 2-3 copy them
  // into their staging ranges with one batched copy (copy_spans, torch/batched_copy.h: one kernel launch on CUDA for
  // many gradients, no tensor view per gradient); stages 0-1 take a run of neighbouring slots (they arrive in layout
  // order), pack it with one such copy and add it to the accumulation buffer with one kernel. They land when kPackNumel elements wait (stages 0-1: or
  // the next one is not a neighbour or has another dtype), before a bucket is reduced, when a later part of one
  // arrives, and after backward. A landing kernel per parameter was most of the engine's host time per parameter
  // on a GPU (a launch is ~5-8 us); the price is at most kPackNumel elements of gradients held a little longer
  // (and, at stages 0-1, packed once more). Larger gradients land at once, as before.
  static constexpr int64_t kPackNumel = int64_t{1} << 24;
  std::vector<at::Tensor> pending_grads_;
  std::vector<void*> pending_dests_;                       // stages 2-3: where each lands in its bucket's staging
  std::vector<CopySpan> spans_;                            // land_pending's copies (kept: no allocation per landing)
  std::vector<int64_t> pending_offsets_;                   // stages 0-1: each one's slot offset
  int64_t span_begin_ = 0, span_end_ = 0;                  // stages 0-1: the run they cover
  int64_t pending_numel_ = 0;                              // stages 2-3

  std::mutex mu_;                   // hooks may run on autograd's device threads
  bool reduce_this_step_ = false;   // stage 0/1: boundary; stage 2: always
  std::vector<int> missing_;        // per bucket: parameters whose gradient has not arrived this micro-step
  std::vector<char> reported_;      // per parameter: its gradient arrived this micro-step
  std::vector<at::Tensor> late_;    // per bucket: gradient parts that arrived after the bucket was launched
  int next_launch_ = 0;             // buckets [0, next_launch_) are launched or grouped
  std::vector<int> group_;          // stages 2-3: buckets ready and waiting for the group's collective
  int64_t group_numel_ = 0;
  struct InFlight {
    std::unique_ptr<CommWork> work;
    std::function<void()> land;     // runs after wait(): scale and move the result into place
  };
  std::deque<InFlight> in_flight_;  // at most kMaxInFlight: each holds a bucket-sized buffer
  void land_oldest();
};

}  // namespace zerotrain::detail
