// Memory estimator: per-GPU and per-node memory of ZeRO stages 0-3, with and without CPU/NVMe offload,
// DeepSpeed's own estimator formulas for comparison, and the seed's stage selector.
// The formulas, each assumption, and how they relate to DeepSpeed's are in docs/estimator.md.
// All byte counts are int64_t bytes; "GB" means 1e9 bytes (the seed's unit), "GiB" 2^30.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zerotrain {

// Transformer block family: which parameters and activations a layer has.
enum class MlpKind {
  kGated,  // Llama: SwiGLU MLP (gate, up, down), no biases, RMSNorm (weight only), rotary positions
  kPlain,  // GPT-2: GeLU MLP (fc, proj), biases everywhere, LayerNorm (weight + bias), learned positions
};

// How attention stores what its backward needs.
enum class AttentionKind {
  kFlash,  // SDPA flash / memory-efficient kernels: no (seq x seq) scores kept, only the fp32 log-sum-exp
  kMath,   // scores materialized: softmax output (and dropout mask + output) of (heads, seq, seq) kept
};

// Where ZeRO keeps the model states that do not stay on the GPU.
enum class OffloadKind {
  kNone,                   // everything on the GPU
  kOptimizerCpu,           // offload_optimizer=cpu: fp32 master, Adam moments, gradient shard on the host
  kOptimizerNvme,          // offload_optimizer=nvme (stage 3): the same, swapped to NVMe through host buffers
  kOptimizerAndParamCpu,   // offload_optimizer=cpu + offload_param=cpu (stage 3): 16-bit shard on the host too
  kOptimizerAndParamNvme,  // offload_optimizer=nvme + offload_param=nvme (stage 3): all of it on NVMe
};

// Decoder-only transformer shape (Llama or GPT-2 family), enough to count parameters and activations.
struct ModelShape {
  int64_t num_layers = 0;      // transformer blocks
  int64_t hidden = 0;          // model width h
  int64_t num_heads = 0;       // attention (query) heads a; must divide hidden
  int64_t num_kv_heads = 0;    // key/value heads (GQA); 0 means num_heads; must divide num_heads
  int64_t ffn = 0;             // MLP inner width f
  int64_t vocab = 0;           // vocabulary size V
  int64_t seq = 0;             // training sequence length s
  int64_t micro_batch = 1;     // micro-batch per GPU b
  MlpKind mlp = MlpKind::kGated;  // block family (see MlpKind)
  bool tie_embeddings = false;    // the LM head reuses the token embedding (no separate V x h matrix)
  int64_t max_positions = 0;      // kPlain: rows of the learned position table; 0 means seq
  bool dropout = false;           // dropout layers present (their 1-byte masks are saved for backward)
};

// What to estimate: a parameter count or a shape, the cluster, and the ZeRO knobs that cost memory.
struct EstimateInput {
  int64_t num_params = 0;                   // total parameters; leave 0 when shape is given
  std::optional<ModelShape> shape;          // model shape; enables activations and the largest layer
  int64_t largest_layer_params = 0;         // with num_params only: largest module's parameters (0 = unknown)
  int gpus_per_node = 1;                    // GPUs (ranks) per node
  int num_nodes = 1;                        // nodes
  double gpu_memory_gb = 80.0;              // memory of one GPU, GB (1e9 bytes)
  bool activation_checkpointing = false;    // every block recomputed in backward (only its input kept)
  AttentionKind attention = AttentionKind::kFlash;  // attention kernel (zerotrain uses SDPA)
  int64_t reduce_bucket_size = 500'000'000;         // gradient bucket, elements (DeepSpeed default 5e8)
  int64_t allgather_bucket_size = 500'000'000;      // stage 1/2 parameter all-gather chunk, elements (5e8)
  int64_t prefetch_bucket_size = 50'000'000;        // stage 3 prefetch, elements (DeepSpeed code default 5e7)
  int64_t max_live_parameters = 1'000'000'000;      // stage 3 cap on gathered parameters, elements (1e9)
  int64_t sub_group_size = 1'000'000'000;           // stage 3 optimizer sub-group, elements (NVMe swap unit, 1e9)
  std::optional<bool> overlap_comm;         // double-buffer the stage 1/2 bucket; unset = DeepSpeed default
  int grad_bytes = 2;                       // bytes per kept gradient element: 2 (seed, 16-bit) or 4 (fp32)
  bool zero_init = true;                    // stage 3 builds the model partitioned (DeepSpeed's zero.Init)
  double additional_buffer_factor = 1.5;    // DeepSpeed's CPU safety factor, used only by its formulas
};

// DeepSpeed's estimator output for one configuration (estimate_zero{2,3}_model_states_mem_needs).
struct DeepSpeedModelStates {
  int64_t gpu_bytes = 0;           // per GPU (stage 3 includes 4 bytes x largest layer)
  int64_t cpu_bytes_per_node = 0;  // per node, including the 1.5 buffer factor and the fp32 model load
};

// Activation memory of one GPU for one micro-batch, 16-bit activations.
struct ActivationEstimate {
  int64_t per_layer_bytes = 0;   // one block's saved activations without checkpointing
  int64_t saved_bytes = 0;       // kept at the end of forward (all blocks, or block inputs) + head inputs
  int64_t loss_peak_bytes = 0;   // fp32 logit copies alive at the start of backward (3 x 4 s b V)
  int64_t recompute_bytes = 0;   // one block's activations rebuilt in backward (checkpointing), else 0
  int64_t peak_bytes = 0;        // saved + max(loss peak, recompute)
};

// Memory of one (stage, offload) configuration.
struct StageEstimate {
  int stage = 0;                             // ZeRO stage 0-3
  OffloadKind offload = OffloadKind::kNone;  // where non-GPU model states live
  int64_t model_states_gpu_bytes = 0;        // per GPU: 16-bit params + gradients + fp32 master + Adam m, v
  int64_t model_states_cpu_bytes = 0;        // per node: offloaded model states + host staging, steady state
  int64_t model_states_nvme_bytes = 0;       // per node: model states swapped to NVMe
  int64_t buffers_gpu_bytes = 0;             // per GPU: gradient buckets, stage 3 gathered params and grads
  int64_t activations_gpu_bytes = 0;         // per GPU: ActivationEstimate::peak_bytes (0 without a shape)
  int64_t total_gpu_bytes = 0;               // per GPU: model states + buffers + activations
  int64_t total_gpu_bytes_per_node = 0;      // total_gpu_bytes x gpus_per_node
  int64_t init_cpu_bytes_per_node = 0;       // per node, at start: fp32 model built on the host per rank
  int64_t cpu_peak_bytes_per_node = 0;       // max(model_states_cpu_bytes, init_cpu_bytes_per_node)
  bool fits = false;                         // total_gpu_bytes <= gpu_memory_gb x 1e9
  std::optional<DeepSpeedModelStates> deepspeed;  // DeepSpeed's formula where it has one (stage 2, 3)
};

// Output of the seed's select_zero_stage, with the per-stage numbers it compared.
struct SelectResult {
  int stage = 0;                        // recommended stage
  std::string advice;                   // the seed's message ("Use DDP", ..., "Use ZeRO-3 with CPU offload")
  std::array<double, 4> per_gpu_gb{};  // the seed's ZeRO-0..3 model-state memory per GPU, GB
  double threshold_gb = 0;              // 70% of the GPU memory, GB
};

// The recommended stage and why.
struct Recommendation {
  SelectResult seed;              // the seed's decision tree on model states only
  std::string reason;             // one paragraph: the comparisons that decided, then the full-estimate check
  bool full_estimate_fits = false;      // the seed's stage (with its offload advice) fits with buffers/activations
  std::optional<int> first_fit_stage;   // first configuration that fits in preference order, if any
  OffloadKind first_fit_offload = OffloadKind::kNone;  // its offload
};

// Everything the estimator computed.
struct Estimate {
  EstimateInput input;                            // the input, as given
  int64_t num_params = 0;                         // total parameters (given or counted)
  int64_t largest_layer_params = 0;               // largest single module, DeepSpeed's definition (0 = unknown)
  int64_t largest_unit_params = 0;                // largest stage-3 gather unit (embedding, block, or head)
  int num_gpus = 0;                               // gpus_per_node x num_nodes
  std::optional<ActivationEstimate> activations;  // present when a shape was given
  std::vector<StageEstimate> stages;              // stage 0..3, each with its offload variants, in that order
  Recommendation recommendation;                  // the advice
  std::vector<std::string> notes;                 // caveats that apply to this input
};

// Estimates memory for stages 0-3 and offload variants; throws std::invalid_argument on bad input.
Estimate estimate_memory(const EstimateInput& input);

// Counts the parameters of a shape (tied weights once); throws std::invalid_argument on a bad shape.
int64_t count_parameters(const ModelShape& shape);

// Largest single module's parameters (DeepSpeed's largest_layer_params: the embedding or LM head here).
int64_t largest_layer_parameters(const ModelShape& shape);

// Activation memory of one GPU for one micro-batch; throws std::invalid_argument on a bad shape.
ActivationEstimate estimate_activations(const ModelShape& shape, bool activation_checkpointing,
                                        AttentionKind attention);

// The seed's select_zero_stage, same arithmetic and branches; throws on num_gpus < 1 or memory <= 0.
SelectResult select_zero_stage(double params_billions, double gpu_memory_gb, int num_gpus);

// DeepSpeed's estimate_zero2_model_states_mem_needs (stage 1/2), same arithmetic.
DeepSpeedModelStates deepspeed_zero2_model_states(int64_t total_params, int gpus_per_node, int num_nodes,
                                                  bool cpu_offload, double additional_buffer_factor = 1.5);

// DeepSpeed's estimate_zero3_model_states_mem_needs, same arithmetic.
DeepSpeedModelStates deepspeed_zero3_model_states(int64_t total_params, int64_t largest_layer_params,
                                                  int gpus_per_node, int num_nodes, bool cpu_offload,
                                                  bool cpu_offload_params, bool zero_init,
                                                  double additional_buffer_factor = 1.5);

// A built-in model's shape by name ("gpt2", "llama-3-8b", ...); throws listing the names on a miss.
ModelShape model_preset(std::string_view name);

// Names accepted by model_preset, in a stable order.
std::vector<std::string> model_preset_names();

// "none", "cpu" or "nvme": DeepSpeed's offload_optimizer.device for an OffloadKind.
std::string_view offload_optimizer_device(OffloadKind offload);

// "none", "cpu" or "nvme": DeepSpeed's offload_param.device for an OffloadKind.
std::string_view offload_param_device(OffloadKind offload);

// "gated" or "plain".
std::string_view to_string(MlpKind mlp);

// "flash" or "math".
std::string_view to_string(AttentionKind attention);

}  // namespace zerotrain
