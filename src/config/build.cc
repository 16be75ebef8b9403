// Typed structs from the effective config, and the rules that span several keys.
#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>

#include "config/config_data.h"
#include "config/suggest.h"
#include "config/validate.h"

namespace zerotrain::detail {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Reads typed values from the effective config. Every path read here is a schema key without a feature tag,
// so resolve_effective has put a value (possibly null) there.
class Effective {
 public:
  explicit Effective(const Json& root) : root_(root) {}
  const Json& at(std::string_view path) const {
    static const Json kNull;
    const Json* v = find_path(root_, path);
    return v == nullptr ? kNull : *v;
  }
  bool has(std::string_view path) const { return !at(path).is_null(); }
  bool b(std::string_view path, bool fallback) const { return at(path).is_boolean() ? at(path).get<bool>() : fallback; }
  double d(std::string_view path, double fallback) const {
    return at(path).is_number() ? at(path).get<double>() : fallback;
  }
  int64_t i(std::string_view path, int64_t fallback) const { return as_integer(at(path)).value_or(fallback); }
  std::optional<int64_t> oi(std::string_view path) const { return as_integer(at(path)); }
  std::string s(std::string_view path, std::string fallback = {}) const {
    return at(path).is_string() ? at(path).get<std::string>() : fallback;
  }
  std::vector<std::string> strings(std::string_view path) const {
    std::vector<std::string> out;
    if (at(path).is_array()) {
      for (const auto& e : at(path)) out.push_back(e.get<std::string>());
    }
    return out;
  }

 private:
  const Json& root_;
};

std::optional<Precision> dtype(const std::string& s) {
  const std::string l = lower(s);
  if (l == "fp32") return Precision::kFp32;
  if (l == "fp16") return Precision::kFp16;
  if (l == "bf16") return Precision::kBf16;
  return std::nullopt;
}

OffloadDevice device(const std::string& s) {
  return s == "cpu" ? OffloadDevice::kCpu : s == "nvme" ? OffloadDevice::kNvme : OffloadDevice::kNone;
}

// torch.optim classes DeepSpeed accepts by name (getattr(torch.optim, type)) besides its own optimizers.
const std::vector<std::string>& torch_optimizer_names() {
  static const std::vector<std::string> names = {"SGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW",
                                                 "Adamax", "ASGD", "LBFGS", "NAdam", "RAdam", "RMSprop", "Rprop",
                                                 "SparseAdam", "Muon"};
  return names;
}
const std::vector<std::string>& deepspeed_optimizer_names() {
  static const std::vector<std::string> names = {"adagrad", "adam", "adamw", "lamb", "onebitadam", "onebitlamb",
                                                 "zerooneadam", "muadam", "muadamw", "musgd", "lion", "muon"};
  return names;
}
const std::vector<std::string>& torch_scheduler_names() {
  static const std::vector<std::string> names = {
      "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR",
      "SequentialLR", "CosineAnnealingLR", "ChainedScheduler", "ReduceLROnPlateau", "CyclicLR",
      "CosineAnnealingWarmRestarts", "OneCycleLR", "PolynomialLR"};
  return names;
}

void build_optimizer(const Effective& e, const Json& root, Config::Data& data, Diagnostics& diag) {
  OptimizerConfig& o = data.optimizer;
  if (find_path(root, "optimizer") == nullptr || find_path(root, "optimizer")->is_null()) return;
  o.type = e.s("optimizer.type");
  if (o.type.empty()) {
    diag.error("optimizer", "\"type\" is missing; allowed: Adam, AdamW, Lamb, Lion, Adagrad, SGD, or another "
                            "DeepSpeed or torch.optim optimizer name");
    return;
  }
  const std::string t = lower(o.type);
  const bool ds_name = std::find(deepspeed_optimizer_names().begin(), deepspeed_optimizer_names().end(), t) !=
                       deepspeed_optimizer_names().end();
  const bool torch_name = std::find(torch_optimizer_names().begin(), torch_optimizer_names().end(), o.type) !=
                          torch_optimizer_names().end();
  if (!ds_name && !torch_name) {
    std::vector<std::string> all = deepspeed_optimizer_names();
    all.insert(all.end(), torch_optimizer_names().begin(), torch_optimizer_names().end());
    std::string msg = "\"" + o.type + "\" is not an optimizer DeepSpeed knows";
    if (auto near = closest_match(o.type, all)) msg += " (did you mean \"" + *near + "\"?)";
    diag.error("optimizer.type", msg + "; allowed: Adam, AdamW, Lamb, Lion, Adagrad (any case), OneBitAdam, "
                                       "ZeroOneAdam, OneBitLamb, MuAdam, MuAdamW, MuSGD, Muon, or a torch.optim "
                                       "class name such as SGD or RMSprop");
    return;
  }
  o.kind = t == "adam"      ? OptimizerKind::kAdam
           : t == "adamw"   ? OptimizerKind::kAdamW
           : t == "lamb"    ? OptimizerKind::kLamb
           : t == "lion"    ? OptimizerKind::kLion
           : t == "adagrad" ? OptimizerKind::kAdagrad
           : o.type == "SGD" ? OptimizerKind::kSGD
                             : OptimizerKind::kOther;
  if (o.kind == OptimizerKind::kOther) return;  // reported by find_unsupported_features
  const std::string p = "optimizer.params.";
  if (e.has(p + "max_grad_norm")) {
    diag.error(p + "max_grad_norm", "max_grad_norm is not accepted inside optimizer params (DeepSpeed rejects it "
                                    "too); use the top-level \"gradient_clipping\": " + e.at(p + "max_grad_norm").dump());
  }
  o.lr = e.d(p + "lr", o.lr);
  if (e.at(p + "betas").is_array()) {
    const Json& betas = e.at(p + "betas");
    if (betas.size() != 2) {
      diag.error(p + "betas", show_value(betas) + " has " + std::to_string(betas.size()) +
                                  " elements; allowed: a list of two numbers in [0, 1)");
    } else {
      o.betas = {betas[0].get<double>(), betas[1].get<double>()};
      for (int k = 0; k < 2; ++k) {
        if (!(o.betas[k] >= 0.0 && o.betas[k] < 1.0)) {
          diag.error(p + "betas[" + std::to_string(k) + "]", Json(o.betas[k]).dump() + " is out of range; allowed: "
                                                              "a number >= 0 and < 1");
        }
      }
    }
  } else if (o.kind == OptimizerKind::kLion) {
    o.betas = {0.9, 0.99};
  }
  o.eps = e.d(p + "eps", o.kind == OptimizerKind::kAdagrad ? 1e-10 : o.eps);
  o.weight_decay = e.d(p + "weight_decay", 0.0);
  o.bias_correction = e.b(p + "bias_correction", true);
  o.adam_w_mode = o.kind == OptimizerKind::kAdamW || e.b(p + "adam_w_mode", true);
  o.torch_adam = e.b(p + "torch_adam", false);
  o.fp32_optimizer_states = e.b(p + "fp32_optimizer_states", true);
  o.momentum = e.d(p + "momentum", 0.0);
  o.dampening = e.d(p + "dampening", 0.0);
  o.nesterov = e.b(p + "nesterov", false);
  o.max_coeff = e.d(p + "max_coeff", 10.0);
  o.min_coeff = e.d(p + "min_coeff", 0.01);
  o.eps_inside_sqrt = e.b(p + "eps_inside_sqrt", false);
  o.lr_decay = e.d(p + "lr_decay", 0.0);
  o.initial_accumulator_value = e.d(p + "initial_accumulator_value", 0.0);
  if (o.kind == OptimizerKind::kAdagrad && !e.has(p + "lr")) o.lr = 0.01;
  if (e.b(p + "amsgrad", false) && !(o.torch_adam && (o.kind == OptimizerKind::kAdam || o.kind == OptimizerKind::kAdamW))) {
    diag.error(p + "amsgrad", "true is not supported by the fused " + o.type +
                                  " kernel (DeepSpeed's FusedAdam/FusedLamb reject it too); allowed: false");
  }
  if (o.kind == OptimizerKind::kSGD && o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
    diag.error(p + "nesterov", "true needs momentum > 0 and dampening 0 (momentum " + Json(o.momentum).dump() +
                                   ", dampening " + Json(o.dampening).dump() + ")");
  }
  if (o.kind == OptimizerKind::kLamb && o.min_coeff > o.max_coeff) {
    diag.error(p + "min_coeff", Json(o.min_coeff).dump() + " is greater than max_coeff " +
                                    Json(o.max_coeff).dump() + "; allowed: min_coeff <= max_coeff");
  }
}

void build_scheduler(const Effective& e, const Json& root, Config::Data& data, Diagnostics& diag) {
  SchedulerConfig& s = data.scheduler;
  if (find_path(root, "scheduler") == nullptr || find_path(root, "scheduler")->is_null()) return;
  s.type = e.s("scheduler.type");
  static const std::vector<std::string> ours = {"WarmupLR", "WarmupDecayLR", "WarmupCosineLR", "OneCycle",
                                                "LRRangeTest"};
  if (s.type.empty()) {
    diag.error("scheduler", "\"type\" is missing; allowed: WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle, "
                            "LRRangeTest, or a torch.optim.lr_scheduler class name");
    return;
  }
  const bool known = std::find(ours.begin(), ours.end(), s.type) != ours.end();
  const bool torch_name = std::find(torch_scheduler_names().begin(), torch_scheduler_names().end(), s.type) !=
                          torch_scheduler_names().end();
  if (!known && !torch_name) {
    std::vector<std::string> all = ours;
    all.insert(all.end(), torch_scheduler_names().begin(), torch_scheduler_names().end());
    std::string msg = "\"" + s.type + "\" is not a schedule DeepSpeed knows";
    if (auto near = closest_match(s.type, all)) msg += " (did you mean \"" + *near + "\"?)";
    diag.error("scheduler.type", msg + "; allowed: WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle, LRRangeTest, "
                                       "or a torch.optim.lr_scheduler class name such as StepLR");
    return;
  }
  s.kind = s.type == "WarmupLR"         ? SchedulerKind::kWarmupLR
           : s.type == "WarmupDecayLR"  ? SchedulerKind::kWarmupDecayLR
           : s.type == "WarmupCosineLR" ? SchedulerKind::kWarmupCosineLR
           : s.type == "OneCycle"       ? SchedulerKind::kOneCycle
           : s.type == "LRRangeTest"    ? SchedulerKind::kLRRangeTest
                                        : SchedulerKind::kOther;
  if (s.kind == SchedulerKind::kOther) return;
  const std::string p = "scheduler.params.";
  auto required = [&](const std::string& key) {
    const Json* written = find_path(root, p + key);
    if (e.has(p + key) || (written != nullptr && is_auto(*written))) return;
    diag.error("scheduler.params", "\"" + key + "\" is required by " + s.type + " and missing");
  };
  s.warmup_min_lr = e.d(p + "warmup_min_lr", 0.0);
  if (e.has(p + "warmup_max_lr")) s.warmup_max_lr = e.d(p + "warmup_max_lr", 0.0);
  s.warmup_num_steps = e.i(p + "warmup_num_steps", 1000);
  s.warmup_type = e.s(p + "warmup_type", "log") == "linear" ? WarmupType::kLinear : WarmupType::kLog;
  s.total_num_steps = e.oi(p + "total_num_steps");
  s.warmup_min_ratio = e.d(p + "warmup_min_ratio", 0.0);
  s.cos_min_ratio = e.d(p + "cos_min_ratio", 1e-4);
  s.cycle_min_lr = e.d(p + "cycle_min_lr", 0.0);
  s.cycle_max_lr = e.d(p + "cycle_max_lr", 0.0);
  s.decay_lr_rate = e.d(p + "decay_lr_rate", 0.0);
  s.cycle_first_step_size = e.i(p + "cycle_first_step_size", 2000);
  s.cycle_second_step_size = e.oi(p + "cycle_second_step_size");
  s.cycle_first_stair_count = e.i(p + "cycle_first_stair_count", 0);
  s.cycle_second_stair_count = e.oi(p + "cycle_second_stair_count");
  s.decay_step_size = e.i(p + "decay_step_size", 0);
  s.cycle_momentum = e.b(p + "cycle_momentum", true);
  s.cycle_min_mom = e.d(p + "cycle_min_mom", 0.8);
  s.cycle_max_mom = e.d(p + "cycle_max_mom", 0.9);
  s.decay_mom_rate = e.d(p + "decay_mom_rate", 0.0);
  s.lr_range_test_min_lr = e.d(p + "lr_range_test_min_lr", 1e-3);
  s.lr_range_test_step_size = e.i(p + "lr_range_test_step_size", 2000);
  s.lr_range_test_step_rate = e.d(p + "lr_range_test_step_rate", 1.0);
  s.lr_range_test_staircase = e.b(p + "lr_range_test_staircase", false);
  s.last_batch_iteration = e.i(p + "last_batch_iteration", -1);
  if (s.kind == SchedulerKind::kWarmupDecayLR || s.kind == SchedulerKind::kWarmupCosineLR) required("total_num_steps");
  if (s.kind == SchedulerKind::kOneCycle) {
    required("cycle_min_lr");
    required("cycle_max_lr");
  }
  if (s.warmup_max_lr && s.warmup_min_lr > *s.warmup_max_lr) {
    diag.warn(p + "warmup_min_lr", "warmup_min_lr is above warmup_max_lr: the warmup lowers the learning rate");
  }
}

void build_zero(const Effective& e, Config::Data& data, Diagnostics& diag) {
  ZeroConfig& z = data.zero;
  const std::string p = "zero_optimization.";
  z.stage = static_cast<int>(e.i(p + "stage", 0));
  z.contiguous_gradients = e.b(p + "contiguous_gradients", true);
  z.reduce_scatter = e.b(p + "reduce_scatter", true);
  z.reduce_bucket_size = e.i(p + "reduce_bucket_size", z.reduce_bucket_size);
  z.allgather_partitions = e.b(p + "allgather_partitions", true);
  z.allgather_bucket_size = e.i(p + "allgather_bucket_size", z.allgather_bucket_size);
  z.overlap_comm = e.b(p + "overlap_comm", z.stage == 3);
  z.load_from_fp32_weights = e.b(p + "load_from_fp32_weights", true);
  z.sub_group_size = e.i(p + "sub_group_size", z.sub_group_size);
  z.prefetch_bucket_size = e.i(p + "stage3_prefetch_bucket_size", z.prefetch_bucket_size);
  z.param_persistence_threshold = e.i(p + "stage3_param_persistence_threshold", z.param_persistence_threshold);
  z.model_persistence_threshold = e.i(p + "stage3_model_persistence_threshold", z.model_persistence_threshold);
  z.max_live_parameters = e.i(p + "stage3_max_live_parameters", z.max_live_parameters);
  z.max_reuse_distance = e.i(p + "stage3_max_reuse_distance", z.max_reuse_distance);
  z.gather_16bit_weights_on_model_save = e.b(p + "stage3_gather_16bit_weights_on_model_save", false);
  z.module_granularity_threshold = e.i(p + "stage3_module_granularity_threshold", -1);  // -1: unset
  z.ignore_unused_parameters = e.b(p + "ignore_unused_parameters", true);
  z.round_robin_gradients = e.b(p + "round_robin_gradients", false);
  z.memory_efficient_linear = e.b(p + "memory_efficient_linear", true);
  z.override_module_apply = e.b(p + "override_module_apply", true);
  z.log_trace_cache_warnings = e.b(p + "log_trace_cache_warnings", false);
  z.enable_sanity_checks = e.b(p + "enable_sanity_checks", false);
  z.quantized_weights = e.b(p + "zero_quantized_weights", false);
  z.hpz_partition_size = e.i(p + "zero_hpz_partition_size", 1);
  if (z.quantized_weights && z.stage != 3) {
    diag.warn(p + "zero_quantized_weights", "true has an effect only at stage 3 (stage is " + std::to_string(z.stage) +
              "): only stage 3 all-gathers parameters");
  }
  if (z.hpz_partition_size > 1 && data.run.world_size % z.hpz_partition_size != 0) {
    diag.error(p + "zero_hpz_partition_size", std::to_string(z.hpz_partition_size) + " does not divide the world size " +
               std::to_string(data.run.world_size) + "; allowed: 1, the world size, or a divisor of it (ranks per node; "
               "`zerotrain config check --world-size N` checks for N ranks)");
  } else if (z.hpz_partition_size > 1 && z.stage != 3) {
    diag.warn(p + "zero_hpz_partition_size", std::to_string(z.hpz_partition_size) + " has an effect only at stage 3 "
              "(stage is " + std::to_string(z.stage) + ")");
  } else if (z.hpz_partition_size > 1 && z.hpz_partition_size == data.run.world_size) {
    diag.warn(p + "zero_hpz_partition_size", std::to_string(z.hpz_partition_size) + " equals the world size: the "
              "secondary partition is the whole world, as the primary one is (nothing changes)");
  }
  z.leaf_module_classes = e.strings(p + "leaf_module.classes");
  z.leaf_module_names = e.strings(p + "leaf_module.names");
  z.leaf_module_name_suffixes = e.strings(p + "leaf_module.name_suffixes");

  const std::string oo = p + "offload_optimizer.";
  z.offload_optimizer.device = device(e.s(oo + "device", "none"));
  z.offload_optimizer.nvme_path = e.s(oo + "nvme_path");
  z.offload_optimizer.buffer_count = e.i(oo + "buffer_count", 4);
  z.offload_optimizer.pin_memory = e.b(oo + "pin_memory", true);
  z.offload_optimizer.pipeline_read = e.b(oo + "pipeline_read", false);
  z.offload_optimizer.pipeline_write = e.b(oo + "pipeline_write", false);
  z.offload_optimizer.fast_init = e.b(oo + "fast_init", false);
  z.offload_optimizer.ratio = e.d(oo + "ratio", 1.0);
  const std::string op = p + "offload_param.";
  z.offload_param.device = device(e.s(op + "device", "none"));
  z.offload_param.nvme_path = e.s(op + "nvme_path");
  z.offload_param.buffer_count = e.i(op + "buffer_count", 5);
  z.offload_param.buffer_size = e.i(op + "buffer_size", z.offload_param.buffer_size);
  z.offload_param.max_in_cpu = e.i(op + "max_in_cpu", z.offload_param.max_in_cpu);
  z.offload_param.pin_memory = e.b(op + "pin_memory", true);

  if (z.offload_optimizer.device == OffloadDevice::kNvme && z.offload_optimizer.nvme_path.empty()) {
    diag.error(oo + "nvme_path", "missing: \"device\": \"nvme\" needs \"nvme_path\", a directory on the NVMe drive");
  }
  if (z.offload_param.device == OffloadDevice::kNvme && z.offload_param.nvme_path.empty()) {
    diag.error(op + "nvme_path", "missing: \"device\": \"nvme\" needs \"nvme_path\", a directory on the NVMe drive");
  }
  if (z.offload_optimizer.ratio < 1.0 && z.stage != 3) {
    diag.error(oo + "ratio", Json(z.offload_optimizer.ratio).dump() + " (partial offload) needs stage 3; stage is " +
                                 std::to_string(z.stage) + "; allowed here: 1.0");
  }
  if (z.offload_optimizer.device != OffloadDevice::kNone && z.stage == 0) {
    diag.error(oo + "device", "\"" + e.s(oo + "device") + "\" needs ZeRO stage 1, 2 or 3 (stage is 0): the offloaded "
                              "optimizer works on a partition");
  }
  if (z.offload_param.device != OffloadDevice::kNone && z.stage != 3) {
    diag.warn(op + "device", "parameter offload only applies at stage 3 (stage is " + std::to_string(z.stage) +
                                 "); it has no effect here, as in DeepSpeed");
  }
  if (z.offload_param.device != OffloadDevice::kNone && z.stage == 3 &&
      z.offload_optimizer.device == OffloadDevice::kNone) {
    // DeepSpeed's offload_param moves the 16-bit parameter partition to the host and keeps the fp32 master and the
    // optimizer state on the device. zerotrain's stage 3 has no 16-bit partition on the device to begin with (units
    // gather by casting the fp32 master shard), so the device already holds what DeepSpeed's leaves there.
    diag.warn(op + "device", "\"" + e.s(op + "device") +
                                 "\" without offload_optimizer: nothing to move, zerotrain's stage 3 keeps no 16-bit "
                                 "parameter partition on the device (units gather from the fp32 master shard), so device "
                             "memory is already what DeepSpeed's parameter offload leaves there; to move the master "
                             "and the optimizer state to the host as well, set offload_optimizer.device \"cpu\"");
  }
}

void build_autotuning(const Effective& e, Config::Data& data, Diagnostics& diag) {
  AutotuningConfig& t = data.autotuning;
  const std::string p = "autotuning.";
  t.enabled = e.b(p + "enabled", false);
  t.fast = e.b(p + "fast", true);
  t.results_dir = e.s(p + "results_dir", t.results_dir);
  t.exps_dir = e.s(p + "exps_dir", t.exps_dir);
  t.overwrite = e.b(p + "overwrite", true);
  t.start_profile_step = e.i(p + "start_profile_step", 3);
  t.end_profile_step = e.i(p + "end_profile_step", 5);
  t.metric = lower(e.s(p + "metric", "throughput"));
  if (e.has(p + "metric_path")) t.metric_path = e.s(p + "metric_path");
  t.tuner_type = e.s(p + "tuner_type", "gridsearch");
  if (t.tuner_type != "gridsearch" && t.tuner_type != "random" && t.tuner_type != "model_based") {
    diag.warn(p + "tuner_type", "\"" + t.tuner_type + "\" is not a tuner (gridsearch, random, model_based): "
                                "gridsearch is used, as DeepSpeed does");
    t.tuner_type = "gridsearch";
  }
  t.tuner_early_stopping = e.i(p + "tuner_early_stopping", 5);
  t.tuner_num_trials = e.i(p + "tuner_num_trials", 50);
  if (const Json& m = e.at(p + "arg_mappings"); m.is_object()) {
    for (const auto& [key, arg] : m.items()) {
      if (!arg.is_string() || arg.get<std::string>().empty()) {
        diag.error(p + "arg_mappings." + key, arg.dump() + " is not an argument name; allowed: a string such as "
                                              "\"--per_device_train_batch_size\"");
        continue;
      }
      // DeepSpeed's README writes "gradient_accumulation_steps " (a trailing blank): the key is trimmed.
      std::string k = key;
      while (!k.empty() && k.back() == ' ') k.pop_back();
      while (!k.empty() && k.front() == ' ') k.erase(k.begin());
      t.arg_mappings.emplace_back(k, arg.get<std::string>());
    }
  }
  for (const char* key : {"model_info.max_seq_length", "model_info.hidden_width"}) {
    if (e.has(p + key)) diag.warn(p + key, "has no effect (DeepSpeed's autotuner does not read it either)");
  }
  t.model_info_profile = e.b(p + "model_info.profile", false);
  t.num_params = e.oi(p + "model_info.num_params");
  t.hidden_size = e.oi(p + "model_info.hidden_size");
  t.num_layers = e.oi(p + "model_info.num_layers");
  if (e.has(p + "model_info_path")) t.model_info_path = e.s(p + "model_info_path");
  t.mp_size = e.i(p + "mp_size", 1);
  t.max_train_batch_size = e.oi(p + "max_train_batch_size");
  t.min_train_batch_size = e.i(p + "min_train_batch_size", 1);
  t.max_train_micro_batch_size_per_gpu = e.i(p + "max_train_micro_batch_size_per_gpu", 1024);
  t.min_train_micro_batch_size_per_gpu = e.i(p + "min_train_micro_batch_size_per_gpu", 1);
  t.num_tuning_micro_batch_sizes = e.i(p + "num_tuning_micro_batch_sizes", 3);
  if (t.end_profile_step < std::max<int64_t>(t.start_profile_step, 1)) {
    diag.error(p + "end_profile_step", std::to_string(t.end_profile_step) + " is before start_profile_step " +
                                           std::to_string(t.start_profile_step) +
                                           "; allowed: end_profile_step >= start_profile_step");
  }
  if (t.min_train_micro_batch_size_per_gpu > t.max_train_micro_batch_size_per_gpu) {
    diag.error(p + "min_train_micro_batch_size_per_gpu",
               std::to_string(t.min_train_micro_batch_size_per_gpu) + " is above max_train_micro_batch_size_per_gpu " +
                   std::to_string(t.max_train_micro_batch_size_per_gpu) + "; allowed: at most the maximum");
  }
  if (t.results_dir.empty()) diag.error(p + "results_dir", "\"\" is empty; allowed: a directory path");
  if (t.exps_dir.empty()) diag.error(p + "exps_dir", "\"\" is empty; allowed: a directory path");
}

}  // namespace

void build_typed(const JsonDocument& doc, Config::Data& data, Diagnostics& diag) {
  const Effective e(data.effective_json);
  const Json& root = doc.root;

  data.logging.steps_per_print = e.oi("steps_per_print");
  data.logging.dump_state = e.b("dump_state", false);
  data.logging.wall_clock_breakdown = e.b("wall_clock_breakdown", false);
  data.logging.memory_breakdown = e.b("memory_breakdown", false);
  CommsLoggerConfig& cl = data.logging.comms_logger;
  cl.enabled = e.b("comms_logger.enabled", false);
  cl.prof_all = e.b("comms_logger.prof_all", true);
  cl.verbose = e.b("comms_logger.verbose", false);
  cl.debug = e.b("comms_logger.debug", false);
  if (const Json* ops = find_path(root, "comms_logger.prof_ops"); ops != nullptr && ops->is_array()) {
    // The operations the engine issues (include/zerotrain/comms_logging.h); DeepSpeed's other names are valid but
    // never logged here.
    static const std::set<std::string> kOps = {"all_reduce", "reduce_scatter_tensor", "all_gather_into_tensor",
                                               "reduce_scatter_coalesced", "all_gather_coalesced", "broadcast",
                                               "barrier"};
    for (const auto& op : *ops) {
      if (!op.is_string()) continue;
      cl.prof_ops.push_back(op.get<std::string>());
      if (cl.enabled && !cl.prof_all && !kOps.contains(cl.prof_ops.back())) {
        diag.warn("comms_logger.prof_ops", "\"" + cl.prof_ops.back() + "\" is never issued by zerotrain's engine, so "
                  "nothing is logged for it; the engine issues all_reduce, reduce_scatter_tensor, "
                  "all_gather_into_tensor, reduce_scatter_coalesced, all_gather_coalesced, broadcast, barrier");
      }
    }
  }
  FlopsProfilerConfig& fp = data.logging.flops_profiler;
  fp.enabled = e.b("flops_profiler.enabled", false);
  fp.recompute_fwd_factor = e.d("flops_profiler.recompute_fwd_factor", 0.0);
  fp.profile_step = e.i("flops_profiler.profile_step", 1);
  fp.module_depth = e.i("flops_profiler.module_depth", -1);
  fp.top_modules = e.i("flops_profiler.top_modules", 1);
  fp.detailed = e.b("flops_profiler.detailed", true);
  if (fp.enabled) {
    if (fp.profile_step < 0) {
      diag.error("flops_profiler.profile_step", std::to_string(fp.profile_step) + " is invalid; allowed: an "
                 "optimizer step >= 0 (the number of steps taken before the profiled one)");
    }
    if (fp.module_depth < -1) {
      diag.error("flops_profiler.module_depth", std::to_string(fp.module_depth) + " is invalid; allowed: -1 (every "
                 "depth) or a depth >= 0");
    }
    if (fp.top_modules < 1) {
      diag.error("flops_profiler.top_modules", std::to_string(fp.top_modules) + " is invalid; allowed: >= 1");
    }
    if (fp.recompute_fwd_factor < 0) {
      diag.error("flops_profiler.recompute_fwd_factor", fmt::format("{} is invalid; allowed: >= 0",
                 fp.recompute_fwd_factor));
    }
  }
  if (e.has("flops_profiler.output_file")) {
    if (std::string f = e.s("flops_profiler.output_file"); !f.empty()) fp.output_file = f;
  }

  GradientConfig& g = data.gradients;
  g.clipping = e.d("gradient_clipping", 1.0);
  g.prescale = e.b("prescale_gradients", false);
  g.predivide_factor = e.d("gradient_predivide_factor", 1.0);
  g.allreduce_sum = lower(e.s("gradient_allreduce_op", "mean")) == "sum";
  if (e.has("communication_data_type")) g.communication_dtype = dtype(e.s("communication_data_type"));
  if (e.has("data_types.grad_accum_dtype")) g.accumulation_dtype = dtype(e.s("data_types.grad_accum_dtype"));
  if (g.prescale && g.predivide_factor != 1.0) {
    diag.error("gradient_predivide_factor", Json(g.predivide_factor).dump() + " cannot be combined with "
                                            "\"prescale_gradients\": true (prescaling divides by the world size); "
                                            "allowed with prescale_gradients: 1.0");
  }

  Fp16Config& f = data.fp16;
  f.enabled = e.b("fp16.enabled", false);
  f.auto_cast = e.b("fp16.auto_cast", false);
  f.loss_scale = e.d("fp16.loss_scale", 0);
  f.initial_scale_power = static_cast<int>(e.i("fp16.initial_scale_power", 16));
  f.loss_scale_window = e.i("fp16.loss_scale_window", 1000);
  f.hysteresis = static_cast<int>(e.i("fp16.hysteresis", 2));
  f.consecutive_hysteresis = e.b("fp16.consecutive_hysteresis", false);
  f.min_loss_scale = e.d("fp16.min_loss_scale", 1);
  for (const char* key : {"initial_scale_power", "loss_scale_window", "hysteresis", "consecutive_hysteresis",
                          "min_loss_scale"}) {
    if (find_path(root, std::string("fp16.") + key) != nullptr) f.dynamic_args_given = true;
  }
  if (f.enabled && f.loss_scale == 0) {
    if (f.loss_scale_window <= 0) {
      diag.error("fp16.loss_scale_window", "0 is out of range with dynamic loss scaling (loss_scale 0); allowed: an "
                                           "integer >= 1");
    }
    if (f.min_loss_scale <= 0) {
      diag.error("fp16.min_loss_scale", Json(f.min_loss_scale).dump() + " is out of range with dynamic loss scaling; "
                                        "allowed: a number > 0");
    }
  }
  Bf16Config& bf = data.bf16;
  bf.enabled = e.b("bf16.enabled", false);
  bf.immediate_grad_update = e.b("bf16.immediate_grad_update", false);
  bf.check_grad_overflow = e.b("bf16.check_grad_overflow", false);
  if (f.enabled && bf.enabled) {
    diag.error("bf16.enabled", "fp16 and bf16 are both enabled; enable at most one (DeepSpeed asserts the same)");
  }
  data.precision = f.enabled ? Precision::kFp16 : bf.enabled ? Precision::kBf16 : Precision::kFp32;

  build_zero(e, data, diag);
  if (g.allreduce_sum && data.zero.stage == 3) {
    diag.error("gradient_allreduce_op", "\"sum\" is not supported with ZeRO stage 3 (DeepSpeed rejects it too); "
                                        "allowed at stage 3: \"mean\"");
  }

  AioConfig& a = data.aio;
  a.block_size = e.i("aio.block_size", a.block_size);
  a.queue_depth = e.i("aio.queue_depth", a.queue_depth);
  a.intra_op_parallelism = e.i("aio.intra_op_parallelism", a.intra_op_parallelism);
  a.single_submit = e.b("aio.single_submit", false);
  a.overlap_events = e.b("aio.overlap_events", true);
  a.use_gds = e.b("aio.use_gds", false);

  build_optimizer(e, root, data, diag);
  build_scheduler(e, root, data, diag);
  build_autotuning(e, data, diag);

  MonitorConfig& mon = data.monitor;
  mon.tensorboard = e.b("tensorboard.enabled", false);
  mon.tensorboard_output_path = e.s("tensorboard.output_path");
  mon.tensorboard_job_name = e.s("tensorboard.job_name", mon.tensorboard_job_name);
  mon.csv = e.b("csv_monitor.enabled", false);
  mon.wandb = e.b("wandb.enabled", false);
  mon.comet = e.b("comet.enabled", false);
  mon.csv_output_path = e.s("csv_monitor.output_path");
  mon.csv_job_name = e.s("csv_monitor.job_name", mon.csv_job_name);

  if (auto vocab = e.oi("vocabulary_size"); vocab && *vocab % 8 != 0) {
    diag.warn("vocabulary_size", std::to_string(*vocab) + " is not a multiple of 8: tensor cores are used less well");
  }
}

}  // namespace zerotrain::detail
