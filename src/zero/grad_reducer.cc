#include "zero/grad_reducer.h"
#include "comm/comms_logger.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>

#include "engine/host_clock.h"
#include "torch/batched_copy.h"

namespace zerotrain::detail {
namespace {

// Calls `fn` after AccumulateGrad has stored the parameter's gradient.
class ReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  explicit ReadyHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    fn_();
    return outputs;
  }

 private:
  std::function<void()> fn_;
};

// Views into a flat buffer with one as_strided call each (not narrow/reshape chains: these run once per parameter,
// and backward on small tensors is host-bound). Offsets count from `flat`'s first element, whatever view it is.
// The elements [offset, offset + like.numel()) shaped like `like`, a contiguous tensor:
at::Tensor region_of(const at::Tensor& flat, int64_t offset, const at::Tensor& like) {
  return flat.as_strided(like.sizes(), like.strides(), flat.storage_offset() + offset);
}
// The elements [offset, offset + numel), 1-D:
at::Tensor range_of(const at::Tensor& flat, int64_t offset, int64_t numel) {
  return flat.as_strided({numel}, {1}, flat.storage_offset() + offset);
}

}  // namespace

GradReducer::GradReducer(const FlatLayout& layout, std::vector<at::Tensor> params, std::shared_ptr<Comm> comm,
                         ReduceSettings settings)
    : layout_(layout), params_(std::move(params)), comm_(std::move(comm)), settings_(settings) {
  TORCH_INTERNAL_ASSERT(params_.size() == layout_.slots().size());
  const auto fp32 = params_.front().options().dtype(at::kFloat);
  shard_options_ = fp32;
  if (settings_.stage <= 1) acc_ = at::zeros({layout_.total_numel()}, fp32);
  // Stages 1-3 allocate the shard when the first reduction of a step lands (see zero()).
  if (settings_.stage == 0) grad_shard_ = acc_;
  staging_.resize(layout_.buckets().size());
  for (const Bucket& bucket : layout_.buckets()) {
    std::vector<std::pair<int64_t, int64_t>> covered;
    for (int p : bucket.params) {
      covered.emplace_back(layout_.slots()[p].offset - bucket.begin, layout_.slots()[p].numel);
    }
    std::sort(covered.begin(), covered.end());
    std::vector<std::pair<int64_t, int64_t>> gaps;
    int64_t at = 0;
    for (const auto& [offset, numel] : covered) {
      if (offset > at) gaps.emplace_back(at, offset - at);
      at = std::max(at, offset + numel);
    }
    if (at < bucket.numel) gaps.emplace_back(at, bucket.numel - at);
    gaps_.push_back(std::move(gaps));
  }
  // Stages 2-3: the reduction groups flush_group() will form, known up front (consecutive buckets until
  // coalesce_numel elements; the rest at the end of backward), so a group's staging is one allocation.
  if (settings_.stage >= 2) {
    const int n = static_cast<int>(layout_.buckets().size());
    group_of_.resize(n);
    offset_in_group_.resize(n);
    int64_t sum = 0;
    for (int b = 0; b < n; ++b) {
      if (sum == 0) group_numel_of_.push_back(0);
      group_of_[b] = static_cast<int>(group_numel_of_.size()) - 1;
      offset_in_group_[b] = sum;
      sum += layout_.buckets()[b].numel;
      group_numel_of_.back() = sum;
      if (sum >= settings_.coalesce_numel) sum = 0;
    }
    group_staging_.resize(group_numel_of_.size());
  }
  missing_.resize(layout_.buckets().size());
  reported_.assign(params_.size(), 0);
  late_.resize(layout_.buckets().size());
  for (size_t i = 0; i < params_.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(params_[i]);
    TORCH_INTERNAL_ASSERT(acc, "parameter ", i, " has no grad accumulator (does it require grad?)");
    hook_keys_.push_back(
        acc->add_post_hook(std::make_unique<ReadyHook>([this, i] { on_grad_ready(static_cast<int>(i)); })));
    accumulators_.push_back(std::move(acc));
  }
}

GradReducer::~GradReducer() {
  // The accumulators outlive us when the model does: drop our hooks so they never call into a dead reducer.
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void GradReducer::begin_backward(bool boundary) {
  HostScope host;
  std::lock_guard<std::mutex> lock(mu_);
  TORCH_INTERNAL_ASSERT(in_flight_.empty() && next_launch_ == 0 && pending_grads_.empty(),
                        "begin_backward while a backward is in progress");
  reduce_this_step_ = settings_.stage >= 2 || boundary;
  for (size_t b = 0; b < layout_.buckets().size(); ++b) {
    missing_[b] = static_cast<int>(layout_.buckets()[b].params.size());
  }
  std::fill(reported_.begin(), reported_.end(), 0);
}

void GradReducer::on_grad_ready(int p) {
  HostScope host;
  // The flat buffers and the gradients' views are no autograd graph's: below the autograd and view-tracking
  // dispatch layers each view, copy and add here costs less host time (this runs once per parameter).
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  std::lock_guard<std::mutex> lock(mu_);
  at::Tensor& param = params_[p];
  at::Tensor grad = param.grad();
  if (!grad.defined()) return;
  const ParamSlot& slot = layout_.slots()[p];
  const Bucket& bucket = layout_.buckets()[slot.bucket];
  if (reduce_this_step_ && slot.bucket < next_launch_) {
    // A further part of a gradient whose bucket is already reduced (see the note): reduced after backward.
    at::Tensor& late = late_[slot.bucket];
    if (!late.defined()) {
      late = at::zeros({bucket.numel}, grad.options().dtype(settings_.stage <= 1 ? at::kFloat : settings_.comm_dtype));
    }
    late.narrow(0, slot.offset - bucket.begin, slot.numel).add_(grad.reshape({-1}));
    param.mutable_grad().reset();
    return;
  }
  // One view call per gradient (as_strided on the flat buffers, in the gradient's own shape when it is contiguous)
  // rather than narrow/reshape's chains and a flat view of the gradient: this runs once per parameter and backward
  // on small tensors is host-bound.
  const at::Tensor grad_c = grad.is_contiguous() ? grad : grad.reshape({-1});  // contiguous
  if (settings_.stage <= 1) {
    if (reported_[p] || slot.numel >= kPackNumel || grad_c.is_neg() || grad_c.is_conj()) {  // (packing byte-copies)
      land_pending();
      region_of(acc_, slot.offset, grad_c).add_(grad_c);
    } else {
      // Small gradients of neighbouring slots wait and are added together (see pending_grads_).
      const bool joins = pending_grads_.empty() ||
                         (grad_c.scalar_type() == pending_grads_.front().scalar_type() &&
                          (slot.offset == span_end_ || slot.offset + slot.numel == span_begin_) &&
                          span_end_ - span_begin_ + slot.numel <= kPackNumel);
      if (!joins) land_pending();
      if (pending_grads_.empty()) span_begin_ = span_end_ = slot.offset;
      span_begin_ = std::min(span_begin_, slot.offset);
      span_end_ = std::max(span_end_, slot.offset + slot.numel);
      pending_offsets_.push_back(slot.offset);
      pending_grads_.push_back(grad_c);
    }
  } else {
    at::Tensor& staging = staging_[slot.bucket];
    if (!staging.defined()) {
      // No zero-fill of the whole bucket (a kernel per bucket and step): only the padding is zeroed here, a
      // parameter's range is written by its first gradient, and unused parameters are zeroed at launch. One
      // allocation serves the bucket's whole reduction group (stage 3's small units: one per group, not per unit).
      const int g = group_of_[slot.bucket];
      if (!group_staging_[g].defined()) {
        group_staging_[g] = at::empty({group_numel_of_[g]}, grad.options().dtype(settings_.comm_dtype));
      }
      staging = range_of(group_staging_[g], offset_in_group_[slot.bucket], bucket.numel);
      for (const auto& [offset, numel] : gaps_[slot.bucket]) {
        pending_zeros_.push_back(range_of(staging, offset, numel));
      }
    }
    const int64_t offset = slot.offset - bucket.begin;
    if (reported_[p]) {
      land_pending();                                   // its first part may still be waiting
      region_of(staging, offset, grad_c).add_(grad_c);  // a further part of the same gradient (see the note)
    } else if (slot.numel < kPackNumel && grad_c.scalar_type() == staging.scalar_type() && !grad_c.is_neg() &&
               !grad_c.is_conj()) {  // (a byte copy: no lazy negation or conjugation bit to apply)
      // Small gradients wait and land together: one batched copy (no view per gradient) instead of a kernel each.
      if (pending_numel_ + slot.numel > kPackNumel) land_pending();
      pending_dests_.push_back(static_cast<char*>(staging.data_ptr()) + offset * staging.element_size());
      pending_grads_.push_back(grad_c);
      pending_numel_ += slot.numel;
    } else {
      region_of(staging, offset, grad_c).copy_(grad_c);
    }
  }
  param.mutable_grad().reset();  // the flat buffers hold it now
  if (reported_[p]) return;      // a second part of the same gradient (see the note)
  reported_[p] = 1;
  if (--missing_[slot.bucket] == 0 && reduce_this_step_ && settings_.overlap_comm) launch_ready_in_order();
}

void GradReducer::land_pending() {
  if (pending_grads_.empty()) return;
  if (settings_.stage <= 1) {
    // They tile [span_begin_, span_end_) of the accumulation buffer: packed side by side in their own dtype (one
    // multi-tensor copy), then added with one widening kernel.
    if (pending_grads_.size() == 1) {
      region_of(acc_, span_begin_, pending_grads_.front()).add_(pending_grads_.front());
    } else {
      at::Tensor region = range_of(acc_, span_begin_, span_end_ - span_begin_);
      at::Tensor packed = at::empty({span_end_ - span_begin_}, pending_grads_.front().options());
      char* base = static_cast<char*>(packed.data_ptr());
      spans_.clear();
      for (size_t i = 0; i < pending_grads_.size(); ++i) {
        spans_.push_back({pending_grads_[i].const_data_ptr(), base + (pending_offsets_[i] - span_begin_) * packed.element_size(),
                          static_cast<int64_t>(pending_grads_[i].nbytes())});
      }
      copy_spans(spans_, packed.device());
      region.add_(packed);
    }
    pending_offsets_.clear();
  } else {
    spans_.clear();
    for (size_t i = 0; i < pending_grads_.size(); ++i) {
      spans_.push_back({pending_grads_[i].const_data_ptr(), pending_dests_[i],
                        static_cast<int64_t>(pending_grads_[i].nbytes())});
    }
    copy_spans(spans_, pending_grads_.front().device());
  }
  pending_dests_.clear();
  pending_grads_.clear();
  pending_numel_ = 0;
}

void GradReducer::launch_ready_in_order() {
  const int n = static_cast<int>(layout_.buckets().size());
  while (next_launch_ < n && missing_[next_launch_] == 0) enqueue(next_launch_++);
}

void GradReducer::enqueue(int b) {
  if (settings_.stage <= 1) {
    launch(b);
    return;
  }
  // Small buckets (stage 3's units) wait for their neighbours: one collective's host cost (a c10d work, events,
  // stream syncs) then serves many of them. Every rank groups the same buckets: they become ready in order.
  group_.push_back(b);
  group_numel_ += layout_.buckets()[b].numel;
  if (group_numel_ >= settings_.coalesce_numel) flush_group();
}

namespace {
constexpr size_t kMaxInFlight = 2;
}  // namespace

void GradReducer::land_oldest() {
  InFlight f = std::move(in_flight_.front());
  in_flight_.pop_front();
  f.work->wait();
  f.land();
}

void GradReducer::launch(int b) {
  CommCaller caller("GradReducer::launch");
  land_pending();  // the bucket's gradients may still wait
  while (in_flight_.size() >= kMaxInFlight) land_oldest();
  const Bucket& bucket = layout_.buckets()[b];
  const double pre = settings_.pre_scale, post = settings_.post_scale;
  if (settings_.stage == 0) {
    at::Tensor region = acc_.narrow(0, bucket.begin, bucket.numel);
    at::Tensor buf = settings_.comm_dtype == at::kFloat ? region : region.to(settings_.comm_dtype);
    if (pre != 1.0) buf.mul_(pre);
    auto work = comm_->all_reduce_async(buf, ReduceOp::kSum);
    in_flight_.push_back({std::move(work), [region, buf, post]() mutable {
                            if (!buf.is_same(region)) region.copy_(buf);
                            if (post != 1.0) region.mul_(post);
                          }});
    return;
  }
  // Stage 1: reduce straight from the accumulation buffer when the dtypes match (it is zeroed after the step).
  at::Tensor region = acc_.narrow(0, bucket.begin, bucket.numel);
  reduce_scatter_to_shard({b}, {settings_.comm_dtype == at::kFloat ? region : region.to(settings_.comm_dtype)});
}

void GradReducer::flush_group() {
  if (group_.empty()) return;
  CommCaller caller("GradReducer::flush_group");
  land_pending();  // the group's buckets must hold all their gradients before the collective reads them
  while (in_flight_.size() >= kMaxInFlight) land_oldest();
  std::vector<at::Tensor> ins;
  for (int b : group_) {
    const Bucket& bucket = layout_.buckets()[b];
    // A bucket whose parameters all went unused this micro-step contributes zeros; so do unused parameters.
    at::Tensor in =
        staging_[b].defined() ? staging_[b] : at::zeros({bucket.numel}, shard_options_.dtype(settings_.comm_dtype));
    if (staging_[b].defined()) {
      for (int p : bucket.params) {
        const ParamSlot& slot = layout_.slots()[p];
        if (!reported_[p]) pending_zeros_.push_back(range_of(in, slot.offset - bucket.begin, slot.numel));
      }
    }
    staging_[b] = at::Tensor();
    ins.push_back(std::move(in));
  }
  if (!pending_zeros_.empty()) {
    at::_foreach_zero_(pending_zeros_);
    pending_zeros_.clear();
  }
  std::vector<int> buckets;
  buckets.swap(group_);
  group_numel_ = 0;
  TORCH_INTERNAL_ASSERT(group_of_[buckets.front()] == group_of_[buckets.back()] &&
                            (buckets.front() == 0 || group_of_[buckets.front() - 1] != group_of_[buckets.front()]),
                        "gradient reduction group of buckets [", buckets.front(), ", ", buckets.back(),
                        "] is not the one planned");
  group_staging_[group_of_[buckets.front()]] = at::Tensor();  // the collective's inputs keep it alive until it lands
  reduce_scatter_to_shard(buckets, std::move(ins));
}

void GradReducer::reduce_scatter_to_shard(const std::vector<int>& buckets, std::vector<at::Tensor> ins) {
  // The buckets are one, or a coalesced group in index order: consecutive ranges of the shard (the layout closes
  // buckets in order). Their reduced chunks go side by side into one buffer that lands with one add (an allocation
  // and a launch per group, not per bucket: stage 3's units).
  const int64_t first_offset = layout_.buckets()[buckets.front()].shard_offset;
  int64_t chunks = 0;
  for (int b : buckets) {
    TORCH_INTERNAL_ASSERT(layout_.buckets()[b].shard_offset == first_offset + chunks, "reduce-scatter group of ",
                          "buckets that are not consecutive in the shard");
    chunks += layout_.buckets()[b].chunk;
  }
  const at::Tensor joined = at::empty({chunks}, ins.front().options());
  std::vector<at::Tensor> outs;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const Bucket& bucket = layout_.buckets()[buckets[i]];
    if (settings_.pre_scale != 1.0) ins[i].mul_(settings_.pre_scale);
    outs.push_back(buckets.size() == 1 ? joined
                                       : range_of(joined, bucket.shard_offset - first_offset, bucket.chunk));
  }
  auto work = ins.size() == 1 ? comm_->reduce_scatter_async(outs[0], ins[0], ReduceOp::kSum)
                              : comm_->reduce_scatter_coalesced_async(outs, ins, ReduceOp::kSum);
  at::Tensor dest = grad_shard().narrow(0, first_offset, chunks);
  in_flight_.push_back({std::move(work), [ins = std::move(ins), joined, dest, post = settings_.post_scale]() mutable {
                          // fp32 += 16-bit: one kernel that widens as it adds (exact), no fp32 temporary
                          dest.add_(joined, post);
                          ins.clear();  // kept alive until the collective is done
                        }});
}

void GradReducer::launch_late(int b) {
  CommCaller caller("GradReducer::launch_late");
  const Bucket& bucket = layout_.buckets()[b];
  at::Tensor in = late_[b].scalar_type() == settings_.comm_dtype ? late_[b] : late_[b].to(settings_.comm_dtype);
  late_[b] = at::Tensor();
  if (settings_.stage >= 1) {
    reduce_scatter_to_shard({b}, {std::move(in)});
    return;
  }
  if (settings_.pre_scale != 1.0) in.mul_(settings_.pre_scale);
  at::Tensor region = acc_.narrow(0, bucket.begin, bucket.numel);
  auto work = comm_->all_reduce_async(in, ReduceOp::kSum);
  in_flight_.push_back({std::move(work), [region, in, post = settings_.post_scale]() mutable {
                          region.add_(in.to(at::kFloat), post);
                        }});
}

void GradReducer::end_backward() {
  HostScope host;
  const at::AutoDispatchBelowADInplaceOrView below_autograd;  // as in on_grad_ready
  std::lock_guard<std::mutex> lock(mu_);
  land_pending();
  if (reduce_this_step_) {
    // Unused parameters never report: their buckets go now, in order, with zeros for them.
    const int n = static_cast<int>(layout_.buckets().size());
    while (next_launch_ < n) enqueue(next_launch_++);
    flush_group();
  }
  while (!in_flight_.empty()) land_oldest();
  // Late parts, bucket by bucket in order (the same buckets on every rank: the same graph ran everywhere).
  for (size_t b = 0; b < late_.size(); ++b) {
    if (late_[b].defined()) launch_late(static_cast<int>(b));
  }
  while (!in_flight_.empty()) land_oldest();
  next_launch_ = 0;
}

void GradReducer::zero() {
  HostScope host;
  if (acc_.defined()) acc_.zero_();
  if (settings_.stage >= 1) {
    // Between optimizer steps stages 1-3 hold no reduced gradients (as FSDP after zero_grad(set_to_none=True)): 4
    // bytes per parameter over N ranks come back with the first reduction of the next step (stage 1: on the
    // accumulation boundary, at the end of backward).
    grad_shard_ = at::Tensor();
  }
}

at::Tensor& GradReducer::grad_shard() {
  if (!grad_shard_.defined()) grad_shard_ = at::zeros({layout_.shard_numel()}, shard_options_);
  return grad_shard_;
}

}  // namespace zerotrain::detail
