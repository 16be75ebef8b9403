#include "zero/zero_optimizer.h"
#include "comm/comms_logger.h"

#include "engine/host_clock.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

#ifdef ZEROTRAIN_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace zerotrain::detail {
namespace {

// NVMe offload: evicts the swapped tensors when the scope ends (not while an error unwinds: that one wins).
struct EvictAtExit {
  ZeroOptimizer* self;
  ~EvictAtExit() noexcept(false) {
    if (std::uncaught_exceptions() == 0) self->evict_swapped();
  }
};

}  // namespace

ZeroOptimizer::ZeroOptimizer(const FlatLayout& layout, at::Tensor params, std::shared_ptr<Comm> comm,
                             const Config& cfg, ParamPlacement placement,
                             const std::vector<std::optional<double>>& weight_decay,
                             const std::vector<std::optional<double>>& lr_scale)
    : layout_(layout),
      param_flat_(std::move(params)),
      comm_(std::move(comm)),
      placement_(placement),
      sharded_(placement != ParamPlacement::kReplicated),
      clip_(cfg.gradients().clipping),
      check_overflow_(cfg.precision() == Precision::kFp16 ||
                      (cfg.precision() == Precision::kBf16 && cfg.bf16().check_grad_overflow)),
      allgather_bucket_size_(std::max<int64_t>(cfg.zero().allgather_bucket_size, 1)),
      scaler_(cfg.fp16(), /*zero_optimizer=*/cfg.zero().stage >= 1) {
  const OffloadOptimizerConfig& offload = cfg.zero().offload_optimizer;
  if (offload.device != OffloadDevice::kNone) {
    // The config allows offload only at stages 1-3 (Config's validation); the engine passes no other.
    TORCH_INTERNAL_ASSERT(placement_ != ParamPlacement::kReplicated, "optimizer offload: only at stages 1-3");
    if (cfg.optimizer().kind == OptimizerKind::kLamb) {
      throw std::invalid_argument(std::string("zero_optimization.offload_optimizer.device \"") +
                                  (offload.device == OffloadDevice::kNvme ? "nvme" : "cpu") +
                                  "\" with optimizer \"Lamb\": not supported (its trust ratio reduces per-parameter "
                                  "norms across ranks on the device); allowed with offload: Adam, AdamW, Adagrad, "
                                  "Lion, SGD");
    }
    offload_ = true;
  }
  // Stage 3 whose units' shard is in host memory (parameter offload, or a CPU run): the host step writes it directly.
  const bool shard_on_host = placement_ == ParamPlacement::kShardOnly && offload_ && param_flat_.is_cpu();
  if (placement_ == ParamPlacement::kShardOnly &&
      (!offload_ || (shard_on_host && param_flat_.scalar_type() == at::kFloat))) {
    TORCH_INTERNAL_ASSERT(param_flat_.numel() == layout_.shard_numel() && param_flat_.scalar_type() == at::kFloat);
    master_ = param_flat_;  // stage 3 keeps no second copy: its units gather from the master shard
    if (offload_) {  // the fp32 shard on the host (parameter offload): the gradient comes to it
      grad_host_ = at::empty({layout_.shard_numel()},
                             master_.options().pinned_memory(offload.pin_memory && master_.is_pinned()));
    }
  } else {
    // Stages 1-2; and stage 3 offloaded, whose param_flat_ is the units' training-dtype shard (shard_numel,).
    TORCH_INTERNAL_ASSERT(placement_ != ParamPlacement::kShardOnly || param_flat_.numel() == layout_.shard_numel());
    // Pinned where the parameters train on a GPU (their shard on the device, or pinned on the host when offloaded).
    const auto host = at::TensorOptions(at::kFloat).device(at::kCPU).pinned_memory(
        offload.pin_memory && (param_flat_.is_cuda() || param_flat_.is_pinned()));
    if (offload.device == OffloadDevice::kNvme) {
      swaps_.push_back(std::make_shared<SwapFile>(offload.nvme_path, "zero_optimization.offload_optimizer.nvme_path",
                                                  "master", layout_.shard_numel(), at::kFloat));
      master_ = swaps_.back()->tensor();
    } else {
      master_ = at::empty({layout_.shard_numel()}, offload_ ? host : param_flat_.options().dtype(at::kFloat));
    }
    if (offload_) {
      grad_host_ = at::empty({layout_.shard_numel()}, host);
      if (param_flat_.scalar_type() != at::kFloat) {
        param_host_ = shard_on_host ? param_flat_
                                    : at::empty({layout_.shard_numel()}, host.dtype(param_flat_.scalar_type()));
      }
    }
    load_master();
  }
  auto comm_for_norms = comm_;
  const bool reduce_norms = sharded_ && comm_->world_size() > 1;
  StateFactory make_state;
  if (offload.device == OffloadDevice::kNvme) {
    // The optimizer's state is made in swap files: it never takes host memory whole, not even at start-up.
    make_state = [this, &offload](const std::string& name, const at::Tensor& like) {
      swaps_.push_back(std::make_shared<SwapFile>(offload.nvme_path, "zero_optimization.offload_optimizer.nvme_path",
                                                  name, like.numel(), like.scalar_type()));
      return swaps_.back()->tensor();
    };
  }
  optimizer_ = make_shard_optimizer(cfg.optimizer(), master_, layout_.shard_segments(),
                                    static_cast<int64_t>(layout_.slots().size()),
                                    [comm_for_norms, reduce_norms](at::Tensor& t) {
                                      if (reduce_norms) comm_for_norms->all_reduce(t, ReduceOp::kSum);
                                    },
                                    make_state);
  evict_swapped();  // what construction wrote (the master's values, Adagrad's initial sums) goes to the drive
  const OptimizerConfig& oc = cfg.optimizer();
  weight_decay_ = oc.weight_decay;
  decoupled_decay_ = oc.kind == OptimizerKind::kLion ||
                     ((oc.kind == OptimizerKind::kAdam || oc.kind == OptimizerKind::kAdamW) && oc.adam_w_mode);
  decay_runs_ = runs_of(weight_decay, weight_decay_, [&](double wd, int64_t param) {
    if (oc.kind == OptimizerKind::kLamb) {
      throw std::invalid_argument("per-parameter weight_decay (param groups): not supported for the Lamb optimizer "
                                  "(its decay enters the trust ratio); allowed: one weight_decay for all parameters");
    }
    if (!std::isfinite(wd) || wd < 0) {
      throw std::invalid_argument("weight_decay " + std::to_string(wd) + " of parameter " + std::to_string(param) +
                                  " is invalid; allowed: a finite number >= 0");
    }
  });
  lr_runs_ = runs_of(lr_scale, 1.0, [](double scale, int64_t param) {
    if (!std::isfinite(scale) || scale <= 0) {
      throw std::invalid_argument("lr_scale " + std::to_string(scale) + " of parameter " + std::to_string(param) +
                                  " is invalid; allowed: a finite number > 0");
    }
  });
}

std::vector<ZeroOptimizer::Run> ZeroOptimizer::runs_of(const std::vector<std::optional<double>>& per_param,
                                                        double same,
                                                        const std::function<void(double, int64_t)>& check) const {
  std::vector<Run> runs;
  if (per_param.empty()) return runs;
  for (const ShardSegment& seg : layout_.shard_segments()) {
    TORCH_INTERNAL_ASSERT(seg.param_index < static_cast<int64_t>(per_param.size()));
    const std::optional<double>& value = per_param[seg.param_index];
    if (!value || *value == same) continue;
    check(*value, seg.param_index);
    if (!runs.empty() && runs.back().value == *value && runs.back().offset + runs.back().numel == seg.offset) {
      runs.back().numel += seg.numel;  // adjacent pieces with the same value: one run
    } else {
      runs.push_back({seg.offset, seg.numel, *value});
    }
  }
  return runs;
}

void ZeroOptimizer::correct_weight_decay(at::Tensor& grad, double lr, double grad_multiplier) {
  if (decay_runs_.empty()) return;
  at::NoGradGuard no_grad;
  for (const Run& run : decay_runs_) {
    at::Tensor p = master_.narrow(0, run.offset, run.numel);
    if (decoupled_decay_) {
      // The optimizer will multiply by (1 - lr wd): pre-scaling leaves (1 - lr wd_run) in total.
      const double applied = 1 - lr * weight_decay_;
      TORCH_CHECK(applied != 0, "per-parameter weight_decay: lr * weight_decay of the config is 1 (lr ", lr,
                  ", weight_decay ", weight_decay_, "): the parameters' decay cannot be told apart");
      p.mul_((1 - lr * run.value) / applied);
    } else {
      // The optimizer adds wd param to grad * grad_multiplier: add the difference, in the gradient's scale.
      grad.narrow(0, run.offset, run.numel).add_(p, (run.value - weight_decay_) / grad_multiplier);
    }
  }
}

void ZeroOptimizer::evict_swapped() {
  for (const auto& s : swaps_) s->evict_all();
}

void ZeroOptimizer::load_master() {
  if (master_.is_same(param_flat_)) return;  // stage 3 on the device: the master shard is the parameters' shard
  const EvictAtExit evict{this};
  for (const ParamCopyRange& c : local_copies()) {
    at::Tensor master = master_.narrow(0, c.offset, c.dest.numel());
    // offloaded: the device's chunk compared and read on the host
    at::Tensor param = c.dest.to(master_.device());
    if (!master_initialized_ || param.scalar_type() == at::kFloat) {
      master.copy_(param);
    } else {
      // Only parameters that changed take their 16-bit value: the others keep their fp32 precision.
      master.copy_(at::where(param != master.to(param.scalar_type()), param.to(at::kFloat), master));
    }
  }
  master_initialized_ = true;
}

double clip_multiplier(double norm, double clip, double scale) {
  double combined = scale;
  if (clip > 0) {
    const double c = (norm + 1e-6) / clip;
    if (c > 1) combined = c * scale;
  }
  return 1.0 / combined;
}

at::Tensor clip_multiplier_tensor(const at::Tensor& norm, double clip, double scale) {
  const auto opts = norm.options().dtype(at::kDouble);
  at::Tensor combined = at::full({}, scale, opts);
  if (clip > 0) {
    const at::Tensor c = at::div(norm.to(at::kDouble) + 1e-6, at::full({}, clip, opts));
    combined = at::where(c > 1, c, at::ones_like(c)) * combined;
  }
  return at::reciprocal(combined).to(at::kFloat);
}

StepResult ZeroOptimizer::step(at::Tensor& grad, double lr, std::optional<double> beta1) {
  CommCaller caller("ZeroOptimizer::step");
  StepResult result;
  // Sum of squares over the shard (a norm kernel: no gradient-sized temporary), summed over ranks when sharded
  // (stage 0 holds every gradient).
  at::Tensor sq = at::linalg_vector_norm(grad, 2).to(at::kDouble).pow(2).reshape({1});
  if (sharded_ && comm_->world_size() > 1) comm_->all_reduce(sq, ReduceOp::kSum);
  const double scale = scaler_.scale();
  result.grad_norm = at::div(sq.sqrt(), at::full({}, scale, sq.options())).reshape({});  // exact: see clip_multiplier
  // [Note: a step the host does not wait for] Where nothing on the host depends on the norm (no overflow check: bf16
  // or fp32; the optimizer on the device, reading the clip factor in its own kernel; no L2 decay of a param group in
  // the gradient's scale), DeepSpeed's unscale-and-clip factor is computed on the device, with the same double
  // arithmetic as the host's, and the host goes on to the next forward while backward's last reductions run. The
  // norm stays a device tensor until someone reads it (Engine::get_global_grad_norm).
  const bool on_device = !check_overflow_ && !offload_ && optimizer_->reads_multiplier_tensor() &&
                         (decay_runs_.empty() || decoupled_decay_);
  GradMultiplier multiplier;
  if (on_device) {
    if (clip_ > 0) {
      multiplier.tensor = clip_multiplier_tensor(result.grad_norm, clip_, scale);
    } else {
      multiplier.value = 1.0 / scale;
    }
  } else {
    double sum_sq = 0;
    {
      HostPause device_wait;  // the host waits for backward's kernels here: not host work (zerotrain/profile.h)
      sum_sq = sq.item<double>();
    }
    const double scaled_norm = std::sqrt(sum_sq);
    const double grad_norm = scaled_norm / scale;
    const bool overflow = !std::isfinite(scaled_norm);
    if (check_overflow_) {
      // LossScaler::update throws when the scale cannot go lower.
      result.skipped = scaler_.update(overflow);
      if (result.skipped) return result;
    }
    // DeepSpeed's unscale_and_clip_grads: one multiply that both unscales and clips.
    multiplier.value = clip_multiplier(grad_norm, clip_, scale);
  }
  ++applied_steps_;
  if (offload_ && lr_runs_.empty() && decay_runs_.empty() && optimizer_->steps_in_pieces()) {
    step_offloaded(grad, StepArgs{lr, applied_steps_, beta1}, multiplier.value);
    gather();
    return result;
  }
  const EvictAtExit evict{this};  // NVMe: whatever path the step takes, the state goes back to the drive after it
  if (offload_) {
    HostPause transfer;  // the host waits for the copy: not host work
    grad_host_.copy_(grad);
  }
  at::Tensor& g = offload_ ? grad_host_ : grad;  // where the optimizer reads the gradient
  // Runs with their own learning rate: their values before the step (and before the decay correction, which the
  // interpolation scales too: p0 + s (p1 - p0) = p0 (1 - s lr wd) - s lr u).
  std::vector<at::Tensor> before;
  for (const Run& run : lr_runs_) before.push_back(master_.narrow(0, run.offset, run.numel).clone());
  correct_weight_decay(g, lr, multiplier.value);  // its L2 branch runs on the host path only (on_device above)
  const StepArgs args{lr, applied_steps_, beta1};
  if (lr_runs_.empty() && !offload_) {
    // One pass where the optimizer has a fused kernel: unscale/clip, update, and this rank's chunks of the training
    // parameters written from the updated master; then the chunks are all-gathered.
    optimizer_->step_and_copy(master_, grad, args, multiplier, local_copies());
    gather();
    return result;
  }
  optimizer_->step_and_copy(master_, g, args, multiplier, {});
  {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < lr_runs_.size(); ++i) {
      at::Tensor after = master_.narrow(0, lr_runs_[i].offset, lr_runs_[i].numel);
      after.copy_(before[i].lerp_(after, lr_runs_[i].value));  // before + scale (after - before)
    }
  }
  publish();
  return result;
}

namespace {
// An offloaded step's pieces: about this many elements each (128 MB of fp32 gradient), and 4 at least where the shard
// allows, so that the copies of one piece overlap the host's update of another.
constexpr int64_t kOffloadPiece = int64_t{1} << 25;
}  // namespace

void ZeroOptimizer::step_offloaded(const at::Tensor& grad, const StepArgs& args, double grad_multiplier) {
  const int64_t n = master_.numel();
  const int64_t count = std::max(std::min<int64_t>(4, n / 64), (n + kOffloadPiece - 1) / kOffloadPiece);
  if (count == 0) return;
  const int64_t piece = ((n + count - 1) / count + 63) / 64 * 64;
  const at::Tensor& out = param_host_.defined() ? param_host_ : master_;  // what the device receives
  const std::vector<ParamCopyRange> dests = local_copies();  // once for all pieces
  const bool async = grad.is_cuda() && grad_host_.is_pinned();
#ifdef ZEROTRAIN_WITH_CUDA
  // The gradient's pieces come over on a side stream (after everything backward queued on the current one) while the
  // host updates the pieces before them; the updated pieces go back on the current stream, ahead of the all-gather
  // (stages 1-2) or the units' next gathers (stage 3), while the host updates the pieces after them.
  std::optional<c10::cuda::CUDAStream> side;
  std::vector<at::cuda::CUDAEvent> fetched(async ? count : 0);
  if (async) {
    side = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, grad.device().index());
    at::cuda::CUDAEvent backward_done;
    backward_done.record(c10::cuda::getCurrentCUDAStream(grad.device().index()));
    backward_done.block(*side);
  }
  // Leaving early (an error in a piece's update): the side stream's copies still read `grad`, which the caching
  // allocator knows only on the current stream; wait for them before it can be reused.
  struct DrainSide {
    std::optional<c10::cuda::CUDAStream>& side;
    ~DrainSide() {
      if (side && std::uncaught_exceptions() > 0) side->synchronize();
    }
  } drain{side};
#endif
  auto fetch = [&](int64_t k) {
    const int64_t b = k * piece, e = std::min(n, b + piece);
    if (b >= e) return;
#ifdef ZEROTRAIN_WITH_CUDA
    if (async) {
      const c10::cuda::CUDAStreamGuard on_side(*side);
      grad_host_.narrow(0, b, e - b).copy_(grad.narrow(0, b, e - b), /*non_blocking=*/true);
      fetched[k].record(*side);
      return;
    }
#endif
    HostPause transfer;  // the host waits for the copy: not host work
    grad_host_.narrow(0, b, e - b).copy_(grad.narrow(0, b, e - b));
  };
  fetch(0);
  // NVMe: the next piece's state is read ahead while this one updates; an updated piece starts its write-back at
  // once and leaves memory two pieces later (its writes overlap the updates in between), the last ones at the end.
  auto swap = [&](int64_t k, bool in) {
    const int64_t b = k * piece, e = std::min(n, b + piece);
    if (k < 0 || k >= count || b >= e) return;
    for (const auto& s : swaps_) in ? s->prefetch(b, e) : s->evict(b, e);
  };
  const EvictAtExit evict_all{this};
  swap(0, true);
  for (int64_t k = 0; k < count; ++k) {
    const int64_t b = k * piece, e = std::min(n, b + piece);
    if (b >= e) break;
    if (k + 1 < count) fetch(k + 1);
    swap(k + 1, true);
    swap(k - 2, false);
#ifdef ZEROTRAIN_WITH_CUDA
    if (async) {
      HostPause transfer;
      fetched[k].synchronize();
    }
#endif
    optimizer_->step_piece(master_, grad_host_, args, grad_multiplier, b, e,
                           param_host_.defined() ? param_host_.narrow(0, b, e - b) : at::Tensor());
    for (const auto& s : swaps_) s->write_back(b, e);
    upload(out, b, e, dests);  // `out` is next written by the following step's update of this piece (see upload)
  }
}

std::vector<ParamCopyRange> ZeroOptimizer::local_copies() const {
  std::vector<ParamCopyRange> copies;
  if (placement_ == ParamPlacement::kShardOnly) {
    // Units gather from the master shard when used; offloaded, from its device copy (the whole shard).
    if (offload_) copies.push_back({0, param_flat_});
    return copies;
  }
  for (size_t b = 0; b < layout_.buckets().size(); ++b) {
    const Bucket& bucket = layout_.buckets()[b];
    const at::Tensor mine = param_flat_.narrow(0, layout_.chunk_begin(static_cast<int>(b)), bucket.chunk);
    copies.push_back({bucket.shard_offset, mine});
  }
  return copies;
}

void ZeroOptimizer::publish() {
  // Offloaded: cast on the host (2 bytes a parameter cross to the device, not 4), then one copy per bucket chunk.
  if (offload_) {
    upload(param_host_.defined() ? param_host_.copy_(master_) : master_, 0, master_.numel(), local_copies());
  } else {
    for (const ParamCopyRange& c : local_copies()) c.dest.copy_(master_.narrow(0, c.offset, c.dest.numel()));
  }
  gather();
}

void ZeroOptimizer::upload(const at::Tensor& host, int64_t begin, int64_t end,
                           const std::vector<ParamCopyRange>& dests) {
  // From pinned memory the copies are asynchronous on the current stream, which the all-gather (or the units' next
  // gathers) waits for; `host` is next written by the following step's optimizer pass, after that step's copy of the
  // gradient, which the current stream orders after these copies.
  const bool async = host.is_pinned();
  for (const ParamCopyRange& c : dests) {
    const int64_t lo = std::max(begin, c.offset), hi = std::min(end, c.offset + c.dest.numel());
    if (lo >= hi) continue;
    at::Tensor dest = c.dest.narrow(0, lo - c.offset, hi - lo);
    const at::Tensor src = host.narrow(0, lo, hi - lo);
    if (src.data_ptr() != dest.data_ptr()) dest.copy_(src, async);  // the same memory: stage 3's host shard
  }
}

void ZeroOptimizer::gather() {
  CommCaller caller("ZeroOptimizer::gather");
  if (placement_ == ParamPlacement::kShardOnly) return;
  const int world = sharded_ ? comm_->world_size() : 1;
  if (world == 1) return;
  struct Pending {
    std::unique_ptr<CommWork> work;
    at::Tensor gathered;  // (world, piece) when gathered into a temporary, else undefined
    at::Tensor dest;      // (world, piece) strided view of the bucket
  };
  std::vector<Pending> pending;
  for (size_t b = 0; b < layout_.buckets().size(); ++b) {
    const Bucket& bucket = layout_.buckets()[b];
    at::Tensor mine = param_flat_.narrow(0, layout_.chunk_begin(static_cast<int>(b)), bucket.chunk);
    at::Tensor region = param_flat_.narrow(0, bucket.begin, bucket.numel);
    if (bucket.numel <= allgather_bucket_size_) {
      pending.push_back({comm_->all_gather_async(region, mine), {}, {}});  // in place: mine is region's slice
      continue;
    }
    // allgather_bucket_size caps the elements gathered per collective: gather the chunks piece by piece.
    const int64_t piece = std::max<int64_t>(allgather_bucket_size_ / world, 1);
    at::Tensor rows = region.view({world, bucket.chunk});
    for (int64_t k = 0; k < bucket.chunk; k += piece) {
      const int64_t n = std::min(piece, bucket.chunk - k);
      at::Tensor send = mine.narrow(0, k, n).clone();
      at::Tensor recv = at::empty({world * n}, send.options());
      auto work = comm_->all_gather_async(recv, send);
      pending.push_back({std::move(work), recv.view({world, n}), rows.narrow(1, k, n)});
    }
  }
  for (auto& p : pending) {
    p.work->wait();
    if (p.gathered.defined()) p.dest.copy_(p.gathered);
  }
}

}  // namespace zerotrain::detail
