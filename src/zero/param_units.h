// ZeRO stage 3: parameters partitioned in units, gathered just before use and freed after.
//
// [Note: stage-3 units]
// A unit is a group of the FlatLayout (a transformer block, the embedding, the head, ...). Its parameters are
// persistent views into one full-size buffer in the training dtype; between uses the buffer's storage is resized to
// zero bytes, so the parameters keep their identity (autograd's saved tensors, AccumulateGrad nodes and the
// optimizer all see the same tensors) and only the data comes and goes. Between uses a rank keeps only its chunks
// of each bucket, in fp32: shard() IS the optimizer's master shard, so there is no second, 16-bit copy (model
// state is 16 bytes per parameter over N ranks with Adam: master 4, moments 8, gradient 4, the gradient only from
// a step's first reduction to its optimizer step: GradReducer::zero). With the optimizer offloaded to the CPU the
// master and moments live on the host and shard() is a training-dtype copy (2 + 4 bytes per parameter over N ranks
// on the device, the gradient included); with the parameters offloaded too, that copy lives on the host (the device
// keeps 4 bytes per parameter over N ranks, the gradient, and the gathered units). Gathering casts this
// rank's chunks to the training dtype and all-gathers each bucket, written through an alias of the buffer with its
// own version counter, so refilling a parameter that autograd saved does not count as modifying it.
//
// Forward runs in segments (CausalLM::set_segment_runner): a segment reads some units. Running segment s
//   1. gathers its units (waiting for a prefetch already in flight), then prefetches the units of the segments
//      that come next in the order recorded on the previous step (stage3_prefetch_bucket_size elements ahead,
//      never more than stage3_max_live_parameters gathered);
//   2. wraps the input in an identity autograd function whose backward says "this segment's backward is done"
//      (frees its units), and hooks the output's gradient to gather the units again before the segment's
//      backward runs (and to prefetch the segments before it);
//   3. frees its units unless they are used again within stage3_max_reuse_distance elements.
// Activation checkpointing (checkpoint = true) runs the segment without keeping activations; its backward gathers,
// recomputes and backpropagates the segment inside the outer backward (re-entrant), then frees.
// The order is recorded as the segments run: when it changes (dynamic control flow) prefetch simply stops for the
// rest of the step and the new order is used from the next one; a unit is always gathered on demand, so a wrong
// prediction costs only the unused prefetch. Every rank must run the same segments in the same order within a
// step (as with FSDP): the gathers are collectives.
// Units marked persistent (parameters below stage3_param_persistence_threshold) stay gathered; after each
// optimizer step they are re-gathered from the updated shards.
//
// [Note: segment chains]
// Segments that read the same units and follow one another, each taking the previous one's output as its only
// input that needs a gradient (the blocks of a joined unit: stage3_plan.h), form a chain: its backward gathers the
// units once (at whichever output's hook fires first) and frees them once, when the chain's first input has its
// gradient. So only the chain's first invocation wraps its input in PostBackward; the others pass their input
// through (an autograd node per segment and step is most of the per-segment host cost on small segments). The
// output hooks stay on every invocation, so whatever order the backward takes, the units are gathered before any of
// the chain's segments runs backward; the chain's state (acquired for backward, done) lives on its first
// invocation. A chain ends where the next invocation reads other units, takes another tensor, is nested, or is a
// recomputation.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "zero/flat_layout.h"
#include "zero/swap_file.h"
#include "zerotrain/comm.h"

namespace zerotrain::detail {

struct UnitSettings {
  int64_t prefetch_bucket_size = 50'000'000;     // elements gathered ahead of use; 0 turns prefetch off
  int64_t max_live_parameters = 1'000'000'000;   // gathered elements per rank, prefetch never exceeds it
  int64_t max_reuse_distance = 1'000'000'000;    // keep a unit gathered if used again within this many elements
  // dtype of shard(): fp32 (the optimizer's master shard itself), or the training dtype when the optimizer is
  // offloaded (its fp32 master lives on the host; shard() is then the device copy that gathers read)
  at::ScalarType shard_dtype = at::kFloat;
  // Parameter offload (`offload_param.device: "cpu"`, with the optimizer offloaded): shard() lives in host memory
  // (pinned when the training device is a GPU) and each gather copies this rank's chunks to the device first.
  bool shard_on_host = false;
  bool pin_memory = true;
  // Parameter offload to NVMe (`offload_param.device: "nvme"`, with shard_on_host): shard() lives in a swap file in
  // this directory (zero/swap_file.h); each gather reads this rank's chunks from it and drops them from memory again.
  std::string nvme_path;
  // ZeRO++ qwZ: gathers move int8 blocks and scales (zero/quantize.h, [Note: quantized gathers]).
  bool quantize_gathers = false;
};

using SegmentFunction = std::function<at::Tensor(const at::Tensor& input)>;

// Runs fn(input) without keeping its activations; backward calls before(), recomputes fn with grad enabled,
// backpropagates through it (parameters receive their gradients as usual), calls after() and returns the input's
// gradient. Any stage may use it.
at::Tensor checkpoint_segment(SegmentFunction fn, const at::Tensor& input, std::function<void()> before = {},
                              std::function<void()> after = {});

class ParamUnits {
 public:
  // `layout`: one group per unit. `params`: the trainable parameters in registration order (layout slot i is
  // params[i]), on any device and in any dtype. `persistent[u]`: unit u stays gathered. `options`: the training
  // device and dtype. Unit by unit, makes every parameter a view into its unit's buffer (copying and casting its
  // values there), broadcasts rank 0's values, keeps this rank's chunks and frees the unit unless persistent: the
  // device never holds more than one unit beyond the shards, so a model built on the host that does not fit on
  // one device can be partitioned over several. A parameter that holds no data (a deferred model's) is created
  // in place by materialize(param index, its full-size value on the device) instead.
  ParamUnits(const FlatLayout& layout, std::vector<at::Tensor> params, std::vector<bool> persistent,
             std::shared_ptr<Comm> comm, UnitSettings settings, at::TensorOptions options,
             const std::function<void(int param, at::Tensor& value)>& materialize = {});
  ~ParamUnits();
  ParamUnits(const ParamUnits&) = delete;
  ParamUnits& operator=(const ParamUnits&) = delete;

  // (shard_numel,) UnitSettings::shard_dtype: this rank's chunks, bucket by bucket, that gathers read. fp32: the
  // optimizer's master shard (it updates it in place); with the optimizer offloaded, the training dtype (the optimizer
  // writes it from its host master after each step).
  at::Tensor& shard() { return shard_; }
  // The swap file behind shard() with parameter offload to NVMe; null otherwise.
  const std::shared_ptr<SwapFile>& shard_swap() const { return shard_swap_; }
  int num_units() const { return static_cast<int>(units_.size()); }

  // The units each forward segment reads.
  void set_segments(std::vector<std::vector<int>> units_of_segment);
  // Runs segment s as fn(input); see [Note: stage-3 units].
  at::Tensor run_segment(int s, const SegmentFunction& fn, const at::Tensor& input, bool checkpoint);

  // run_segment in pieces, for callers that cannot hand over a function (module hooks of the Python binding):
  // begin_segment opens an invocation of segment s (gathers its units, prefetches the next); segment_input and
  // segment_output do to each tensor entering / leaving it what run_segment does to its input and output;
  // end_segment closes the innermost open invocation. Invocations nest. `record`: part of a training step (grad
  // enabled, or a module in training mode under an activation-checkpointing no_grad forward): kept for backward
  // and for the prefetch order; otherwise the units are freed at end_segment. `recompute`: the segment runs again
  // inside backward (the caller's activation checkpointing, re-entrant or not): it serves the backward of the
  // latest invocation of s whose backward has not finished.
  // `sole`: x is the only input of the invocation that needs a gradient (see [Note: segment chains]).
  void begin_segment(int s, bool record, bool recompute);
  at::Tensor segment_input(const at::Tensor& x, bool sole = false);
  void segment_output(const at::Tensor& y);
  void end_segment();

  // Gathers every unit / drops that use (re-entrant): for modules without segments and for user code that needs
  // full parameters. `exact`: user code reads or changes them (GatheredParameters): never the quantized values of
  // qwZ (units gathered quantized are gathered again); training's own gathers are quantized with qwZ.
  void acquire_all(bool exact = false);
  void release_all();
  // Runs fn with unit u gathered exactly (a collective: every rank calls it for the same units in the same order).
  void with_unit_gathered(int u, const std::function<void()>& fn);
  // While every unit is gathered: makes `root`'s full parameters everyone's and refreshes shard() from them.
  void broadcast_from(int root);

  // After autograd returns: frees what backward left gathered and keeps this step's order for prefetching.
  void end_backward();
  // After the optimizer updated shard(): re-gathers units that stay gathered, frees the others (stale).
  void after_step();

  int64_t live_numel() const;                 // elements gathered or being gathered now
  bool is_gathered(int unit) const;           // gathered or being gathered
  const std::vector<int>& recorded_order() const { return prev_order_; }  // segments of the last step
  int64_t gathers() const { return gathers_; }  // units all-gathered so far
  int64_t gather_batches() const { return gather_batches_; }  // collectives that gathered them
  int64_t chained() const { return chained_; }  // invocations that joined their predecessor's chain so far

  // Called by the autograd plumbing of run_segment.
  void on_pre_backward(int64_t invocation);
  void on_post_backward(int64_t invocation);

 private:
  enum class State { kFree, kInFlight, kReady };
  // Units gathered together: one collective (grouped where the backend can) for all of them; waited once.
  struct GatherBatch {
    std::unique_ptr<CommWork> work;
    std::function<void()> finish;  // after the collective: a quantized gather's dequantization into the units
    void wait() {
      if (work) {
        work->wait();
        work.reset();
      }
      if (finish) {
        auto f = std::move(finish);
        finish = nullptr;
        f();
      }
    }
  };
  struct Unit {
    int64_t begin = 0, numel = 0;  // flat range of the unit's buffer
    int first_bucket = 0, end_bucket = 0;
    bool persistent = false;
    bool quantized = false;  // its current values came from a qwZ gather
    at::Tensor full;    // (numel,) training dtype; parameters are views into it
    at::Tensor writer;  // same storage, own version counter: what collectives and copies write through
    State state = State::kFree;
    std::shared_ptr<GatherBatch> batch;  // while in flight: the collective that fills it (shared with others)
    // Per bucket, made once (views of the storage that gather/free reallocate, so they follow it): the bucket's
    // range of `writer` (the gather's output), this rank's chunk of it (the gather's input: gathers run in place)
    // and this rank's chunk of the master shard (what the gather casts into `gather_own`).
    std::vector<at::Tensor> gather_out, gather_own, gather_in;
    int uses = 0;
    int64_t walk_epoch = 0;  // prefetch's walk that last visited it
    bool prefetched = false;  // gathered by prefetch, not acquired since
  };
  struct Invocation {
    int segment = 0;
    bool acquired_for_backward = false;
    int pending_inputs = 0;      // inputs wrapped in PostBackward whose gradient has not arrived
    bool backward_done = false;  // released after its backward
    // [Note: segment chains]: the first invocation of the chain this one joined (-1: none, it heads its own), and
    // on a chain's first invocation its last one. The chain's backward state lives on its first invocation.
    int64_t chain_first = -1, chain_last = -1;
  };
  struct Open {
    int64_t invocation = -1;  // -1: not recorded (inference)
    int segment = 0;
    bool recompute = false;
  };

  // Appends an invocation of segment s to this step's order (noting a departure from the previous step's).
  int64_t record_invocation(int s);
  // Allocates the free units among `units` and gathers them, in one collective.
  void gather_async(const std::vector<int>& units);
  // Gathers every bucket of the given allocated units (in one collective): each rank casts its master chunk into
  // its slice of the unit's buffer, then the buffer is all-gathered in place.
  void launch_gathers(const std::vector<int>& units);
  // qwZ: quantizes `ins` (this rank's chunks, training dtype), all-gathers them, and sets batch.finish to write
  // every rank's dequantized chunks into `outs`.
  std::unique_ptr<CommWork> launch_quantized_gather(const std::vector<at::Tensor>& outs,
                                                    const std::vector<at::Tensor>& ins, GatherBatch& batch);
  void wait(int u);
  void free(int u);
  void unmark_prefetched(Unit& unit) {
    if (!unit.prefetched) return;
    unit.prefetched = false;
    prefetched_numel_ -= unit.numel;
  }
  int64_t chain_first(int64_t k) const {
    const int64_t first = invocations_[k].chain_first;
    return first < 0 ? k : first;
  }
  void acquire(const std::vector<int>& units, bool exact = false);
  void release(const std::vector<int>& units, bool backward, int64_t position);
  void prefetch(bool backward, int64_t position);
  bool will_reuse(int u, bool backward, int64_t position) const;
  // Visits the segments expected after `position`: the rest of the recorded forward, then its reverse (backward)
  // while in forward; the earlier invocations, latest first, while in backward. Stops when visit returns false.
  template <class Visit>
  void walk_ahead(bool backward, int64_t position, const Visit& visit) const;

  const FlatLayout& layout_;
  std::vector<at::Tensor> params_;
  std::shared_ptr<Comm> comm_;
  UnitSettings settings_;
  std::vector<Unit> units_;
  at::Tensor shard_;
  std::shared_ptr<SwapFile> shard_swap_;
  std::vector<std::vector<int>> units_of_;  // per segment, without persistent units
  std::vector<int64_t> segment_numel_;      // per segment: the elements of units_of_
  int64_t live_numel_ = 0;                  // elements of the units gathered or in flight
  bool exact_ = false;                      // gathers launched now are not quantized (acquire with exact)
  int64_t walk_epoch_ = 0;                  // prefetch walks so far (marks the units each has visited)
  int64_t prefetched_numel_ = 0;            // elements of the units marked prefetched
  bool all_small_ = false;                  // every partitioned unit is at most 1/8 of the prefetch bucket
  // will_reuse's index: per unit, its positions in prev_order_ / in this step's invocations_, and prefix sums of the
  // segments' elements along each ([i]: before position i).
  std::vector<std::vector<int64_t>> order_uses_, inv_uses_;
  std::vector<int64_t> order_prefix_, inv_prefix_;
  std::vector<Invocation> invocations_;     // segments run since the last end_backward, in order
  std::vector<Open> open_;                  // begin_segment without end_segment yet, innermost last
  // The last output segment_output saw of an outermost recorded invocation (not held: only compared with the next
  // invocation's input), and that invocation: what a next invocation on the same units may chain to.
  std::optional<c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>> last_output_;
  int64_t last_output_invocation_ = -1;
  int64_t chained_ = 0;                     // invocations chained to their predecessor so far
  std::vector<int> prev_order_;             // the previous step's segment order
  bool in_sync_ = true;                     // this step has followed prev_order_ so far
  int64_t gathers_ = 0;
  int64_t gather_batches_ = 0;
  mutable std::recursive_mutex mu_;         // hooks run on autograd's device threads
};

}  // namespace zerotrain::detail
