// flops_profiler, tensorboard, csv_monitor, wandb, comet, comms_logger, timers, activation_checkpointing.
// DeepSpeed sources: profiling/{config,constants}.py, monitor/config.py (pydantic), comm/{config,constants}.py
// (pydantic), utils/config.py (pydantic), runtime/activation_checkpointing/config.py. See docs/config-sources.md.
// The pydantic sections forbid unknown keys and, like every DeepSpeedConfigModel, drop keys whose value is "auto".
#include "config/schema.h"

namespace zerotrain::detail {

namespace {
constexpr std::string_view kActCkpt = "activation checkpointing config";
}  // namespace

std::vector<KeySpec> schema_monitoring() {
  return {
      // flops_profiler: profiling/config.py (get_scalar_param, no validation). Enabling it also turns on
      // wall_clock_breakdown.
      {.path = "flops_profiler", .type = KeyType::kObject, .def = "",
       .doc = "FLOPs and latency profiler of the model's forward pass."},
      {.path = "flops_profiler.enabled", .type = KeyType::kBool, .def = "false",
       .doc = "Profile one training step (also enables wall_clock_breakdown)."},
      {.path = "flops_profiler.recompute_fwd_factor", .type = KeyType::kNumber, .def = "0.0",
       .doc = "Extra forward passes per step from activation recomputation, counted into the FLOPs."},
      {.path = "flops_profiler.profile_step", .type = KeyType::kInt, .def = "1",
       .doc = "Optimizer steps taken before the profiled one (global_steps at its forward)."},
      {.path = "flops_profiler.module_depth", .type = KeyType::kInt, .def = "-1",
       .doc = "Module depth of the aggregated report (-1: all depths)."},
      {.path = "flops_profiler.top_modules", .type = KeyType::kInt, .def = "1",
       .doc = "Number of top modules listed in the aggregated report."},
      {.path = "flops_profiler.detailed", .type = KeyType::kBool, .def = "true",
       .doc = "Print the per-module profile, not just the summary."},
      {.path = "flops_profiler.output_file", .type = KeyType::kString, .def = "",
       .doc = "File the profile is written to (null: stdout).", .rule = {.nullable = true}},

      // Monitors: monitor/config.py. get_monitor_config passes each of the four sections (default {}) to pydantic.
      {.path = "tensorboard", .type = KeyType::kObject, .def = "",
       .doc = "Log training metrics as TensorBoard events."},
      {.path = "tensorboard.enabled", .type = KeyType::kBool, .def = "false", .doc = "Write TensorBoard event files."},
      {.path = "tensorboard.output_path", .type = KeyType::kString, .def = "\"\"",
       .doc = "Directory of the event files (empty: under the launch directory)."},
      {.path = "tensorboard.job_name", .type = KeyType::kString, .def = "\"DeepSpeedJobName\"",
       .doc = "Subdirectory of output_path for this job."},
      {.path = "csv_monitor", .type = KeyType::kObject, .def = "", .doc = "Log training metrics to local CSV files."},
      {.path = "csv_monitor.enabled", .type = KeyType::kBool, .def = "false", .doc = "Write CSV metric files."},
      {.path = "csv_monitor.output_path", .type = KeyType::kString, .def = "\"\"",
       .doc = "Directory of the CSV files (empty: under the launch directory)."},
      {.path = "csv_monitor.job_name", .type = KeyType::kString, .def = "\"DeepSpeedJobName\"",
       .doc = "Subdirectory of output_path for this job."},
      {.path = "wandb", .type = KeyType::kObject, .def = "", .doc = "Log training metrics to Weights & Biases."},
      {.path = "wandb.enabled", .type = KeyType::kBool, .def = "false", .doc = "Send metrics to WandB."},
      {.path = "wandb.group", .type = KeyType::kString, .def = "", .doc = "WandB group the run belongs to.",
       .rule = {.nullable = true}},
      {.path = "wandb.team", .type = KeyType::kString, .def = "", .doc = "WandB team (entity) that owns the run.",
       .rule = {.nullable = true}},
      {.path = "wandb.project", .type = KeyType::kString, .def = "\"deepspeed\"", .doc = "WandB project name."},
      {.path = "comet", .type = KeyType::kObject, .def = "", .doc = "Log training metrics to Comet."},
      {.path = "comet.enabled", .type = KeyType::kBool, .def = "false", .doc = "Send metrics to Comet."},
      {.path = "comet.samples_log_interval", .type = KeyType::kInt, .def = "100",
       .doc = "Send metrics after every this many training samples."},
      {.path = "comet.project", .type = KeyType::kString, .def = "",
       .doc = "Comet project name (null: Comet's own configuration).", .rule = {.nullable = true}},
      {.path = "comet.workspace", .type = KeyType::kString, .def = "",
       .doc = "Comet workspace name (null: Comet's own configuration).", .rule = {.nullable = true}},
      {.path = "comet.api_key", .type = KeyType::kString, .def = "",
       .doc = "Comet API key (null: Comet's own configuration).", .rule = {.nullable = true}},
      {.path = "comet.experiment_name", .type = KeyType::kString, .def = "",
       .doc = "Name given to the Comet experiment.", .rule = {.nullable = true}},
      {.path = "comet.experiment_key", .type = KeyType::kString, .def = "",
       .doc = "Key of the Comet experiment (32 to 50 alphanumeric characters).", .rule = {.nullable = true}},
      {.path = "comet.online", .type = KeyType::kBool, .def = "",
       .doc = "Log to the Comet server (false: offline experiment; null: Comet's default, true).",
       .rule = {.nullable = true}},
      {.path = "comet.mode", .type = KeyType::kString, .def = "",
       .doc = "How the experiment starts: get, create or get_or_create (null: Comet's default).",
       .rule = {.nullable = true}},

      // comms_logger: comm/config.py (pydantic). The section's presence alone builds the config; enabled turns it on.
      {.path = "comms_logger", .type = KeyType::kObject, .def = "",
       .doc = "Log the collectives issued through deepspeed.comm."},
      {.path = "comms_logger.enabled", .type = KeyType::kBool, .def = "false",
       .doc = "Record every communication operation."},
      {.path = "comms_logger.prof_all", .type = KeyType::kBool, .def = "true",
       .doc = "Profile all operations (false: only those in prof_ops)."},
      {.path = "comms_logger.prof_ops", .type = KeyType::kList, .def = "[]",
       .doc = "Names of the operations to profile when prof_all is false.", .rule = {.elem = KeyType::kString}},
      {.path = "comms_logger.verbose", .type = KeyType::kBool, .def = "false",
       .doc = "Print each operation as it happens."},
      {.path = "comms_logger.debug", .type = KeyType::kBool, .def = "false",
       .doc = "Add the calling function to each operation's log name."},

      // timers: utils/config.py get_timers_config (pydantic); only the throughput sub-section is read.
      {.path = "timers", .type = KeyType::kObject, .def = "", .doc = "Engine timers."},
      {.path = "timers.throughput", .type = KeyType::kObject, .def = "",
       .doc = "Throughput timer used for the samples/sec report."},
      {.path = "timers.throughput.enabled", .type = KeyType::kBool, .def = "true",
       .doc = "Measure training throughput."},
      {.path = "timers.throughput.synchronized", .type = KeyType::kBool, .def = "true",
       .doc = "Synchronize the device before reading the timer (exact but slower)."},

      // activation_checkpointing: runtime/activation_checkpointing/config.py (get_scalar_param, no validation). Its
      // format string says "partitioned_activations" but the key read is "partition_activations".
      {.path = "activation_checkpointing", .type = KeyType::kObject, .def = "",
       .doc = "Options of deepspeed.checkpointing (activation recomputation)."},
      {.path = "activation_checkpointing.partition_activations", .type = KeyType::kBool, .def = "false",
       .doc = "Split checkpointed activations across model-parallel ranks.", .feature = kActCkpt},
      {.path = "activation_checkpointing.contiguous_memory_optimization", .type = KeyType::kBool, .def = "false",
       .doc = "Copy partitioned activations into one contiguous buffer.", .feature = kActCkpt},
      {.path = "activation_checkpointing.cpu_checkpointing", .type = KeyType::kBool, .def = "false",
       .doc = "Keep checkpointed activations in CPU memory.", .feature = kActCkpt},
      {.path = "activation_checkpointing.number_checkpoints", .type = KeyType::kInt, .def = "",
       .doc = "Number of checkpoints, used to size the contiguous buffer.", .rule = {.nullable = true},
       .feature = kActCkpt},
      {.path = "activation_checkpointing.synchronize_checkpoint_boundary", .type = KeyType::kBool, .def = "false",
       .doc = "Synchronize the device at each checkpoint boundary.", .feature = kActCkpt},
      {.path = "activation_checkpointing.profile", .type = KeyType::kBool, .def = "false",
       .doc = "Log forward and backward time of each checkpointed function.", .feature = kActCkpt},
  };
}

}  // namespace zerotrain::detail
