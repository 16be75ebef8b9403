// The memory estimator's arithmetic. docs/estimator.md derives every formula; the comments here say which
// term is which and why it is counted that way.
#include "zerotrain/estimate.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace zerotrain {
namespace {

// Bytes per element of each model state (16-bit training with Adam: the seed's 16 bytes per parameter).
constexpr int64_t kParam16Bytes = 2;     // bf16/fp16 working parameters
constexpr int64_t kOptimizerBytes = 12;  // fp32 master copy 4 + Adam exp_avg 4 + exp_avg_sq 4
constexpr int64_t kActivationBytes = 2;  // bf16 activations
constexpr int64_t kFp32Bytes = 4;

// DeepSpeed's offload defaults (offload_config.py), used for the host staging of NVMe swaps.
constexpr int64_t kOptimizerSwapBuffers = 4;             // offload_optimizer.buffer_count
constexpr int64_t kParamSwapBuffers = 5;                 // offload_param.buffer_count
constexpr int64_t kParamSwapBufferElements = 100000000;  // offload_param.buffer_size (1e8)

// The cross-entropy peak: log-probabilities saved by log_softmax, the gradient nll_loss hands back, and the
// gradient log_softmax produces, all fp32 (s, b, V) and all alive at the start of backward.
constexpr int64_t kLossFp32Copies = 3;

// 1e14 parameters: far past any model, small enough that 18 bytes x params x gpus_per_node fits in int64.
constexpr int64_t kMaxParams = 100'000'000'000'000;

[[noreturn]] void overflow() {
  throw std::invalid_argument(
      "input too large: a byte count overflows 64-bit integers (check the model shape: hidden, ffn, vocab, "
      "seq, micro_batch, num_layers; and num_params, gpus_per_node, num_nodes)");
}

int64_t mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

template <class... Rest>
int64_t mul(int64_t a, int64_t b, Rest... rest) {
  return mul(mul(a, b), rest...);
}

int64_t add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Python's int() of a float: truncation toward zero.
int64_t to_int64(double x) {
  if (!(std::fabs(x) < 9.2e18)) overflow();
  return static_cast<int64_t>(x);
}

void require(bool ok, std::string_view what, std::string_view got, std::string_view allowed) {
  if (!ok) throw std::invalid_argument(fmt::format("{}: got {}; {}", what, got, allowed));
}

void require_positive(int64_t value, std::string_view what) {
  require(value >= 1, what, std::to_string(value), "must be a positive integer");
}

void require_non_negative(int64_t value, std::string_view what) {
  require(value >= 0, what, std::to_string(value), "must be 0 or more");
}

int64_t kv_heads(const ModelShape& s) { return s.num_kv_heads == 0 ? s.num_heads : s.num_kv_heads; }
int64_t kv_width(const ModelShape& s) { return kv_heads(s) * (s.hidden / s.num_heads); }
int64_t positions(const ModelShape& s) {
  if (s.mlp != MlpKind::kPlain) return 0;
  return s.max_positions == 0 ? s.seq : s.max_positions;
}

void validate_shape(const ModelShape& s) {
  require_positive(s.num_layers, "num_layers (--layers)");
  require_positive(s.hidden, "hidden (--hidden)");
  require_positive(s.num_heads, "num_heads (--heads)");
  require(s.hidden % s.num_heads == 0, "num_heads (--heads)", std::to_string(s.num_heads),
          fmt::format("must divide hidden ({})", s.hidden));
  require(s.num_kv_heads >= 0 && s.num_kv_heads <= s.num_heads &&
              (s.num_kv_heads == 0 || s.num_heads % s.num_kv_heads == 0),
          "num_kv_heads (--kv-heads)", std::to_string(s.num_kv_heads),
          fmt::format("must divide num_heads ({}); 0 means num_heads", s.num_heads));
  require_positive(s.ffn, "ffn (--ffn)");
  require_positive(s.vocab, "vocab (--vocab)");
  require_positive(s.seq, "seq (--seq)");
  require_positive(s.micro_batch, "micro_batch (--micro-batch)");
  require_non_negative(s.max_positions, "max_positions (--max-positions)");
  if (s.mlp == MlpKind::kGated) {
    require(s.max_positions == 0, "max_positions (--max-positions)", std::to_string(s.max_positions),
            "only the plain (GPT-2) family has a learned position table; the gated family uses rotary");
  } else {
    require(s.seq <= positions(s), "seq (--seq)", std::to_string(s.seq),
            fmt::format("must be at most max_positions ({}), the rows of the learned position table",
                        positions(s)));
  }
}

// Parameters of one block. Gated (Llama): q, o are h x h, k, v are h x kv_width, gate/up/down h x f,
// two RMSNorm weights. Plain (GPT-2): the same projections with biases, fc/proj h x f with biases, two
// LayerNorms with weight and bias.
int64_t block_parameters(const ModelShape& s) {
  const int64_t h = s.hidden, f = s.ffn, kv = kv_width(s);
  const int64_t attention = add(mul(2, h, h), mul(2, h, kv));
  if (s.mlp == MlpKind::kGated) return add(add(attention, mul(3, h, f)), 2 * h);
  const int64_t attention_bias = h + 2 * kv + h;  // q, k, v, o
  const int64_t mlp = add(mul(2, h, f), f + h);    // fc weight + proj weight, fc bias + proj bias
  return add(add(attention, attention_bias), add(mlp, 4 * h));
}

int64_t embedding_parameters(const ModelShape& s) {
  return add(mul(s.vocab, s.hidden), mul(positions(s), s.hidden));
}

// Final norm, plus the LM head unless it is the tied token embedding.
int64_t head_parameters(const ModelShape& s) {
  const int64_t norm = s.mlp == MlpKind::kGated ? s.hidden : 2 * s.hidden;
  return add(norm, s.tie_embeddings ? 0 : mul(s.vocab, s.hidden));
}

// The largest stage-3 gather unit: zerotrain gathers the embedding, each block, and the head (final norm
// + LM head; a tied head gathers the embedding's matrix again) as one unit each, FSDP-style. (Blocks smaller than
// stage3_module_granularity_threshold, by default an eighth of the prefetch bucket, join their neighbours into units
// of up to that size: not modelled here; it only happens to models whose blocks are far below the prefetch bucket,
// and adds at most twice that many 16-bit elements to the buffers below.)
int64_t largest_unit_parameters(const ModelShape& s) {
  const int64_t head_gathered = add(head_parameters(s), s.tie_embeddings ? mul(s.vocab, s.hidden) : 0);
  return std::max({embedding_parameters(s), block_parameters(s), head_gathered});
}

struct Rows {
  int stage;
  OffloadKind offload;
};

// Table order: by stage, then offload.
constexpr Rows kRows[] = {
    {0, OffloadKind::kNone},
    {1, OffloadKind::kNone},
    {1, OffloadKind::kOptimizerCpu},
    {2, OffloadKind::kNone},
    {2, OffloadKind::kOptimizerCpu},
    {3, OffloadKind::kNone},
    {3, OffloadKind::kOptimizerCpu},
    {3, OffloadKind::kOptimizerAndParamCpu},
    {3, OffloadKind::kOptimizerNvme},
    {3, OffloadKind::kOptimizerAndParamNvme},
};

// Preference for "the first configuration that fits": the seed's order (no offload from stage 0 up), then
// CPU offload, then NVMe, i.e. least communication and host traffic first.
constexpr Rows kPreference[] = {
    {0, OffloadKind::kNone},
    {1, OffloadKind::kNone},
    {2, OffloadKind::kNone},
    {3, OffloadKind::kNone},
    {1, OffloadKind::kOptimizerCpu},
    {2, OffloadKind::kOptimizerCpu},
    {3, OffloadKind::kOptimizerCpu},
    {3, OffloadKind::kOptimizerAndParamCpu},
    {3, OffloadKind::kOptimizerNvme},
    {3, OffloadKind::kOptimizerAndParamNvme},
};

bool offloads_optimizer(OffloadKind o) { return o != OffloadKind::kNone; }
bool offloads_params(OffloadKind o) {
  return o == OffloadKind::kOptimizerAndParamCpu || o == OffloadKind::kOptimizerAndParamNvme;
}
bool uses_nvme(OffloadKind o) {
  return o == OffloadKind::kOptimizerNvme || o == OffloadKind::kOptimizerAndParamNvme;
}

struct PerRank {
  int64_t gpu = 0;
  int64_t cpu = 0;
  int64_t nvme = 0;
};

// Model states of one rank. The seed's accounting: 2 bytes 16-bit params + grad_bytes gradient + 12 bytes
// fp32 master and Adam moments, each either replicated (P) or partitioned (ceil(P / N)) as the stage says.
// Offloaded optimizer states take the gradient shard along (the host/NVMe step reads it there).
PerRank model_states(int stage, OffloadKind offload, int64_t params, int num_gpus, int64_t grad_bytes,
                     int64_t sub_group_size) {
  const int64_t shard = ceil_div(params, num_gpus);
  const int64_t params16 = mul(stage == 3 ? shard : params, kParam16Bytes);
  // Stages 0-1 accumulate full gradients across micro-steps; 2-3 keep only the local shard.
  const int64_t grads = mul(stage >= 2 ? shard : params, grad_bytes);
  const int64_t optimizer = mul(stage == 0 ? params : shard, kOptimizerBytes);
  PerRank r;
  if (!offloads_optimizer(offload)) {
    r.gpu = add(add(params16, grads), optimizer);
    return r;
  }
  // Offloaded: the host (or NVMe) holds the optimizer and the gradient shard. Stage 1 still accumulates the
  // full gradient on the GPU; its reduced shard is copied to the host.
  const int64_t grad_shard = mul(shard, grad_bytes);
  const int64_t host_states = add(optimizer, grad_shard);
  r.gpu = add(offloads_params(offload) ? 0 : params16, stage == 1 ? grads : 0);
  const int64_t params_host = offloads_params(offload) ? params16 : 0;
  if (uses_nvme(offload)) {
    r.nvme = add(host_states, params_host);
    // Host staging of the swaps: buffer_count pinned fp32 buffers of one optimizer sub-group, plus the
    // parameter swap pool when parameters are on NVMe too.
    r.cpu = mul(kOptimizerSwapBuffers, std::min(sub_group_size, shard), kFp32Bytes);
    if (offloads_params(offload)) {
      r.cpu = add(r.cpu, mul(kParamSwapBuffers, kParamSwapBufferElements, kParam16Bytes));
    }
  } else {
    r.cpu = add(host_states, params_host);
  }
  return r;
}

struct Buffers {
  int64_t bytes = 0;
  bool unit_unknown = false;
};

// Communication buffers of one GPU; see docs/estimator.md "Buffers" for the per-stage accounting.
Buffers buffers(int stage, const EstimateInput& in, int64_t params, int64_t largest_unit,
                int64_t block_params) {
  const int64_t bucket = mul(std::min(in.reduce_bucket_size, params), kParam16Bytes);
  Buffers b;
  if (stage == 0) {
    b.bytes = bucket;  // the flat gradient all-reduce bucket
    return b;
  }
  if (stage <= 2) {
    // DeepSpeed's stage 1/2 double-buffers the bucket when overlap_comm is on (code default off). The
    // parameter all-gather after the step writes in place into the flat 16-bit buffer: no extra memory.
    const bool overlap = in.overlap_comm.value_or(false);
    b.bytes = mul(bucket, overlap ? 2 : 1);
    return b;
  }
  // Stage 3: the running unit, the units prefetched ahead of it (prefetch_bucket_size rounded up to whole
  // blocks), capped by max_live_parameters but never below one unit; plus the running unit's unsharded
  // 16-bit gradient before reduce-scatter; plus one flat reduce bucket (DeepSpeed's stage 3 keeps one).
  if (largest_unit == 0) {
    b.bytes = bucket;
    b.unit_unknown = true;
    return b;
  }
  int64_t ahead = 0;
  if (in.prefetch_bucket_size > 0) {
    const int64_t step = block_params > 0 ? block_params : largest_unit;
    ahead = mul(ceil_div(in.prefetch_bucket_size, step), step);
  }
  int64_t gathered = add(largest_unit, ahead);
  gathered = std::min(gathered, std::max(largest_unit, in.max_live_parameters));
  gathered = std::min(gathered, params);
  b.bytes = add(add(mul(gathered, kParam16Bytes), mul(largest_unit, kParam16Bytes)), bucket);
  return b;
}

std::string offload_label(OffloadKind o) {
  return fmt::format("offload_optimizer={}, offload_param={}", offload_optimizer_device(o),
                     offload_param_device(o));
}

double gib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

const StageEstimate& find_row(const Estimate& e, int stage, OffloadKind offload) {
  for (const auto& row : e.stages)
    if (row.stage == stage && row.offload == offload) return row;
  throw std::logic_error("estimate: missing row");  // internal invariant: kRows covers every lookup
}

std::string describe_total(const StageEstimate& r) {
  return fmt::format("{:.2f} GiB per GPU (model states {:.2f} + buffers {:.2f} + activations {:.2f})",
                     gib(r.total_gpu_bytes), gib(r.model_states_gpu_bytes), gib(r.buffers_gpu_bytes),
                     gib(r.activations_gpu_bytes));
}

Recommendation recommend(const Estimate& e) {
  Recommendation rec;
  rec.seed = select_zero_stage(static_cast<double>(e.num_params) / 1e9, e.input.gpu_memory_gb, e.num_gpus);
  const auto& seed = rec.seed;

  std::string reason = fmt::format(
      "seed decision tree (model states only, 16 bytes/param; threshold 70% of {:g} GB = {:.1f} GB per GPU):",
      e.input.gpu_memory_gb, seed.threshold_gb);
  const bool offload = seed.advice.find("offload") != std::string::npos;
  const int last_compared = offload ? 3 : seed.stage;
  for (int s = 0; s <= last_compared; ++s) {
    const bool under = seed.per_gpu_gb[s] < seed.threshold_gb;
    reason += fmt::format(" ZeRO-{} {:.1f} GB {} {:.1f}{}", s, seed.per_gpu_gb[s], under ? "<" : ">=",
                          seed.threshold_gb, s < last_compared ? "," : "");
  }
  reason += fmt::format(" -> stage {} (\"{}\").", seed.stage, seed.advice);

  const OffloadKind seed_offload = offload ? OffloadKind::kOptimizerCpu : OffloadKind::kNone;
  const StageEstimate& chosen = find_row(e, seed.stage, seed_offload);
  rec.full_estimate_fits = chosen.fits;
  for (const auto& p : kPreference) {
    const StageEstimate& row = find_row(e, p.stage, p.offload);
    if (row.fits) {
      rec.first_fit_stage = row.stage;
      rec.first_fit_offload = row.offload;
      break;
    }
  }
  const std::string what =
      e.activations ? "with buffers and activations" : "with buffers (no activations: no shape)";
  reason += fmt::format(" Full estimate {} for stage {} ({}): {}, which {} the {:g} GB GPU.", what,
                        seed.stage, offload_label(seed_offload), describe_total(chosen),
                        chosen.fits ? "fits in" : "does not fit in", e.input.gpu_memory_gb);
  if (!chosen.fits) {
    if (rec.first_fit_stage) {
      const StageEstimate& first = find_row(e, *rec.first_fit_stage, rec.first_fit_offload);
      reason += fmt::format(" First configuration that fits: stage {} ({}), {:.2f} GiB per GPU.", first.stage,
                            offload_label(first.offload), gib(first.total_gpu_bytes));
    } else {
      reason += " No configuration fits at this micro-batch and sequence length.";
    }
    if (e.activations && !e.input.activation_checkpointing) {
      const ActivationEstimate ac =
          estimate_activations(*e.input.shape, /*activation_checkpointing=*/true, e.input.attention);
      const int64_t with_ac = chosen.total_gpu_bytes - chosen.activations_gpu_bytes + ac.peak_bytes;
      reason += fmt::format(" With activation checkpointing stage {} would need {:.2f} GiB per GPU.",
                            seed.stage, gib(with_ac));
    }
  }
  rec.reason = std::move(reason);
  return rec;
}

void validate_input(const EstimateInput& in) {
  if (in.shape) {
    require(in.num_params == 0, "num_params (--params)", std::to_string(in.num_params),
            "give a parameter count or a model shape, not both");
    require(in.largest_layer_params == 0, "largest_layer_params (--largest-layer-params)",
            std::to_string(in.largest_layer_params),
            "is derived from the model shape; give it only with a parameter count");
    validate_shape(*in.shape);
  } else {
    require(in.num_params >= 1 && in.num_params <= kMaxParams, "num_params (--params)",
            std::to_string(in.num_params), "must be between 1 and 1e14 (or give a model shape)");
    require(in.largest_layer_params >= 0 && in.largest_layer_params <= in.num_params,
            "largest_layer_params (--largest-layer-params)", std::to_string(in.largest_layer_params),
            fmt::format("must be between 0 (unknown) and num_params ({})", in.num_params));
  }
  require(in.gpus_per_node >= 1 && in.gpus_per_node <= 1024, "gpus_per_node (--gpus-per-node)",
          std::to_string(in.gpus_per_node), "must be between 1 and 1024");
  require(in.num_nodes >= 1 && in.num_nodes <= 1'000'000, "num_nodes (--nodes)", std::to_string(in.num_nodes),
          "must be between 1 and 1000000");
  require(std::isfinite(in.gpu_memory_gb) && in.gpu_memory_gb > 0, "gpu_memory_gb (--gpu-memory-gb)",
          fmt::format("{:g}", in.gpu_memory_gb), "must be a positive number of GB");
  require_non_negative(in.reduce_bucket_size, "reduce_bucket_size (--reduce-bucket-size)");
  require_non_negative(in.allgather_bucket_size, "allgather_bucket_size (--allgather-bucket-size)");
  require_non_negative(in.prefetch_bucket_size, "prefetch_bucket_size (--prefetch-bucket-size)");
  require_non_negative(in.max_live_parameters, "max_live_parameters (--max-live-parameters)");
  require_positive(in.sub_group_size, "sub_group_size (--sub-group-size)");
  require(in.grad_bytes == 2 || in.grad_bytes == 4, "grad_bytes (--grad-bytes)", std::to_string(in.grad_bytes),
          "allowed: 2 (16-bit gradients, the seed's accounting) or 4 (fp32 gradients, DeepSpeed's)");
  require(std::isfinite(in.additional_buffer_factor) && in.additional_buffer_factor >= 1.0,
          "additional_buffer_factor", fmt::format("{:g}", in.additional_buffer_factor), "must be at least 1");
}

}  // namespace

int64_t count_parameters(const ModelShape& shape) {
  validate_shape(shape);
  return add(add(embedding_parameters(shape), mul(shape.num_layers, block_parameters(shape))),
             head_parameters(shape));
}

int64_t largest_layer_parameters(const ModelShape& shape) {
  validate_shape(shape);
  const int64_t h = shape.hidden;
  // DeepSpeed's model_to_params: the most parameters held directly by one module. Token embedding (and
  // the untied LM head, same size), the position table, or the widest projection: GPT-2's fused c_attn
  // (h x (h + 2 kv) + bias) or fc (h x f + f); Llama's gate/up/down (h x f) or q/o (h x h).
  int64_t widest = 0;
  if (shape.mlp == MlpKind::kGated) {
    widest = std::max(mul(h, shape.ffn), mul(h, h));
  } else {
    const int64_t qkv = h + 2 * kv_width(shape);
    widest = std::max(add(mul(h, qkv), qkv), add(mul(h, shape.ffn), shape.ffn));
  }
  return std::max({mul(shape.vocab, h), mul(positions(shape), h), widest});
}

ActivationEstimate estimate_activations(const ModelShape& s, bool activation_checkpointing,
                                        AttentionKind attention) {
  validate_shape(s);
  // Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", Sec. 4.1,
  // generalized to GQA, f != 4h and SwiGLU. For GPT-2 (plain, f = 4h, kv = h, dropout, math attention) it
  // is exactly s b h (34 + 5 a s / h) bytes per layer.
  const int64_t sb = mul(s.seq, s.micro_batch);
  const int64_t sbh = mul(sb, s.hidden);
  const int64_t sbf = mul(sb, s.ffn);
  const int64_t mask = s.dropout ? sbh : 0;  // 1-byte dropout mask of an (s, b, h) output
  const bool math = attention == AttentionKind::kMath;
  // The math path multiplies K and V expanded to all heads; SDPA with native GQA saves them at kv width.
  const int64_t sbkv = math ? sbh : mul(sb, kv_width(s));
  int64_t attn = add(mul(kActivationBytes, sbh, 4), mul(2 * kActivationBytes, sbkv));  // norm in, qkv in, Q, out; K, V
  attn = add(attn, mask);
  if (math) {
    // Softmax output (2 bytes); with dropout also its mask (1) and the dropped output (2): 5 a s^2 b.
    const int64_t as2b = mul(s.num_heads, s.seq, s.seq, s.micro_batch);
    attn = add(attn, mul(as2b, s.dropout ? 5 : 2));
  } else {
    attn = add(attn, mul(s.num_heads, sb, kFp32Bytes));  // flash keeps the fp32 log-sum-exp per row
  }
  int64_t mlp = mul(kActivationBytes, sbh, 2);  // norm input, MLP input
  if (s.mlp == MlpKind::kGated) {
    mlp = add(mlp, mul(kActivationBytes, sbf, 4));  // gate out (SiLU in), up out, SiLU out, product
  } else {
    mlp = add(add(mlp, mul(kActivationBytes, sbf, 2)), mask);  // GeLU in, GeLU out (proj in), mask
  }
  ActivationEstimate a;
  a.per_layer_bytes = add(attn, mlp);
  // Outside the blocks: embedding dropout mask, final norm input, LM head input.
  const int64_t outside = add(mask, mul(kActivationBytes, sbh, 2));
  const int64_t per_block_kept = activation_checkpointing ? mul(kActivationBytes, sbh) : a.per_layer_bytes;
  a.saved_bytes = add(mul(s.num_layers, per_block_kept), outside);
  a.loss_peak_bytes = mul(kLossFp32Copies, kFp32Bytes, sb, s.vocab);
  // Recompute rebuilds one block; its input is the checkpoint already counted in saved_bytes.
  a.recompute_bytes = activation_checkpointing ? a.per_layer_bytes - mul(kActivationBytes, sbh) : 0;
  a.peak_bytes = add(a.saved_bytes, std::max(a.loss_peak_bytes, a.recompute_bytes));
  return a;
}

SelectResult select_zero_stage(double params_billions, double gpu_memory_gb, int num_gpus) {
  require(std::isfinite(params_billions) && params_billions >= 0, "params_billions",
          fmt::format("{:g}", params_billions), "must be a finite number >= 0");
  require(std::isfinite(gpu_memory_gb) && gpu_memory_gb > 0, "gpu_memory_gb", fmt::format("{:g}", gpu_memory_gb),
          "must be a positive number of GB");
  require(num_gpus >= 1, "num_gpus", std::to_string(num_gpus), "must be at least 1");
  // Same operations in the same order as the seed's Python, so the floating-point results are identical.
  const double bytes_per_param = 2;
  const double optim_bytes = 12;
  const double model_memory = params_billions * 1e9 * bytes_per_param / 1e9;
  const double optim_memory = params_billions * 1e9 * optim_bytes / 1e9;
  const double n = num_gpus;
  SelectResult r;
  r.per_gpu_gb[0] = model_memory + optim_memory + model_memory;
  r.per_gpu_gb[1] = model_memory + (optim_memory / n) + model_memory;
  r.per_gpu_gb[2] = model_memory + (optim_memory / n) + (model_memory / n);
  r.per_gpu_gb[3] = (model_memory + optim_memory + model_memory) / n;
  r.threshold_gb = gpu_memory_gb * 0.7;
  static constexpr const char* kAdvice[] = {"Use DDP", "Use ZeRO-1", "Use ZeRO-2", "Use ZeRO-3"};
  for (int s = 0; s < 4; ++s) {
    if (r.per_gpu_gb[s] < r.threshold_gb) {
      r.stage = s;
      r.advice = kAdvice[s];
      return r;
    }
  }
  r.stage = 3;
  r.advice = "Use ZeRO-3 with CPU offload";
  return r;
}

DeepSpeedModelStates deepspeed_zero2_model_states(int64_t total_params, int gpus_per_node, int num_nodes,
                                                  bool cpu_offload, double additional_buffer_factor) {
  require_non_negative(total_params, "total_params");
  require(gpus_per_node >= 1, "gpus_per_node", std::to_string(gpus_per_node), "must be at least 1");
  require(num_nodes >= 1, "num_nodes", std::to_string(num_nodes), "must be at least 1");
  // Mirrors stage_1_and_2.py. Python multiplies exact ints and rounds once when a float joins; a double
  // product of two exact operands rounds the same way, so doubles reproduce it (for params < 2^53 / 18).
  // "/" is float division and int() truncates toward zero.
  const double total_gpus = static_cast<double>(num_nodes) * gpus_per_node;
  const double p = static_cast<double>(total_params);
  const double f = additional_buffer_factor;
  DeepSpeedModelStates r;
  if (cpu_offload) {
    r.gpu_bytes = to_int64(2 * p);
    r.cpu_bytes_per_node = to_int64(p * std::max(4 * total_gpus, 16.0) * f);
  } else {
    r.gpu_bytes = to_int64(2 * p) + to_int64(18 * p / total_gpus);
    r.cpu_bytes_per_node = to_int64(p * 4 * gpus_per_node * f);
  }
  return r;
}

DeepSpeedModelStates deepspeed_zero3_model_states(int64_t total_params, int64_t largest_layer_params,
                                                  int gpus_per_node, int num_nodes, bool cpu_offload,
                                                  bool cpu_offload_params, bool zero_init,
                                                  double additional_buffer_factor) {
  require_non_negative(total_params, "total_params");
  require_non_negative(largest_layer_params, "largest_layer_params");
  require(gpus_per_node >= 1, "gpus_per_node", std::to_string(gpus_per_node), "must be at least 1");
  require(num_nodes >= 1, "num_nodes", std::to_string(num_nodes), "must be at least 1");
  // Mirrors stage3.py (same rounding argument as above), including its max() of an int and a float.
  const double total_gpus = static_cast<double>(num_nodes) * gpus_per_node;
  const double gpus_factor = 1.0 / num_nodes;
  const double p = static_cast<double>(total_params);
  const double largest = static_cast<double>(largest_layer_params);
  const double f = additional_buffer_factor;
  const int64_t largest_layer_memory = to_int64(4 * largest);
  const double load = 4.0 * gpus_per_node;  // the fp32 model each local rank builds on the host
  DeepSpeedModelStates r;
  double cpu = 0;
  if (cpu_offload) {
    const double k = cpu_offload_params ? 18 : 16;
    r.gpu_bytes = cpu_offload_params ? largest_layer_memory : largest_layer_memory + to_int64(2 * p / total_gpus);
    cpu = zero_init ? p * k * gpus_factor * f : p * std::max(load, k * gpus_factor) * f;
  } else {
    r.gpu_bytes = largest_layer_memory + to_int64(18 * p / total_gpus);
    cpu = zero_init ? largest * 4 * gpus_per_node * f : p * 4 * gpus_per_node * f;
  }
  r.cpu_bytes_per_node = to_int64(cpu);
  return r;
}

Estimate estimate_memory(const EstimateInput& in) {
  validate_input(in);
  Estimate e;
  e.input = in;
  e.num_gpus = in.gpus_per_node * in.num_nodes;
  int64_t block = 0;
  if (in.shape) {
    e.num_params = count_parameters(*in.shape);
    require(e.num_params <= kMaxParams, "model shape", fmt::format("{} parameters", e.num_params),
            "must be at most 1e14");
    e.largest_layer_params = largest_layer_parameters(*in.shape);
    e.largest_unit_params = largest_unit_parameters(*in.shape);
    block = block_parameters(*in.shape);
    e.activations = estimate_activations(*in.shape, in.activation_checkpointing, in.attention);
  } else {
    e.num_params = in.num_params;
    e.largest_layer_params = in.largest_layer_params;
    e.largest_unit_params = in.largest_layer_params;
    e.notes.push_back(
        "activations not estimated: give a model shape (--model NAME, or --layers --hidden ...); the seed's "
        "30% headroom is all that is left for them");
  }
  const int64_t activations = e.activations ? e.activations->peak_bytes : 0;
  const int64_t gpu_capacity = static_cast<int64_t>(in.gpu_memory_gb * 1e9);
  const int64_t p = e.num_params;
  const int64_t gpn = in.gpus_per_node;

  bool unit_unknown = false;
  for (const auto& row : kRows) {
    StageEstimate s;
    s.stage = row.stage;
    s.offload = row.offload;
    const PerRank rank = model_states(row.stage, row.offload, p, e.num_gpus, in.grad_bytes, in.sub_group_size);
    s.model_states_gpu_bytes = rank.gpu;
    s.model_states_cpu_bytes = mul(rank.cpu, gpn);
    s.model_states_nvme_bytes = mul(rank.nvme, gpn);
    const Buffers buf = buffers(row.stage, in, p, e.largest_unit_params, block);
    unit_unknown = unit_unknown || buf.unit_unknown;
    s.buffers_gpu_bytes = buf.bytes;
    s.activations_gpu_bytes = activations;
    s.total_gpu_bytes = add(add(s.model_states_gpu_bytes, s.buffers_gpu_bytes), s.activations_gpu_bytes);
    s.total_gpu_bytes_per_node = mul(s.total_gpu_bytes, gpn);
    // At start each rank builds the model in fp32 on the host (DeepSpeed's assumption, what a Hugging Face
    // from_pretrained does), except stage 3 under zero.Init, which holds one layer at a time.
    const bool partitioned_init = row.stage == 3 && in.zero_init;
    s.init_cpu_bytes_per_node = mul(partitioned_init ? e.largest_layer_params : p, kFp32Bytes, gpn);
    s.cpu_peak_bytes_per_node = std::max(s.model_states_cpu_bytes, s.init_cpu_bytes_per_node);
    s.fits = s.total_gpu_bytes <= gpu_capacity;
    if (row.stage == 2 && !uses_nvme(row.offload)) {
      s.deepspeed = deepspeed_zero2_model_states(p, in.gpus_per_node, in.num_nodes,
                                                 offloads_optimizer(row.offload), in.additional_buffer_factor);
    } else if (row.stage == 3 && !uses_nvme(row.offload)) {
      s.deepspeed = deepspeed_zero3_model_states(p, e.largest_layer_params, in.gpus_per_node, in.num_nodes,
                                                 offloads_optimizer(row.offload), offloads_params(row.offload),
                                                 in.zero_init, in.additional_buffer_factor);
    }
    e.stages.push_back(s);
  }
  if (unit_unknown) {
    e.notes.push_back(
        "largest layer unknown: stage 3's gathered parameters and gradients, and DeepSpeed's 4 x largest-layer "
        "term, count as 0; give --largest-layer-params");
  }
  e.notes.push_back(
      "gradients are counted for the whole step (gradient accumulation keeps them); with one micro-step and "
      "gradients freed between steps, the peak at the start of backward is lower by up to the gradient bytes");
  e.notes.push_back(
      "not counted: the CUDA context and library workspaces (outside the caching allocator), allocator "
      "fragmentation, and step-time temporaries after backward (activations are freed by then)");
  e.recommendation = recommend(e);
  return e;
}

namespace {

struct Preset {
  const char* name;
  ModelShape shape;
};

ModelShape gpt2_shape(int64_t layers, int64_t hidden, int64_t heads) {
  ModelShape s;
  s.num_layers = layers;
  s.hidden = hidden;
  s.num_heads = heads;
  s.num_kv_heads = heads;
  s.ffn = 4 * hidden;
  s.vocab = 50257;
  s.seq = 1024;
  s.micro_batch = 1;
  s.mlp = MlpKind::kPlain;
  s.tie_embeddings = true;
  s.max_positions = 1024;
  return s;
}

ModelShape llama_shape(int64_t layers, int64_t hidden, int64_t heads, int64_t kv_heads, int64_t ffn,
                       int64_t vocab, int64_t seq) {
  ModelShape s;
  s.num_layers = layers;
  s.hidden = hidden;
  s.num_heads = heads;
  s.num_kv_heads = kv_heads;
  s.ffn = ffn;
  s.vocab = vocab;
  s.seq = seq;
  s.micro_batch = 1;
  s.mlp = MlpKind::kGated;
  return s;
}

// The built-in models' shapes (published configurations).
const std::vector<Preset>& presets() {
  static const std::vector<Preset> kPresets = {
      {"gpt2", gpt2_shape(12, 768, 12)},
      {"gpt2-medium", gpt2_shape(24, 1024, 16)},
      {"gpt2-large", gpt2_shape(36, 1280, 20)},
      {"gpt2-xl", gpt2_shape(48, 1600, 25)},
      {"llama-1.1b", llama_shape(22, 2048, 32, 4, 5632, 32000, 2048)},  // TinyLlama
      {"llama-2-7b", llama_shape(32, 4096, 32, 32, 11008, 32000, 4096)},
      {"llama-3-8b", llama_shape(32, 4096, 32, 8, 14336, 128256, 8192)},
  };
  return kPresets;
}

}  // namespace

ModelShape model_preset(std::string_view name) {
  for (const auto& p : presets())
    if (name == p.name) return p.shape;
  std::string allowed;
  for (const auto& n : model_preset_names()) allowed += (allowed.empty() ? "" : ", ") + n;
  throw std::invalid_argument(fmt::format("model (--model): got '{}'; allowed: {}", name, allowed));
}

std::vector<std::string> model_preset_names() {
  std::vector<std::string> names;
  for (const auto& p : presets()) names.emplace_back(p.name);
  return names;
}

std::string_view offload_optimizer_device(OffloadKind offload) {
  switch (offload) {
    case OffloadKind::kNone: return "none";
    case OffloadKind::kOptimizerCpu:
    case OffloadKind::kOptimizerAndParamCpu: return "cpu";
    case OffloadKind::kOptimizerNvme:
    case OffloadKind::kOptimizerAndParamNvme: return "nvme";
  }
  return "none";
}

std::string_view offload_param_device(OffloadKind offload) {
  switch (offload) {
    case OffloadKind::kOptimizerAndParamCpu: return "cpu";
    case OffloadKind::kOptimizerAndParamNvme: return "nvme";
    default: return "none";
  }
}

std::string_view to_string(MlpKind mlp) { return mlp == MlpKind::kGated ? "gated" : "plain"; }

std::string_view to_string(AttentionKind attention) {
  return attention == AttentionKind::kFlash ? "flash" : "math";
}

}  // namespace zerotrain
