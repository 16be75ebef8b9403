// LAMB over a flat fp32 shard with DeepSpeed FusedLamb's semantics (deepspeed/ops/lamb/fused_lamb.py,
// csrc/lamb/fused_lamb_cuda_kernel.cu), one trust ratio per model parameter:
//   m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2         (no bias correction in memory)
//   u = m / denom + wd * p,   denom = sqrt(v + eps) with eps_inside_sqrt, else sqrt(v) + eps
//   ratio = ||p|| / ||u|| over the whole parameter, clamped to [min_coeff, max_coeff]; 1 when either norm is 0
//   p -= step_size * ratio * u,   step_size = lr * sqrt(1 - beta2^t) / (1 - beta1^t), or lr without bias correction
// Note what DeepSpeed does and we keep: eps is added to the uncorrected v, the bias corrections only scale the step,
// the weight decay sits inside u (so it is scaled by step_size and the ratio too), ||p|| is taken before the update.
//
// A parameter may be split across ranks and its pieces sit anywhere in each rank's shard (ShardSegment), so each
// rank sums squared norms per parameter locally and one all-reduce of a (2 * num_params,) fp32 tensor makes them
// global. Shard elements outside every segment (ZeRO's alignment padding) form one more bucket whose ratio is local
// to the rank: they follow the same rule, which leaves zero padding at zero.
//
// CPU: whole-shard ATen ops; per-parameter sums by segment_reduce over the shard's ranges (built once) in double.
// CUDA: lamb_kernels.cu, three launches per step around the all-reduce.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "optim/optimizers.h"

namespace zerotrain::detail {
namespace {

// The shard as consecutive ranges, each wholly inside one bucket: the segments with elements, and the gaps between.
struct ShardRanges {
  std::vector<int64_t> offsets;  // (R + 1,): range r is [offsets[r], offsets[r + 1])
  std::vector<int64_t> buckets;  // (R,): parameter index, or num_params for padding
};

ShardRanges build_ranges(std::vector<ShardSegment> segments, int64_t num_params, int64_t numel) {
  std::sort(segments.begin(), segments.end(),
            [](const ShardSegment& a, const ShardSegment& b) { return a.offset < b.offset; });
  ShardRanges ranges;
  int64_t cursor = 0;
  auto add = [&](int64_t begin, int64_t end, int64_t bucket) {
    if (ranges.offsets.empty()) ranges.offsets.push_back(begin);
    ranges.offsets.push_back(end);
    ranges.buckets.push_back(bucket);
  };
  for (const ShardSegment& s : segments) {
    TORCH_CHECK(s.param_index >= 0 && s.param_index < num_params, "Lamb: segment of parameter ", s.param_index,
                " outside [0, ", num_params, ")");
    TORCH_CHECK(s.numel >= 0 && s.offset >= 0 && s.offset + s.numel <= numel, "Lamb: segment of parameter ",
                s.param_index, " covers [", s.offset, ", ", s.offset + s.numel, ") outside the shard [0, ", numel, ")");
    if (s.numel == 0) continue;
    TORCH_CHECK(s.offset >= cursor, "Lamb: segment of parameter ", s.param_index, " at [", s.offset, ", ",
                s.offset + s.numel, ") overlaps the previous one, which ends at ", cursor);
    if (s.offset > cursor) add(cursor, s.offset, num_params);
    add(s.offset, s.offset + s.numel, s.param_index);
    cursor = s.offset + s.numel;
  }
  if (cursor < numel) add(cursor, numel, num_params);
  if (ranges.offsets.empty()) ranges.offsets.push_back(0);
  return ranges;
}

at::Tensor int64_tensor(const std::vector<int64_t>& values) {
  return at::tensor(at::ArrayRef<int64_t>(values), at::TensorOptions().dtype(at::kLong));
}
at::Tensor int32_tensor(const std::vector<int32_t>& values) {
  return at::tensor(at::ArrayRef<int32_t>(values), at::TensorOptions().dtype(at::kInt));
}

#ifdef ZEROTRAIN_WITH_CUDA
// The shard's ranges cut into chunks on the device (LambLayoutCuda); these tensors own what view() points to.
struct LambChunks {
  at::Tensor begin;           // (C,) int64, device
  at::Tensor end;             // (C,) int64, device
  at::Tensor bucket;          // (C,) int32, device
  at::Tensor bucket_offsets;  // (P + 2,) int32, device
  at::Tensor by_bucket;       // (C,) int32, device
  int64_t num_params = 0;

  LambLayoutCuda view() const {
    return {begin.const_data_ptr<int64_t>(),
            end.const_data_ptr<int64_t>(),
            bucket.const_data_ptr<int32_t>(),
            bucket_offsets.const_data_ptr<int32_t>(),
            by_bucket.const_data_ptr<int32_t>(),
            begin.numel(),
            num_params};
  }
};

// Cuts every range into chunks of at most kLambChunk elements and indexes them by bucket.
LambChunks build_cuda_chunks(const ShardRanges& ranges, int64_t num_params, const at::Device& device) {
  std::vector<int64_t> begin, end;
  std::vector<int32_t> bucket;
  for (size_t r = 0; r < ranges.buckets.size(); ++r) {
    for (int64_t b = ranges.offsets[r]; b < ranges.offsets[r + 1]; b += kLambChunk) {
      begin.push_back(b);
      end.push_back(std::min(b + kLambChunk, ranges.offsets[r + 1]));
      bucket.push_back(static_cast<int32_t>(ranges.buckets[r]));
    }
  }
  TORCH_CHECK(begin.size() < static_cast<size_t>(INT32_MAX) && num_params < INT32_MAX,
              "Lamb: shard too large for int32 chunk indices (", begin.size(), " chunks, ", num_params, " params)");
  std::vector<int32_t> offsets(num_params + 2, 0);
  for (int32_t q : bucket) ++offsets[q + 1];
  std::partial_sum(offsets.begin(), offsets.end(), offsets.begin());
  std::vector<int32_t> by_bucket(begin.size());
  std::vector<int32_t> fill(offsets.begin(), offsets.end() - 1);
  for (size_t c = 0; c < begin.size(); ++c) by_bucket[fill[bucket[c]]++] = static_cast<int32_t>(c);
  LambChunks chunks;
  chunks.begin = int64_tensor(begin).to(device);
  chunks.end = int64_tensor(end).to(device);
  chunks.bucket = int32_tensor(bucket).to(device);
  chunks.bucket_offsets = int32_tensor(offsets).to(device);
  chunks.by_bucket = int32_tensor(by_bucket).to(device);
  chunks.num_params = num_params;
  return chunks;
}
#endif

class LambShardOptimizer final : public ShardOptimizer {
 public:
  LambShardOptimizer(const OptimizerConfig& cfg, const at::Tensor& param, std::vector<ShardSegment> segments,
                     int64_t num_params, AllReduceSum allreduce)
      : beta1_(fp32_beta(cfg.betas[0])),
        beta2_(fp32_beta(cfg.betas[1])),
        eps_(cfg.eps),
        weight_decay_(cfg.weight_decay),
        min_coeff_(cfg.min_coeff),
        max_coeff_(cfg.max_coeff),
        bias_correction_(cfg.bias_correction),
        eps_inside_sqrt_(cfg.eps_inside_sqrt),
        numel_(param.numel()),
        num_params_(num_params),
        device_(param.device()),
        allreduce_(std::move(allreduce)),
        exp_avg_(at::zeros_like(param)),
        exp_avg_sq_(at::zeros_like(param)),
        norms_(at::zeros({2 * num_params + 2}, param.options())) {
    TORCH_CHECK(num_params >= 0, "Lamb: num_params ", num_params, " < 0");
    const ShardRanges ranges = build_ranges(std::move(segments), num_params, numel_);
    if (device_.is_cuda()) {
#ifdef ZEROTRAIN_WITH_CUDA
      chunks_ = build_cuda_chunks(ranges, num_params, device_);
      partials_ = at::empty({chunks_.begin.numel(), 2}, param.options());
#else
      TORCH_CHECK(false, "Lamb: the shard is on ", device_, " but zerotrain was built without CUDA");
#endif
    } else {
      std::vector<int64_t> lengths(ranges.buckets.size());
      for (size_t r = 0; r < lengths.size(); ++r) lengths[r] = ranges.offsets[r + 1] - ranges.offsets[r];
      range_offsets_ = int64_tensor(ranges.offsets);
      range_lengths_ = int64_tensor(lengths);
      range_buckets_ = int64_tensor(ranges.buckets);
    }
  }

  void step(at::Tensor& param, const at::Tensor& grad, const StepArgs& args) override {
    check_step_inputs("Lamb", param, grad, numel_, device_, args);
    const double beta1 = effective_beta1(args, beta1_);
    double step_size = args.lr;
    if (bias_correction_) {
      const double t = static_cast<double>(args.step);
      step_size = args.lr * std::sqrt(1 - std::pow(beta2_, t)) / (1 - std::pow(beta1, t));
    }
    if (device_.is_cuda()) {
      step_cuda(param, grad, beta1, step_size);
    } else {
      step_cpu(param, grad, beta1, step_size);
    }
  }

  std::vector<std::pair<std::string, at::Tensor>> state() override {
    return {{"exp_avg", exp_avg_}, {"exp_avg_sq", exp_avg_sq_}};
  }

 private:
  // Sums the parameters' squared norms across ranks: the first 2P entries of norms_, in place.
  void allreduce_param_norms() {
    if (num_params_ == 0) return;
    at::Tensor param_norms = norms_.narrow(0, 0, 2 * num_params_);
    if (allreduce_) allreduce_(param_norms);
  }

  void step_cuda(at::Tensor& param, const at::Tensor& grad, double beta1, double step_size) {
#ifdef ZEROTRAIN_WITH_CUDA
    const LambKernelArgs args{
        .beta1 = static_cast<float>(beta1),
        .one_minus_beta1 = static_cast<float>(1 - beta1),
        .beta2 = static_cast<float>(beta2_),
        .one_minus_beta2 = static_cast<float>(1 - beta2_),
        .eps = static_cast<float>(eps_),
        .weight_decay = static_cast<float>(weight_decay_),
        .step_size = static_cast<float>(step_size),
        .min_coeff = static_cast<float>(min_coeff_),
        .max_coeff = static_cast<float>(max_coeff_),
        .eps_inside_sqrt = eps_inside_sqrt_,
    };
    const c10::cuda::CUDAGuard guard(device_);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device_.index());
    const LambLayoutCuda layout = chunks_.view();
    lamb_moments_and_norms_cuda(param.const_data_ptr<float>(), grad.const_data_ptr<float>(), f32(exp_avg_),
                                f32(exp_avg_sq_), f32(partials_), f32(norms_), layout, args, stream);
    // AllReduceSum must order its result before later work on the current stream (ProcessGroupNCCL's allreduce
    // does, on the current stream or through Work::wait), so the phases need no host synchronisation.
    allreduce_param_norms();
    lamb_apply_cuda(f32(param), exp_avg_.const_data_ptr<float>(), exp_avg_sq_.const_data_ptr<float>(),
                    norms_.const_data_ptr<float>(), layout, args, stream);
#else
    (void)param, (void)grad, (void)beta1, (void)step_size;
    TORCH_INTERNAL_ASSERT(false, "Lamb: CUDA shard without CUDA support (the constructor refuses it)");
#endif
  }

  void step_cpu(at::Tensor& param, const at::Tensor& grad, double beta1, double step_size) {
    exp_avg_.mul_(beta1).add_(grad, 1 - beta1);
    exp_avg_sq_.mul_(beta2_).addcmul_(grad, grad, 1 - beta2_);
    const at::Tensor denom = eps_inside_sqrt_ ? at::add(exp_avg_sq_, eps_).sqrt_() : exp_avg_sq_.sqrt().add_(eps_);
    at::Tensor update = at::div(exp_avg_, denom);
    if (weight_decay_ != 0) update.add_(param, weight_decay_);

    // Local squared norms per bucket, summed in double: (R, 2) per range, then (P + 1, 2) per bucket.
    const int64_t num_buckets = num_params_ + 1;
    at::Tensor bucket_sums = at::zeros({num_buckets, 2}, param.options().dtype(at::kDouble));
    if (range_buckets_.numel() > 0) {
      const at::Tensor squares = at::stack({param, update}, 1).to(at::kDouble).square_();
      const at::Tensor range_sums = at::segment_reduce(squares, "sum", /*lengths=*/{}, /*indices=*/{},
                                                       /*offsets=*/range_offsets_, /*axis=*/0, /*unsafe=*/true);
      bucket_sums.index_add_(0, range_buckets_, range_sums);
    }
    const at::Tensor params_part = bucket_sums.narrow(0, 0, num_params_);
    norms_.copy_(at::cat({params_part.select(1, 0), params_part.select(1, 1), bucket_sums[num_params_]}));
    allreduce_param_norms();

    // Per-bucket ratio in fp32, as the CUDA kernel computes it from the same sums.
    const at::Tensor w = at::cat({norms_.narrow(0, 0, num_params_), norms_.narrow(0, 2 * num_params_, 1)}).sqrt_();
    const at::Tensor u =
        at::cat({norms_.narrow(0, num_params_, num_params_), norms_.narrow(0, 2 * num_params_ + 1, 1)}).sqrt_();
    const at::Tensor ratio =
        at::where((w != 0).logical_and_(u != 0), at::div(w, u).clamp_(min_coeff_, max_coeff_), at::ones_like(w));
    const at::Tensor per_element =
        at::repeat_interleave(ratio.index_select(0, range_buckets_), range_lengths_, /*dim=*/0, numel_);
    param.addcmul_(per_element, update, -step_size);
  }

  float beta1_, beta2_;  // fp32, as DeepSpeed's kernels take them (fp32_beta)
  double eps_, weight_decay_, min_coeff_, max_coeff_;
  bool bias_correction_, eps_inside_sqrt_;
  int64_t numel_, num_params_;
  at::Device device_;
  AllReduceSum allreduce_;
  at::Tensor exp_avg_;     // (n,) fp32, param's device: first moment, not bias-corrected
  at::Tensor exp_avg_sq_;  // (n,) fp32, param's device: second moment, not bias-corrected
  at::Tensor norms_;       // (2P + 2,) fp32, param's device: sum p^2 per parameter, sum u^2 per parameter, padding's
  // CPU path: the shard's ranges (see ShardRanges).
  at::Tensor range_offsets_;  // (R + 1,) int64, CPU
  at::Tensor range_lengths_;  // (R,) int64, CPU
  at::Tensor range_buckets_;  // (R,) int64, CPU
#ifdef ZEROTRAIN_WITH_CUDA
  // CUDA path.
  LambChunks chunks_;    // the shard's ranges cut into chunks, on the device
  at::Tensor partials_;  // (C, 2) fp32, device: per-chunk partial sums
#endif
};

}  // namespace

std::unique_ptr<ShardOptimizer> make_lamb_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                    std::vector<ShardSegment> segments, int64_t num_params,
                                                    AllReduceSum allreduce) {
  return std::make_unique<LambShardOptimizer>(cfg, param, std::move(segments), num_params, std::move(allreduce));
}

}  // namespace zerotrain::detail
