#include "zero/param_units.h"

#include "comm/comms_logger.h"
#include "engine/host_clock.h"
#include "torch/storage.h"
#include "zero/quantize.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <algorithm>

namespace zerotrain::detail {
namespace {

// The backward of a checkpointed segment: recompute, then backpropagate through the recomputation.
class RecomputeBackward final : public torch::autograd::Node {
 public:
  RecomputeBackward(SegmentFunction fn, at::Tensor input, std::function<void()> before, std::function<void()> after)
      : fn_(std::move(fn)),
        input_(std::move(input)),
        input_requires_grad_(input_.requires_grad()),
        before_(std::move(before)),
        after_(std::move(after)) {}

  std::string name() const override { return "zerotrain::RecomputeBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(fn_, "a checkpointed segment's backward ran twice (retain_graph is not supported with activation "
                     "checkpointing)");
    if (before_) before_();
    at::Tensor x = input_.detach();
    if (input_requires_grad_) x.requires_grad_(true);
    at::Tensor y;
    {
      at::AutoGradMode grad_on(true);
      y = fn_(x);
    }
    at::Tensor g = grads.at(0);
    if (!g.defined()) g = at::zeros_like(y);
    if (y.requires_grad()) torch::autograd::backward({y}, {g});
    if (after_) after_();
    at::Tensor gx = input_requires_grad_ ? x.grad() : at::Tensor();
    release_variables();
    return {gx};
  }

  void release_variables() override {
    fn_ = nullptr;
    input_.reset();
  }

 private:
  SegmentFunction fn_;
  at::Tensor input_;
  bool input_requires_grad_;
  std::function<void()> before_, after_;
};

// Identity in forward; its backward runs when everything upstream of the segment's input is done, i.e. the
// segment's own backward has finished. A plain autograd node rather than a torch::autograd::Function: a Function
// costs a context with a string-keyed saved-data map, a view of the returned input and CppNode's checks, in forward
// and again in backward, and stage 3 makes one per segment and step (host-bound on small units).
class PostBackward final : public torch::autograd::Node {
 public:
  PostBackward(ParamUnits* units, int64_t invocation) : units_(units), invocation_(invocation) {}
  std::string name() const override { return "zerotrain::PostBackward"; }
  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    units_->on_post_backward(invocation_);
    return std::move(grads);
  }

  // x itself for autograd's purposes (an alias: same storage and version counter), with this node as its history:
  // the gradient flows through unchanged into x's edge. The alias is made below autograd's view tracking (not a view
  // autograd knows of) but through the dispatcher, so a tensor subclass stays one.
  static at::Tensor wrap(const at::Tensor& x, ParamUnits* units, int64_t invocation) {
    std::shared_ptr<PostBackward> node(new PostBackward(units, invocation), torch::autograd::deleteNode);
    node->set_next_edges(torch::autograd::collect_next_edges(x));
    at::Tensor out;
    {
      const at::AutoDispatchBelowADInplaceOrView below_autograd;
      out = x.view_as(x);
    }
    torch::autograd::set_history(out, node);
    return out;
  }

 private:
  ParamUnits* units_;
  int64_t invocation_;
};

}  // namespace

at::Tensor checkpoint_segment(SegmentFunction fn, const at::Tensor& input, std::function<void()> before,
                              std::function<void()> after) {
  at::Tensor out;
  {
    at::NoGradGuard no_grad;
    out = fn(input);
  }
  if (!at::GradMode::is_enabled() || !out.is_floating_point()) return out;
  std::shared_ptr<RecomputeBackward> node(
      new RecomputeBackward(std::move(fn), input, std::move(before), std::move(after)), torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(input));
  torch::autograd::set_history(out, node);
  return out;
}

ParamUnits::ParamUnits(const FlatLayout& layout, std::vector<at::Tensor> params, std::vector<bool> persistent,
                       std::shared_ptr<Comm> comm, UnitSettings settings, at::TensorOptions options,
                       const std::function<void(int param, at::Tensor& value)>& materialize)
    : layout_(layout), params_(std::move(params)), comm_(std::move(comm)), settings_(settings) {
  TORCH_INTERNAL_ASSERT(params_.size() == layout_.slots().size());
  TORCH_INTERNAL_ASSERT(persistent.size() == layout_.groups().size());
  const auto opts = options;
  if (!settings_.nvme_path.empty()) {
    TORCH_INTERNAL_ASSERT(settings_.shard_on_host, "parameter offload to NVMe keeps the shard on the host side");
    shard_swap_ = std::make_shared<SwapFile>(settings_.nvme_path, "zero_optimization.offload_param.nvme_path",
                                             "param_shard", layout_.shard_numel(), settings_.shard_dtype);
  }
  shard_ = shard_swap_ ? shard_swap_->tensor()
           : settings_.shard_on_host
               ? at::empty({layout_.shard_numel()},
                           at::TensorOptions(settings_.shard_dtype)
                               .device(at::kCPU)
                               .pinned_memory(settings_.pin_memory && opts.device().is_cuda()))
               : at::empty({layout_.shard_numel()}, opts.dtype(settings_.shard_dtype));
  at::NoGradGuard no_grad;
  units_.resize(layout_.groups().size());
  for (size_t u = 0; u < units_.size(); ++u) {
    const Group& g = layout_.groups()[u];
    Unit& unit = units_[u];
    unit.begin = g.begin;
    unit.numel = g.numel;
    unit.first_bucket = g.first_bucket;
    unit.end_bucket = g.end_bucket;
    unit.persistent = persistent[u];
    unit.full = at::zeros({unit.numel}, opts);
    unit.writer = at::empty({0}, opts);
    unit.writer.set_(unit.full.storage(), 0, {unit.numel}, {1});
    for (int b = unit.first_bucket; b < unit.end_bucket; ++b) {
      const Bucket& bucket = layout_.buckets()[b];
      unit.gather_out.push_back(unit.writer.narrow(0, bucket.begin - unit.begin, bucket.numel));
      unit.gather_own.push_back(unit.gather_out.back().narrow(0, layout_.rank() * bucket.chunk, bucket.chunk));
      unit.gather_in.push_back(shard_.narrow(0, bucket.shard_offset, bucket.chunk));
      for (int p : bucket.params) {
        const ParamSlot& slot = layout_.slots()[p];
        at::Tensor view = unit.full.narrow(0, slot.offset - unit.begin, slot.numel).view(params_[p].sizes());
        if (materialize && holds_no_data(params_[p])) {
          materialize(p, view);
        } else {
          view.copy_(params_[p]);
        }
        params_[p].set_data(view);
      }
    }
    comm_->broadcast(unit.writer, 0);  // rank 0's values win, as at every stage
    for (size_t k = 0; k < unit.gather_in.size(); ++k) unit.gather_in[k].copy_(unit.gather_own[k]);
    unit.state = State::kReady;
    live_numel_ += unit.numel;
    if (!unit.persistent) free(static_cast<int>(u));
  }
  if (shard_swap_) shard_swap_->evict_all();  // what the loop wrote goes to the drive
}

ParamUnits::~ParamUnits() = default;

void ParamUnits::set_segments(std::vector<std::vector<int>> units_of_segment) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  segment_numel_.clear();
  for (auto& units : units_of_segment) {
    std::vector<int> kept;
    int64_t numel = 0;
    for (int u : units) {
      TORCH_INTERNAL_ASSERT(u >= 0 && u < num_units(), "segment unit ", u, " out of range");
      if (!units_[u].persistent && std::find(kept.begin(), kept.end(), u) == kept.end()) {
        kept.push_back(u);
        numel += units_[u].numel;
      }
    }
    units = std::move(kept);
    segment_numel_.push_back(numel);
  }
  units_of_ = std::move(units_of_segment);
  order_uses_.assign(units_.size(), {});
  inv_uses_.assign(units_.size(), {});
  all_small_ = settings_.prefetch_bucket_size > 0;
  for (const Unit& unit : units_) {
    if (!unit.persistent && unit.numel * 8 > settings_.prefetch_bucket_size) all_small_ = false;
  }
}

void ParamUnits::gather_async(const std::vector<int>& units) {
  std::vector<int> todo;
  todo.reserve(units.size());
  for (int u : units) {
    Unit& unit = units_[u];
    if (unit.state != State::kFree || std::find(todo.begin(), todo.end(), u) != todo.end()) continue;
    resize_storage(unit.full, static_cast<size_t>(unit.numel) * unit.full.element_size());
    live_numel_ += unit.numel;
    todo.push_back(u);
  }
  if (!todo.empty()) launch_gathers(todo);
}

void ParamUnits::launch_gathers(const std::vector<int>& units) {
  CommCaller caller("ParamUnits::launch_gathers");
  at::NoGradGuard no_grad;
  // The casts write `writer`'s views, which share no version counter with the parameters (see the constructor) and
  // are no graph's: below the autograd and view-tracking dispatch layers they cost less host time.
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  // Few host calls per unit: stage-3 steps gather every unit twice, and on small units the host's dispatch, not the
  // GPU, sets the pace (docs/performance.md, engine CPU time). Per batch one multi-tensor cast (each bucket's master
  // chunk into this rank's slice of the buffer: no send buffer to allocate; on one rank that is the whole gather)
  // and one collective.
  std::vector<at::Tensor> outs, ins, masters;
  for (int u : units) {
    Unit& unit = units_[u];
    for (size_t k = 0; k < unit.gather_out.size(); ++k) {
      outs.push_back(unit.gather_out[k]);
      ins.push_back(unit.gather_own[k]);
      masters.push_back(unit.gather_in[k]);
    }
  }
  if (settings_.shard_on_host && !ins.empty() && ins.front().device() != shard_.device()) {
    // Offloaded parameters: this rank's chunks come to the device first (asynchronously from pinned memory; the
    // optimizer writes the shard only after a step's gradients reached the host, which orders it after these).
    for (size_t k = 0; k < ins.size(); ++k) ins[k].copy_(masters[k], /*non_blocking=*/shard_.is_pinned());
  } else if (ins.size() == 1) {
    ins[0].copy_(masters[0]);
  } else if (!ins.empty()) {
    at::_foreach_copy_(ins, masters);
  }
  if (shard_swap_) {
    // The chunks were read (copies from pageable memory return when done): back to the drive only.
    for (const at::Tensor& m : masters) {
      const int64_t at = m.storage_offset() - shard_.storage_offset();
      shard_swap_->evict(at, at + m.numel());
    }
  }
  auto batch = std::make_shared<GatherBatch>();
  const bool persistent = std::any_of(units.begin(), units.end(), [&](int u) { return units_[u].persistent; });
  const bool quantize = comm_->world_size() > 1 && settings_.quantize_gathers && !persistent && !exact_;
  for (int u : units) units_[u].quantized = quantize;
  if (quantize) {
    batch->work = launch_quantized_gather(outs, ins, *batch);
  } else if (comm_->world_size() > 1) {
    batch->work = outs.size() == 1 ? comm_->all_gather_async(outs[0], ins[0])
                                   : comm_->all_gather_coalesced_async(outs, ins);
  }
  for (int u : units) {
    units_[u].batch = batch;
    units_[u].state = State::kInFlight;
  }
  gathers_ += static_cast<int64_t>(units.size());
  ++gather_batches_;
}

std::unique_ptr<CommWork> ParamUnits::launch_quantized_gather(const std::vector<at::Tensor>& outs,
                                                              const std::vector<at::Tensor>& ins,
                                                              GatherBatch& batch) {
  const int64_t world = comm_->world_size();
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (const at::Tensor& t : ins) {
    offsets.push_back(total);
    total += t.numel();
  }
  const int64_t padded = (total + kQuantGroup - 1) / kQuantGroup * kQuantGroup;
  // This rank's chunks side by side (the tail of the last block zero), then quantized into its row of the send.
  at::Tensor flat = at::empty({padded}, ins.front().options());
  std::vector<at::Tensor> parts;
  for (size_t k = 0; k < ins.size(); ++k) parts.push_back(flat.narrow(0, offsets[k], ins[k].numel()));
  at::_foreach_copy_(parts, ins);
  if (padded > total) flat.narrow(0, total, padded - total).zero_();
  const int64_t row = quantized_bytes(padded, kQuantGroup);
  at::Tensor send = at::empty({row}, ins.front().options().dtype(at::kChar));
  quantize_int8_into(flat, kQuantGroup, send);
  at::Tensor recv = at::empty({world * row}, send.options());
  auto work = comm_->all_gather_async(recv, send);
  batch.finish = [outs, offsets, recv, world, row, padded, send]() {
    at::NoGradGuard no_grad;
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    // (world, padded) in the training dtype: one kernel on a GPU
    const at::Tensor values = dequantize_int8(recv.view({world, row}), padded, kQuantGroup, outs.front().scalar_type());
    std::vector<at::Tensor> dst, src;
    for (size_t k = 0; k < outs.size(); ++k) {
      const int64_t chunk = outs[k].numel() / world;
      dst.push_back(outs[k].view({world, chunk}));
      src.push_back(values.narrow(1, offsets[k], chunk));
    }
    at::_foreach_copy_(dst, src);  // every rank's chunk, this one's too: all ranks read the same weights
  };
  return work;
}

void ParamUnits::wait(int u) {
  Unit& unit = units_[u];
  if (unit.state != State::kInFlight) return;
  unit.batch->wait();  // the first unit of a batch waits for all of it
  unit.batch.reset();
  unit.state = State::kReady;
}

void ParamUnits::free(int u) {
  Unit& unit = units_[u];
  if (unit.state == State::kFree) return;
  wait(u);
  resize_storage(unit.full, 0);
  unmark_prefetched(unit);
  live_numel_ -= unit.numel;
  unit.state = State::kFree;
}

namespace {
// Sets ParamUnits::exact_ for a scope, restoring it after (exceptions included).
struct ExactScope {
  ExactScope(bool& flag, bool value) : flag(flag), saved(flag) { flag = value; }
  ~ExactScope() { flag = saved; }
  bool& flag;
  bool saved;
};
}  // namespace

void ParamUnits::acquire(const std::vector<int>& units, bool exact) {
  const ExactScope scope(exact_, exact);
  gather_async(units);  // all in flight before waiting on any
  if (exact) {
    // Units that hold qwZ's values (gathered for training) are gathered again, exactly, in place.
    std::vector<int> again;
    for (int u : units) {
      wait(u);
      if (units_[u].quantized) again.push_back(u);
    }
    if (!again.empty()) launch_gathers(again);
  }
  for (int u : units) {
    wait(u);
    ++units_[u].uses;
    unmark_prefetched(units_[u]);
  }
}

void ParamUnits::release(const std::vector<int>& units, bool backward, int64_t position) {
  for (int u : units) {
    Unit& unit = units_[u];
    TORCH_INTERNAL_ASSERT(unit.uses > 0, "stage 3: unit ", u, " released more often than acquired");
    if (--unit.uses == 0 && !unit.persistent && !will_reuse(u, backward, position)) free(u);
  }
}

template <class Visit>
void ParamUnits::walk_ahead(bool backward, int64_t position, const Visit& visit) const {
  if (backward) {
    for (int64_t k = position - 1; k >= 0; --k) {
      if (!visit(invocations_[k].segment)) return;
    }
    return;
  }
  if (!in_sync_) return;
  const int64_t n = static_cast<int64_t>(prev_order_.size());
  for (int64_t k = position + 1; k < n; ++k) {
    if (!visit(prev_order_[k])) return;
  }
  if (!at::GradMode::is_enabled()) return;  // no backward follows
  for (int64_t k = n - 1; k >= 0; --k) {
    if (!visit(prev_order_[k])) return;
  }
}

bool ParamUnits::will_reuse(int u, bool backward, int64_t position) const {
  // Whether u is used again (in the order walk_ahead visits) with at most max_reuse_distance elements of other
  // segments in between. From each unit's uses and prefix sums of the segments' elements (kept as the order is
  // recorded) instead of a walk: on many small units a walk per release made the step's bookkeeping quadratic.
  const int64_t max = settings_.max_reuse_distance;
  if (backward) {
    // The latest earlier invocation using u; the elements of the invocations between it and this one.
    const std::vector<int64_t>& uses = inv_uses_[u];
    const auto it = std::lower_bound(uses.begin(), uses.end(), position);
    if (it == uses.begin()) return false;
    return inv_prefix_[position] - inv_prefix_[*std::prev(it) + 1] <= max;
  }
  if (!in_sync_) return false;
  const std::vector<int64_t>& uses = order_uses_[u];
  const int64_t n = static_cast<int64_t>(prev_order_.size());
  const auto it = std::upper_bound(uses.begin(), uses.end(), position);
  if (it != uses.end()) return order_prefix_[*it] - order_prefix_[position + 1] <= max;  // later in this forward
  if (!at::GradMode::is_enabled() || uses.empty()) return false;  // no backward follows
  // In backward, which walks the order in reverse: first at u's last use in forward.
  return (order_prefix_[n] - order_prefix_[position + 1]) + (order_prefix_[n] - order_prefix_[uses.back() + 1]) <= max;
}

void ParamUnits::prefetch(bool backward, int64_t position) {
  if (settings_.prefetch_bucket_size <= 0) return;
  const int64_t bucket = settings_.prefetch_bucket_size;
  // The units prefetched and not used since lie first on the path ahead (the walk below gathers in path order and
  // the segments use them from its front): when they alone fill the window, the walk would gather nothing. This
  // skips the walk for most segments of a forward or backward on many small units.
  if (prefetched_numel_ >= bucket || (all_small_ && 2 * prefetched_numel_ > bucket)) return;
  // `ahead`: elements of the units the coming segments use that are gathered or in flight already, counted along
  // the walk (each unit once), so a unit kept gathered for a reuse further on (the forward's units, kept for
  // backward within stage3_max_reuse_distance) counts only where it is needed, not as prefetch already done: counting
  // every gathered unit stopped the prefetch for the rest of a forward once the kept units passed one bucket.
  const int64_t epoch = ++walk_epoch_;
  int64_t ahead = 0;
  int64_t live = live_numel_;
  std::vector<int> todo;
  int64_t walked = 0;  // elements of the segments ahead visited so far
  walk_ahead(backward, position, [&](int s) {
    for (int u : units_of_[s]) {
      Unit& unit = units_[u];
      if (unit.walk_epoch == epoch) continue;  // seen in this walk
      unit.walk_epoch = epoch;
      if (unit.state != State::kFree) {
        if (unit.uses == 0) ahead += unit.numel;  // gathered and not in use: already ahead
        continue;
      }
      if (ahead >= bucket || live + unit.numel > settings_.max_live_parameters) return false;
      // Small units (8 or more to a prefetch bucket) are gathered in batches: while more than half a bucket is
      // ahead and the next free unit is not needed within half a bucket, the window waits to refill, so one
      // collective carries many units (a unit at a time, each collective's host cost would outweigh its GPU time).
      // Larger units keep DeepSpeed's sliding window (gather while less than a bucket is ahead).
      if (todo.empty() && unit.numel * 8 <= bucket && 2 * ahead > bucket && 2 * walked >= bucket) return false;
      todo.push_back(u);
      ahead += unit.numel;
      live += unit.numel;
    }
    walked += segment_numel_[s];
    return ahead < bucket;
  });
  gather_async(todo);  // one collective for all
  for (int u : todo) {
    units_[u].prefetched = true;
    prefetched_numel_ += units_[u].numel;
  }
}

at::Tensor ParamUnits::run_segment(int s, const SegmentFunction& fn, const at::Tensor& input, bool checkpoint) {
  HostScope host;
  std::unique_lock<std::recursive_mutex> lock(mu_);
  TORCH_CHECK(s >= 0 && s < static_cast<int>(units_of_.size()), "stage 3: segment ", s, " is not one of the ",
              units_of_.size(), " segments");
  const bool grad = at::GradMode::is_enabled();
  if (!(checkpoint && grad)) {
    begin_segment(s, /*record=*/true, /*recompute=*/false);
    struct End {
      ParamUnits* self;
      ~End() { self->end_segment(); }
    } end{this};
    const at::Tensor in = segment_input(input, /*sole=*/true);
    at::Tensor out;
    {
      HostPause model_forward;
      out = fn(in);
    }
    segment_output(out);
    return out;
  }
  const int64_t k = record_invocation(s);
  const std::vector<int>& units = units_of_[s];
  acquire(units);
  prefetch(/*backward=*/false, k);
  struct Release {
    ParamUnits* self;
    const std::vector<int>& units;
    int64_t k;
    ~Release() { self->release(units, /*backward=*/false, k); }
  } release_after{this, units, k};
  // Backward gathers, recomputes and frees inside the recompute node.
  HostPause model_forward;  // checkpoint_segment runs the model's forward
  return checkpoint_segment(
      fn, input,
      [this, k] {
        HostScope host;
        std::lock_guard<std::recursive_mutex> l(mu_);
        acquire(units_of_[invocations_[k].segment]);
        prefetch(/*backward=*/true, k);
      },
      [this, k] {
        HostScope host;
        std::lock_guard<std::recursive_mutex> l(mu_);
        Invocation& inv = invocations_[k];
        inv.backward_done = true;
        release(units_of_[inv.segment], /*backward=*/true, k);
      });
}

int64_t ParamUnits::record_invocation(int s) {
  const int64_t k = static_cast<int64_t>(invocations_.size());
  invocations_.push_back({s});
  if (inv_prefix_.empty()) inv_prefix_.push_back(0);
  inv_prefix_.push_back(inv_prefix_.back() + segment_numel_[s]);
  for (int u : units_of_[s]) inv_uses_[u].push_back(k);
  if (in_sync_ && (k >= static_cast<int64_t>(prev_order_.size()) || prev_order_[k] != s)) {
    in_sync_ = false;
    // What was prefetched along the old order is no longer known to lie ahead: prefetch's shortcut must not count it.
    for (Unit& unit : units_) unmark_prefetched(unit);
  }
  return k;
}

void ParamUnits::begin_segment(int s, bool record, bool recompute) {
  HostScope host;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  TORCH_CHECK(s >= 0 && s < static_cast<int>(units_of_.size()), "stage 3: segment ", s, " is not one of the ",
              units_of_.size(), " segments");
  const std::vector<int>& units = units_of_[s];
  if (recompute) {
    for (int64_t k = static_cast<int64_t>(invocations_.size()) - 1; k >= 0; --k) {
      if (invocations_[k].segment != s || invocations_[k].backward_done) continue;
      acquire(units);
      prefetch(/*backward=*/true, k);
      open_.push_back({k, s, true});
      return;
    }
    // No forward invocation to serve (the segment did not run in this step's forward): an ordinary one.
  }
  if (!record) {
    acquire(units);
    open_.push_back({-1, s, false});
    return;
  }
  const int64_t k = record_invocation(s);
  acquire(units);
  prefetch(/*backward=*/false, k);
  open_.push_back({k, s, false});
}

at::Tensor ParamUnits::segment_input(const at::Tensor& x, bool sole) {
  HostScope host;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  TORCH_CHECK(!open_.empty(), "stage 3: segment_input outside begin_segment/end_segment");
  const Open& open = open_.back();
  if (open.invocation < 0 || !at::GradMode::is_enabled() || !x.defined() || !x.requires_grad()) return x;
  const int64_t k = open.invocation;
  Invocation& inv = invocations_[k];
  // A non-re-entrant recomputation builds a graph autograd throws away: the forward's wrappers stay in charge.
  if (open.recompute && (inv.pending_inputs > 0 || inv.chain_first >= 0)) return x;
  // [Note: segment chains]: the previous invocation's output, on the same units, as the only input: join its chain.
  if (sole && !open.recompute && open_.size() == 1 && inv.pending_inputs == 0 && inv.chain_first < 0 &&
      last_output_invocation_ == k - 1 && last_output_) {
    const auto previous = last_output_->lock();
    if (previous.get() == x.unsafeGetTensorImpl() && units_of_[invocations_[k - 1].segment] == units_of_[inv.segment]) {
      const int64_t first = chain_first(k - 1);
      inv.chain_first = first;
      invocations_[first].chain_last = k;
      ++chained_;
      return x;
    }
  }
  ++inv.pending_inputs;
  return PostBackward::wrap(x, this, k);
}

void ParamUnits::segment_output(const at::Tensor& y) {
  HostScope host;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  TORCH_CHECK(!open_.empty(), "stage 3: segment_output outside begin_segment/end_segment");
  const Open& open = open_.back();
  const int64_t k = open.invocation;
  if (k < 0 || !at::GradMode::is_enabled() || !y.defined() || !y.requires_grad()) return;
  y.register_hook([this, k](const at::Tensor&) { on_pre_backward(k); });
  if (!open.recompute && open_.size() == 1) {
    last_output_.emplace(y.getIntrusivePtr());
    last_output_invocation_ = k;
  }
}

void ParamUnits::end_segment() {
  HostScope host;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  TORCH_CHECK(!open_.empty(), "stage 3: end_segment without begin_segment");
  const Open open = open_.back();
  open_.pop_back();
  const std::vector<int>& units = units_of_[open.segment];
  if (open.invocation < 0) {  // inference: nothing follows
    for (int u : units) {
      TORCH_INTERNAL_ASSERT(units_[u].uses > 0, "stage 3: unit ", u, " released more often than acquired");
      if (--units_[u].uses == 0 && !units_[u].persistent) free(u);
    }
    return;
  }
  if (!open.recompute) {
    release(units, /*backward=*/false, open.invocation);
    return;
  }
  Invocation& inv = invocations_[chain_first(open.invocation)];
  if (inv.acquired_for_backward) {
    release(units, /*backward=*/true, open.invocation);  // the forward's own hooks hold the units for backward
  } else {
    inv.acquired_for_backward = true;  // re-entrant: the recomputed graph's backward releases them
  }
}

void ParamUnits::on_pre_backward(int64_t k) {
  HostScope host;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  TORCH_INTERNAL_ASSERT(k >= 0 && k < static_cast<int64_t>(invocations_.size()), "stage 3: invocation ", k,
                        " of ", invocations_.size());
  Invocation& inv = invocations_[chain_first(k)];  // a chain gathers once, at its first hook
  if (inv.acquired_for_backward || inv.backward_done) return;
  inv.acquired_for_backward = true;
  acquire(units_of_[inv.segment]);
  prefetch(/*backward=*/true, k);
}

void ParamUnits::on_post_backward(int64_t k) {
  HostScope host;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  Invocation& inv = invocations_.at(k);
  // Every input's gradient must have arrived: one that is used only late in the segment's forward gets its
  // gradient before the rest of the segment's backward has run.
  if (inv.pending_inputs > 0 && --inv.pending_inputs > 0) return;
  if (!inv.acquired_for_backward) return;
  inv.acquired_for_backward = false;
  inv.backward_done = true;
  for (int64_t j = k + 1; j <= inv.chain_last; ++j) invocations_[j].backward_done = true;
  release(units_of_[inv.segment], /*backward=*/true, k);
}

void ParamUnits::acquire_all(bool exact) {
  HostScope host;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::vector<int> all;
  for (int u = 0; u < num_units(); ++u) all.push_back(u);
  acquire(all, exact);
}

void ParamUnits::release_all() {
  HostScope host;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  for (int u = 0; u < num_units(); ++u) {
    Unit& unit = units_[u];
    TORCH_INTERNAL_ASSERT(unit.uses > 0, "stage 3: release_all without acquire_all");
    if (--unit.uses == 0 && !unit.persistent) free(u);
  }
}

void ParamUnits::with_unit_gathered(int u, const std::function<void()>& fn) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  acquire({u}, /*exact=*/true);
  struct Release {
    ParamUnits* self;
    int u;
    ~Release() {
      if (--self->units_[u].uses == 0 && !self->units_[u].persistent) self->free(u);
    }
  } release{this, u};
  fn();
}

void ParamUnits::broadcast_from(int root) {
  CommCaller caller("ParamUnits::broadcast_from");
  std::lock_guard<std::recursive_mutex> lock(mu_);
  at::NoGradGuard no_grad;
  for (int u = 0; u < num_units(); ++u) {
    Unit& unit = units_[u];
    TORCH_INTERNAL_ASSERT(unit.state != State::kFree, "broadcast_from: unit ", u, " is not gathered");
    wait(u);
    comm_->broadcast(unit.writer, root);
    for (size_t k = 0; k < unit.gather_in.size(); ++k) {
      at::Tensor& master = unit.gather_in[k];
      const at::Tensor value = unit.gather_own[k].to(master.device());  // offloaded parameters: compared on the host
      // Only parameters that changed take their 16-bit value: the others keep their fp32 precision.
      master.copy_(at::where(value != master.to(value.scalar_type()), value.to(at::kFloat), master));
    }
  }
}

void ParamUnits::end_backward() {
  HostScope host;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  for (auto& inv : invocations_) {
    if (inv.acquired_for_backward) {  // a segment whose input needed no gradient (the embedding)
      inv.acquired_for_backward = false;
      for (int u : units_of_[inv.segment]) --units_[u].uses;
    }
  }
  for (int u = 0; u < num_units(); ++u) {
    if (!units_[u].persistent && units_[u].uses == 0) free(u);
  }
  prev_order_.clear();
  for (const auto& inv : invocations_) prev_order_.push_back(inv.segment);
  // For will_reuse: this step's index of the invocations becomes the recorded order's (prev_order_ is that order).
  order_uses_.swap(inv_uses_);
  for (auto& uses : inv_uses_) uses.clear();
  order_prefix_.swap(inv_prefix_);
  if (order_prefix_.empty()) order_prefix_.push_back(0);
  inv_prefix_.clear();
  invocations_.clear();
  open_.clear();
  last_output_.reset();
  last_output_invocation_ = -1;
  in_sync_ = true;
}

void ParamUnits::after_step() {
  HostScope host;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::vector<int> refill;
  for (int u = 0; u < num_units(); ++u) {
    Unit& unit = units_[u];
    if (unit.state == State::kFree) continue;
    wait(u);
    if (!unit.persistent && unit.uses == 0) {
      free(u);  // stale
      continue;
    }
    refill.push_back(u);
  }
  if (refill.empty()) return;
  // In place (the storage is already the right size), each unit as it was gathered: qwZ's values stay quantized,
  // exact ones (persistent units, a GatheredParameters scope) stay exact.
  std::vector<int> quantized, exact;
  for (int u : refill) (units_[u].quantized ? quantized : exact).push_back(u);
  if (!quantized.empty()) launch_gathers(quantized);
  if (!exact.empty()) {
    const ExactScope scope(exact_, true);
    launch_gathers(exact);
  }
  for (int u : refill) wait(u);
}

int64_t ParamUnits::live_numel() const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return live_numel_;
}

bool ParamUnits::is_gathered(int u) const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return units_.at(u).state != State::kFree;
}

}  // namespace zerotrain::detail
