// zerotrain's DeepSpeed config: a DeepSpeed JSON config parsed, validated and resolved once into immutable typed
// structs. Components receive the small struct they need (ZeroConfig, Fp16Config, ...), never the whole config.
//
//   auto cfg = zerotrain::Config::from_file("ds_config.json", {.world_size = 8});
//   cfg.batch().gradient_accumulation_steps;  cfg.zero().stage;
//
// Every user error (invalid JSON, unknown key, wrong type, out of range, inconsistent batch sizes, ...) is a
// ConfigError listing every problem found, each naming the JSON path, the value and what is allowed.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zerotrain {

// A config that cannot be used. what() lists every error, one per line.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<std::string> errors);
  const std::vector<std::string>& errors() const { return errors_; }  // one message per problem

 private:
  std::vector<std::string> errors_;
};

// Facts of the run that resolve batch rules and "auto" values.
struct RunInfo {
  int world_size = 1;                                  // data-parallel ranks
  std::optional<int64_t> micro_batch_per_gpu;          // resolves "auto" train_micro_batch_size_per_gpu
  std::optional<int64_t> gradient_accumulation_steps;  // resolves "auto" gradient_accumulation_steps
  std::optional<int64_t> hidden_size;                  // resolves "auto" bucket sizes as Hugging Face does
  std::optional<double> lr;                            // resolves "auto" optimizer lr / warmup_max_lr
  std::optional<double> weight_decay;                  // resolves "auto" weight_decay
  std::optional<int64_t> total_num_steps;              // resolves "auto" scheduler total_num_steps
  std::optional<int64_t> warmup_num_steps;             // resolves "auto" scheduler warmup_num_steps
};

// Where an effective value came from.
enum class ValueOrigin {
  kFile,     // written in the config
  kDefault,  // DeepSpeed's code default
  kAuto,     // "auto" in the config, resolved from RunInfo
  kDerived,  // computed from other values (batch rules, stage-dependent defaults)
};

// The batch triple after DeepSpeed's rules: train_batch_size = micro * gas * world_size.
struct BatchConfig {
  int64_t train_batch_size = 0;             // samples per optimizer step, all ranks
  int64_t micro_batch_per_gpu = 0;          // samples per rank per forward
  int64_t gradient_accumulation_steps = 0;  // micro-steps per optimizer step
};

enum class OptimizerKind { kNone, kAdam, kAdamW, kLamb, kLion, kAdagrad, kSGD, kOther };

// The optimizer the engine builds. Fields not used by `kind` keep their defaults.
struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kNone;  // kNone: no "optimizer" section (the client brings one)
  std::string type;                            // as written, e.g. "AdamW"
  double lr = 1e-3;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool adam_w_mode = true;      // Adam/AdamW: decoupled weight decay (DeepSpeed's default for "Adam" too)
  bool bias_correction = true;  // Adam/AdamW/Lamb
  bool torch_adam = false;      // Adam/AdamW: requested torch's implementation (same math)
  bool fp32_optimizer_states = true;  // Adam/AdamW with CPU offload
  double momentum = 0.0;        // SGD
  double dampening = 0.0;       // SGD
  bool nesterov = false;        // SGD
  double max_coeff = 10.0;      // Lamb trust-ratio clamp
  double min_coeff = 0.01;      // Lamb trust-ratio clamp
  bool eps_inside_sqrt = false; // Lamb
  double lr_decay = 0.0;        // Adagrad
  double initial_accumulator_value = 0.0;  // Adagrad
};

enum class SchedulerKind { kNone, kWarmupLR, kWarmupDecayLR, kWarmupCosineLR, kOneCycle, kLRRangeTest, kOther };
enum class WarmupType { kLog, kLinear };

// The learning-rate schedule, with DeepSpeed's parameter names. Fields not used by `kind` keep defaults.
struct SchedulerConfig {
  SchedulerKind kind = SchedulerKind::kNone;
  std::string type;                          // as written
  double warmup_min_lr = 0.0;                // WarmupLR, WarmupDecayLR
  std::optional<double> warmup_max_lr;       // WarmupLR: unset = the optimizer's lr
  int64_t warmup_num_steps = 1000;           // Warmup*
  WarmupType warmup_type = WarmupType::kLog;
  std::optional<int64_t> total_num_steps;    // WarmupDecayLR, WarmupCosineLR
  double warmup_min_ratio = 0.0;             // WarmupCosineLR
  double cos_min_ratio = 1e-4;               // WarmupCosineLR
  double cycle_min_lr = 0.0, cycle_max_lr = 0.0, decay_lr_rate = 0.0;                      // OneCycle
  int64_t cycle_first_step_size = 2000;                                                    // OneCycle
  std::optional<int64_t> cycle_second_step_size;                                           // OneCycle
  int64_t cycle_first_stair_count = 0;                                                     // OneCycle
  std::optional<int64_t> cycle_second_stair_count;                                         // OneCycle
  int64_t decay_step_size = 0;                                                             // OneCycle
  bool cycle_momentum = true;                                                              // OneCycle
  double cycle_min_mom = 0.8, cycle_max_mom = 0.9, decay_mom_rate = 0.0;                  // OneCycle
  double lr_range_test_min_lr = 1e-3, lr_range_test_step_rate = 1.0;                       // LRRangeTest
  int64_t lr_range_test_step_size = 2000;                                                  // LRRangeTest
  bool lr_range_test_staircase = false;                                                    // LRRangeTest
  int64_t last_batch_iteration = -1;        // resume point of the schedule
};

enum class Precision { kFp32, kFp16, kBf16 };

// fp16 mixed precision and DeepSpeed's loss scaler.
struct Fp16Config {
  bool enabled = false;
  bool auto_cast = false;              // cast floating inputs of forward to fp16
  double loss_scale = 0;               // > 0: static scale; 0: dynamic
  int initial_scale_power = 16;        // dynamic scale starts at 2^this (ZeRO or not, as DeepSpeed since PR #6976)
  bool dynamic_args_given = false;     // any dynamic-scaling key written (older DeepSpeed started ZeRO at 2^32
                                       // when none was; current DeepSpeed and zerotrain do not)
  int64_t loss_scale_window = 1000;    // overflow-free steps before the scale doubles
  int hysteresis = 2;                  // overflows tolerated before the scale halves
  bool consecutive_hysteresis = false; // refill hysteresis after each clean step
  double min_loss_scale = 1;           // floor of the dynamic scale
};

// bf16 mixed precision (fp32 master weights and gradient accumulation).
struct Bf16Config {
  bool enabled = false;
  bool immediate_grad_update = false;
  bool check_grad_overflow = true;  // skip the step on inf/NaN gradients
};

enum class OffloadDevice { kNone, kCpu, kNvme };

struct OffloadOptimizerConfig {
  OffloadDevice device = OffloadDevice::kNone;
  std::string nvme_path;  // required with kNvme
  int64_t buffer_count = 4;
  bool pin_memory = true;
  bool pipeline_read = false;
  bool pipeline_write = false;
  bool fast_init = false;
  double ratio = 1.0;  // fraction offloaded (< 1 only at stage 3)
};

struct OffloadParamConfig {
  OffloadDevice device = OffloadDevice::kNone;
  std::string nvme_path;  // required with kNvme
  int64_t buffer_count = 5;
  int64_t buffer_size = 100'000'000;
  int64_t max_in_cpu = 1'000'000'000;
  bool pin_memory = true;
};

// Stage 3's unit-joining size when stage3_module_granularity_threshold is unset: an eighth of the smaller of the
// prefetch bucket and the live-parameter limit, the size below which prefetch gathers units in batches anyway
// (src/zero/stage3_plan.h, [Note: small units]).
inline int64_t default_module_granularity_threshold(int64_t prefetch_bucket_size, int64_t max_live_parameters) {
  return (prefetch_bucket_size < max_live_parameters ? prefetch_bucket_size : max_live_parameters) / 8;
}

// zero_optimization.
struct ZeroConfig {
  int stage = 0;
  bool contiguous_gradients = true;
  bool reduce_scatter = true;
  int64_t reduce_bucket_size = 500'000'000;      // elements
  bool allgather_partitions = true;
  int64_t allgather_bucket_size = 500'000'000;   // elements
  bool overlap_comm = false;                     // resolved: unset = (stage == 3)
  bool load_from_fp32_weights = true;
  int64_t sub_group_size = 1'000'000'000;
  int64_t prefetch_bucket_size = 50'000'000;     // stage3_prefetch_bucket_size
  int64_t param_persistence_threshold = 100'000; // stage3_param_persistence_threshold
  int64_t model_persistence_threshold = INT64_MAX;
  int64_t max_live_parameters = 1'000'000'000;   // stage3_max_live_parameters
  int64_t max_reuse_distance = 1'000'000'000;    // stage3_max_reuse_distance
  bool gather_16bit_weights_on_model_save = false;
  int64_t module_granularity_threshold = -1;   // -1: unset (stage 3 joins units below min(prefetch, live) / 8)
  bool ignore_unused_parameters = true;
  bool round_robin_gradients = false;
  bool memory_efficient_linear = true;
  bool override_module_apply = true;
  bool log_trace_cache_warnings = false;
  bool enable_sanity_checks = false;
  // ZeRO++ qwZ (zero_quantized_weights): stage 3's all-gathers move int8 blocks with a scale each, not 16-bit
  // values (src/zero/quantize.h).
  bool quantized_weights = false;
  int64_t hpz_partition_size = 1;                // ZeRO++ hpZ: accepted only where it changes nothing (1 or world)
  std::vector<std::string> leaf_module_classes, leaf_module_names, leaf_module_name_suffixes;
  OffloadOptimizerConfig offload_optimizer;
  OffloadParamConfig offload_param;
};

// aio: the asynchronous I/O engine behind NVMe offload.
struct AioConfig {
  int64_t block_size = 1'048'576;
  int64_t queue_depth = 8;
  int64_t intra_op_parallelism = 1;
  bool single_submit = false;
  bool overlap_events = true;
  bool use_gds = false;
};

// Top-level gradient handling.
struct GradientConfig {
  double clipping = 1.0;                   // global L2 norm; 0 = off
  bool prescale = false;                   // divide before the reduction
  double predivide_factor = 1.0;
  bool allreduce_sum = false;              // gradient_allreduce_op "sum" (default "mean")
  std::optional<Precision> communication_dtype;  // unset = the training dtype
  std::optional<Precision> accumulation_dtype;   // data_types.grad_accum_dtype
};

// The comms_logger section (DeepSpeed's deepspeed.comm logger): every collective the engine issues is timed and
// summarized by operation and message size (src/comm/comms_logger.h).
struct CommsLoggerConfig {
  bool enabled = false;
  bool prof_all = true;                // time every operation; false: only those named in prof_ops
  std::vector<std::string> prof_ops;   // operation names ("all_gather_into_tensor", "reduce_scatter_tensor", ...)
  bool verbose = false;                // print each operation as it completes (rank 0)
  bool debug = false;                  // add the engine function that issued it to the record's name
};

// The flops_profiler section: one training step's forward profiled (FLOPs, MACs, parameters, latency) at
// profile_step (src/engine/flops_profiler.h).
struct FlopsProfilerConfig {
  bool enabled = false;
  double recompute_fwd_factor = 0.0;   // extra forward passes a step from activation recomputation
  int64_t profile_step = 1;
  int64_t module_depth = -1;           // depth of the aggregated profile; -1: every depth
  int64_t top_modules = 1;             // modules listed per depth in the aggregated profile
  bool detailed = true;                // print the per-module tree too
  std::optional<std::string> output_file;  // unset: stdout
};

// Logging and bookkeeping.
struct LoggingConfig {
  std::optional<int64_t> steps_per_print;  // unset: no periodic progress line
  bool dump_state = false;
  bool wall_clock_breakdown = false;       // DeepSpeed's engine timers (src/engine/wall_clock.h)
  bool memory_breakdown = false;
  CommsLoggerConfig comms_logger;
  FlopsProfilerConfig flops_profiler;
};

// The "autotuning" section. The engine reads the measuring keys (an experiment of `zerotrain launch --autotuning`
// sets metric_path or model_info.profile); the launcher's autotuner reads the search keys (src/autotune/).
struct AutotuningConfig {
  bool enabled = false;
  bool fast = true;                         // tune only the ZeRO stage and the micro-batch size
  std::string results_dir = "autotuning_results";
  std::string exps_dir = "autotuning_exps";
  bool overwrite = true;                    // rerun experiments whose results exist
  int64_t start_profile_step = 3;           // first optimizer step measured (1-based)
  int64_t end_profile_step = 5;             // last optimizer step measured; the experiment exits after it
  std::string metric = "throughput";        // "throughput" (samples/s), "latency" (ms a step) or "flops" (per GPU)
  std::optional<std::string> metric_path;   // set: measure and write the metrics here (rank 0), then exit
  std::string tuner_type = "gridsearch";    // "gridsearch", "random" or "model_based"
  int64_t tuner_early_stopping = 5;         // experiments without improvement before a space ends
  int64_t tuner_num_trials = 50;            // experiments per space at most
  std::vector<std::pair<std::string, std::string>> arg_mappings;  // config key -> the script's argument
  bool model_info_profile = false;          // profile the model (parameters, activation memory) and exit
  std::optional<int64_t> num_params, hidden_size, num_layers;  // model_info given by the user
  std::optional<std::string> model_info_path;  // where the profiling run writes the model info
  int64_t mp_size = 1;
  std::optional<int64_t> max_train_batch_size;
  int64_t min_train_batch_size = 1;
  int64_t max_train_micro_batch_size_per_gpu = 1024;
  int64_t min_train_micro_batch_size_per_gpu = 1;
  int64_t num_tuning_micro_batch_sizes = 3;
};

// The tensorboard and csv_monitor sections: rank 0 writes the training metrics (loss, learning rate, loss scale)
// to output_path/job_name after each optimizer step (src/engine/monitor.h).
struct MonitorConfig {
  bool tensorboard = false;
  std::string tensorboard_output_path, tensorboard_job_name = "DeepSpeedJobName";
  bool csv = false;
  std::string csv_output_path, csv_job_name = "DeepSpeedJobName";
  // wandb.enabled / comet.enabled: logged by the Python package's clients (EngineOptions::monitor_sink); the engine
  // refuses them without a sink.
  bool wandb = false, comet = false;
};

// One effective key: its value, and where it came from.
struct EffectiveValue {
  std::string path;        // "zero_optimization.stage"
  std::string value_json;  // the value as JSON text
  ValueOrigin origin;
  std::string note;        // e.g. "auto: micro_batch * gas * world_size"; may be empty
};

// A validated, resolved DeepSpeed config. Immutable: build one with from_file / from_string.
class Config {
 public:
  // Parses a DeepSpeed JSON config file. Throws ConfigError.
  static Config from_file(const std::string& path, const RunInfo& run = {});
  // Parses DeepSpeed JSON text. `source` names it in messages. Throws ConfigError.
  static Config from_string(std::string_view json_text, const RunInfo& run = {},
                            std::string_view source = "<string>");
  // JSON text when its first non-blank character is '{', else a file path (the engine's `config` argument).
  static Config from_path_or_text(const std::string& config, const RunInfo& run = {});

  const BatchConfig& batch() const;
  const OptimizerConfig& optimizer() const;
  const SchedulerConfig& scheduler() const;
  Precision precision() const;  // kFp16 / kBf16 when enabled, else kFp32
  const Fp16Config& fp16() const;
  const Bf16Config& bf16() const;
  const ZeroConfig& zero() const;
  const AioConfig& aio() const;
  const GradientConfig& gradients() const;
  const LoggingConfig& logging() const;
  const AutotuningConfig& autotuning() const;
  const MonitorConfig& monitor() const;
  const RunInfo& run() const;

  // Valid DeepSpeed features this config turns on that zerotrain does not implement yet, one entry per
  // feature: "sparse attention (sparse_attention.mode)". The engine refuses to start when non-empty.
  const std::vector<std::string>& unsupported_features() const;
  // Warnings: deprecated keys that were mapped, settings that have no effect here.
  const std::vector<std::string>& warnings() const;
  // Every key of the effective config (file, defaults, resolved "auto"), in schema order.
  const std::vector<EffectiveValue>& effective_values() const;
  // The effective config as DeepSpeed JSON (DeepSpeed's key names), pretty-printed.
  std::string to_json() const;
  // Throws ConfigError naming each feature in unsupported_features(); the engine calls this at startup.
  void require_supported() const;

  struct Data;  // the parsed state (src/config/config_data.h)

 private:
  explicit Config(std::shared_ptr<const Data> data);
  std::shared_ptr<const Data> data_;
};

// DeepSpeed's batch rules: any two of (train, micro, gas) determine the third (floor division, as DeepSpeed),
// one alone sets gas = 1, none is an error, and train == micro * gas * world_size must hold.
// Throws ConfigError whose message prints all four numbers.
BatchConfig resolve_batch(std::optional<int64_t> train_batch_size, std::optional<int64_t> micro_batch_per_gpu,
                          std::optional<int64_t> gradient_accumulation_steps, int world_size);

}  // namespace zerotrain
