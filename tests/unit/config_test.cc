// Valid configs: typed structs, DeepSpeed's code defaults, "auto" resolution, origins, aliases, features.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "config_test_util.h"

namespace zerotrain {
namespace {

using testing::effective;
using testing::effective_entry;
using testing::expect_contains;
using testing::parse_error;
using testing::parse_ok;

TEST(Config, DeepSpeedCodeDefaults) {
  const auto cfg = parse_ok(R"({"train_batch_size": 8})");
  EXPECT_EQ(cfg.zero().stage, 0);
  EXPECT_EQ(cfg.zero().reduce_bucket_size, 500'000'000);
  EXPECT_EQ(cfg.zero().allgather_bucket_size, 500'000'000);
  EXPECT_EQ(cfg.zero().prefetch_bucket_size, 50'000'000);  // code default; the docs say 5e8
  EXPECT_EQ(cfg.zero().param_persistence_threshold, 100'000);
  EXPECT_EQ(cfg.zero().max_live_parameters, 1'000'000'000);
  EXPECT_FALSE(cfg.zero().overlap_comm);  // false below stage 3
  EXPECT_TRUE(cfg.zero().contiguous_gradients);
  EXPECT_DOUBLE_EQ(cfg.gradients().clipping, 1.0);  // GRADIENT_CLIPPING_DEFAULT in runtime/constants.py
  EXPECT_FALSE(cfg.logging().steps_per_print.has_value());
  EXPECT_EQ(cfg.fp16().initial_scale_power, 16);
  EXPECT_EQ(cfg.fp16().loss_scale_window, 1000);
  EXPECT_EQ(cfg.fp16().hysteresis, 2);
  EXPECT_FALSE(cfg.fp16().dynamic_args_given);
  EXPECT_FALSE(cfg.bf16().check_grad_overflow);  // DeepSpeedBF16Config (runtime/precision_config.py)
  EXPECT_EQ(cfg.precision(), Precision::kFp32);
  EXPECT_EQ(cfg.optimizer().kind, OptimizerKind::kNone);
  EXPECT_EQ(cfg.aio().block_size, 1'048'576);
  EXPECT_EQ(effective(cfg, "steps_per_print"), "null");
  EXPECT_EQ(effective_entry(cfg, "zero_optimization.stage")->origin, ValueOrigin::kDefault);
}

TEST(Config, OverlapCommDefaultsOnAtStage3) {
  const auto cfg = parse_ok(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3}})");
  EXPECT_TRUE(cfg.zero().overlap_comm);
  EXPECT_EQ(effective_entry(cfg, "zero_optimization.overlap_comm")->origin, ValueOrigin::kDerived);
  const auto off = parse_ok(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3, "overlap_comm": false}})");
  EXPECT_FALSE(off.zero().overlap_comm);
}

TEST(Config, ModuleGranularityThresholdUnsetJoinsUnitsBelowAnEighthOfPrefetch) {
  const auto cfg = parse_ok(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3,
      "stage3_max_live_parameters": 16000000}})");
  EXPECT_EQ(effective(cfg, "zero_optimization.stage3_module_granularity_threshold"), "2000000");  // 16M / 8
  EXPECT_EQ(effective_entry(cfg, "zero_optimization.stage3_module_granularity_threshold")->origin,
            ValueOrigin::kDerived);
  const auto off = parse_ok(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3,
      "stage3_module_granularity_threshold": 0}})");
  EXPECT_EQ(off.zero().module_granularity_threshold, 0);
  EXPECT_EQ(effective_entry(off, "zero_optimization.stage3_module_granularity_threshold")->origin, ValueOrigin::kFile);
  const auto below = parse_ok(R"({"train_batch_size": 8, "zero_optimization": {"stage": 2}})");
  EXPECT_EQ(below.zero().module_granularity_threshold, -1);
}

TEST(Config, BatchTripleResolvedForWorldSize) {
  const auto cfg = parse_ok(R"({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 4})", {.world_size = 4});
  EXPECT_EQ(cfg.batch().gradient_accumulation_steps, 4);
  const auto* gas = effective_entry(cfg, "gradient_accumulation_steps");
  ASSERT_NE(gas, nullptr);
  EXPECT_EQ(gas->value_json, "4");
  EXPECT_EQ(gas->origin, ValueOrigin::kDerived);
  EXPECT_EQ(effective_entry(cfg, "train_batch_size")->origin, ValueOrigin::kFile);
}

TEST(Config, AutoValuesResolvedFromTheRun) {
  const char* json = R"({
    "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}},
    "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto",
                                                       "warmup_num_steps": "auto", "total_num_steps": "auto"}},
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                          "stage3_param_persistence_threshold": "auto"}})";
  const auto cfg = parse_ok(json, {.world_size = 2, .micro_batch_per_gpu = 8, .gradient_accumulation_steps = 2,
                                   .hidden_size = 1024, .lr = 3e-4, .weight_decay = 0.01, .total_num_steps = 500,
                                   .warmup_num_steps = 50});
  EXPECT_EQ(cfg.batch().micro_batch_per_gpu, 8);
  EXPECT_EQ(cfg.batch().gradient_accumulation_steps, 2);
  EXPECT_EQ(cfg.batch().train_batch_size, 32);
  EXPECT_DOUBLE_EQ(cfg.optimizer().lr, 3e-4);
  EXPECT_DOUBLE_EQ(cfg.optimizer().weight_decay, 0.01);
  EXPECT_EQ(cfg.optimizer().betas[1], 0.999);
  EXPECT_EQ(cfg.scheduler().total_num_steps, 500);
  EXPECT_EQ(cfg.scheduler().warmup_num_steps, 50);
  EXPECT_DOUBLE_EQ(*cfg.scheduler().warmup_max_lr, 3e-4);
  EXPECT_EQ(cfg.zero().reduce_bucket_size, 1024 * 1024);
  EXPECT_EQ(cfg.zero().prefetch_bucket_size, static_cast<int64_t>(0.9 * 1024 * 1024));
  EXPECT_EQ(cfg.zero().param_persistence_threshold, 10 * 1024);
  EXPECT_EQ(effective_entry(cfg, "train_micro_batch_size_per_gpu")->origin, ValueOrigin::kAuto);
  EXPECT_EQ(effective_entry(cfg, "train_batch_size")->origin, ValueOrigin::kDerived);
  expect_contains(effective_entry(cfg, "zero_optimization.reduce_bucket_size")->note, {"hidden_size^2"});
}

TEST(Config, AutoWithoutRunValuesFallsBackLikeDeepSpeed) {
  // DeepSpeed drops "auto" values before reading a section: defaults apply. The batch triple resolves from the
  // other values.
  const auto cfg = parse_ok(R"({"train_batch_size": 16, "train_micro_batch_size_per_gpu": "auto",
                                "gradient_accumulation_steps": "auto",
                                "zero_optimization": {"reduce_bucket_size": "auto"}})",
                            {.world_size = 2});
  EXPECT_EQ(cfg.batch().micro_batch_per_gpu, 8);
  EXPECT_EQ(cfg.batch().gradient_accumulation_steps, 1);
  EXPECT_EQ(cfg.zero().reduce_bucket_size, 500'000'000);
  EXPECT_EQ(effective_entry(cfg, "zero_optimization.reduce_bucket_size")->origin, ValueOrigin::kAuto);
}

TEST(Config, OptimizersWithDeepSpeedSemantics) {
  const auto adam = parse_ok(R"({"train_batch_size": 1, "optimizer": {"type": "Adam", "params": {"lr": 0.01}}})");
  EXPECT_EQ(adam.optimizer().kind, OptimizerKind::kAdam);
  EXPECT_TRUE(adam.optimizer().adam_w_mode);  // DeepSpeed's "Adam" is AdamW unless adam_w_mode is false
  const auto adam_l2 = parse_ok(
      R"({"train_batch_size": 1, "optimizer": {"type": "adam", "params": {"adam_w_mode": false}}})");
  EXPECT_FALSE(adam_l2.optimizer().adam_w_mode);
  const auto adamw = parse_ok(
      R"({"train_batch_size": 1, "optimizer": {"type": "AdamW", "params": {"adam_w_mode": false}}})");
  EXPECT_TRUE(adamw.optimizer().adam_w_mode);  // type AdamW forces it
  const auto lion = parse_ok(R"({"train_batch_size": 1, "optimizer": {"type": "Lion"}})");
  EXPECT_EQ(lion.optimizer().kind, OptimizerKind::kLion);
  EXPECT_EQ(lion.optimizer().betas[1], 0.99);
  const auto adagrad = parse_ok(R"({"train_batch_size": 1, "optimizer": {"type": "Adagrad"}})");
  EXPECT_DOUBLE_EQ(adagrad.optimizer().lr, 0.01);
  EXPECT_DOUBLE_EQ(adagrad.optimizer().eps, 1e-10);
  const auto sgd = parse_ok(
      R"({"train_batch_size": 1, "optimizer": {"type": "SGD", "params": {"lr": 0.1, "momentum": 0.9, "nesterov": true}}})");
  EXPECT_EQ(sgd.optimizer().kind, OptimizerKind::kSGD);
  EXPECT_DOUBLE_EQ(sgd.optimizer().momentum, 0.9);
  const auto lamb = parse_ok(R"({"train_batch_size": 1, "optimizer": {"type": "LAMB", "params": {"max_coeff": 0.3}}})");
  EXPECT_EQ(lamb.optimizer().kind, OptimizerKind::kLamb);
  EXPECT_DOUBLE_EQ(lamb.optimizer().max_coeff, 0.3);
}

TEST(Config, Schedulers) {
  const auto w = parse_ok(R"({"train_batch_size": 1, "scheduler": {"type": "WarmupLR",
                              "params": {"warmup_num_steps": 10, "warmup_type": "linear"}}})");
  EXPECT_EQ(w.scheduler().kind, SchedulerKind::kWarmupLR);
  EXPECT_EQ(w.scheduler().warmup_type, WarmupType::kLinear);
  EXPECT_FALSE(w.scheduler().warmup_max_lr.has_value());  // WarmupLR: the optimizer's lr
  const auto d = parse_ok(R"({"train_batch_size": 1, "scheduler": {"type": "WarmupDecayLR",
                              "params": {"total_num_steps": 100}}})");
  EXPECT_DOUBLE_EQ(*d.scheduler().warmup_max_lr, 0.001);  // WarmupDecayLR's own default
  const auto c = parse_ok(R"({"train_batch_size": 1, "scheduler": {"type": "OneCycle",
                              "params": {"cycle_min_lr": 0.001, "cycle_max_lr": 0.01}}})");
  EXPECT_EQ(c.scheduler().cycle_first_step_size, 2000);
  EXPECT_FALSE(c.scheduler().cycle_second_step_size.has_value());
}

TEST(Config, DeprecatedAliasesMapWithWarnings) {
  const auto cfg = parse_ok(R"({"train_batch_size": 4, "bfloat16": {"enabled": true},
      "zero_optimization": {"stage": 2, "cpu_offload": true, "stage3_gather_fp16_weights_on_model_save": true,
                            "cpu_offload_use_pin_memory": true}})");
  EXPECT_EQ(cfg.precision(), Precision::kBf16);
  EXPECT_EQ(cfg.zero().offload_optimizer.device, OffloadDevice::kCpu);
  EXPECT_TRUE(cfg.zero().gather_16bit_weights_on_model_save);
  std::string all;
  for (const auto& w : cfg.warnings()) all += w + "\n";
  expect_contains(all, {"\"bfloat16\" is deprecated; read as \"bf16\"", "\"cpu_offload\" is deprecated",
                        "stage3_gather_fp16_weights_on_model_save", "cpu_offload_use_pin_memory"});
}

TEST(Config, PydanticFieldNamesAreAliasesOfStage3Keys) {
  const auto cfg = parse_ok(R"({"train_batch_size": 4, "zero_optimization": {"stage": 2,
      "prefetch_bucket_size": 1000, "max_live_parameters": 2000, "param_persistence_threshold": 3}})");
  EXPECT_EQ(cfg.zero().prefetch_bucket_size, 1000);
  EXPECT_EQ(cfg.zero().max_live_parameters, 2000);
  EXPECT_EQ(cfg.zero().param_persistence_threshold, 3);
  EXPECT_TRUE(cfg.warnings().empty());
  EXPECT_EQ(effective(cfg, "zero_optimization.stage3_prefetch_bucket_size"), "1000");
}

TEST(Config, LegacyBooleanZeroOptimization) {
  const auto cfg = parse_ok(R"({"train_batch_size": 4, "zero_optimization": true, "allgather_size": 1000})");
  EXPECT_EQ(cfg.zero().stage, 1);
  EXPECT_EQ(cfg.zero().allgather_bucket_size, 1000);
  ASSERT_FALSE(cfg.warnings().empty());
}

TEST(Config, ScientificNotationForIntegers) {
  const auto cfg = parse_ok(R"({"train_batch_size": 4, "zero_optimization": {"reduce_bucket_size": 2e8}})");
  EXPECT_EQ(cfg.zero().reduce_bucket_size, 200'000'000);
}

TEST(Config, UnsupportedFeaturesAreListedNotIgnored) {
  const auto cfg = parse_ok(R"({"train_batch_size": 4,
      "sparse_attention": {"mode": "fixed"},
      "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "nvme", "nvme_path": "/tmp"},
                            "offload_param": {"device": "nvme", "nvme_path": "/tmp"}},
      "optimizer": {"type": "OneBitAdam"},
      "scheduler": {"type": "StepLR", "params": {"step_size": 10}}})");
  std::string all;
  for (const auto& f : cfg.unsupported_features()) all += f + "\n";
  expect_contains(all, {"sparse attention", "optimizer OneBitAdam", "LR schedule StepLR"});
  EXPECT_EQ(all.find("NVMe"), std::string::npos) << "offload to NVMe is implemented (zero/swap_file.h)";
  try {
    cfg.require_supported();
    ADD_FAILURE() << "require_supported should throw";
  } catch (const ConfigError& e) {
    expect_contains(e.what(), {"zerotrain does not support sparse attention", "optimizer OneBitAdam"});
  }
}

// wandb and comet are read (the Python package logs through their clients: EngineOptions::monitor_sink), not listed
// as unsupported; their sections keep DeepSpeed's defaults.
TEST(Config, WandbAndCometAreReadForThePythonPackage) {
  const auto cfg = parse_ok(R"({"train_batch_size": 4, "wandb": {"enabled": true, "team": "t"},
      "comet": {"enabled": true, "samples_log_interval": 8, "online": false}})");
  EXPECT_TRUE(cfg.unsupported_features().empty()) << cfg.unsupported_features().front();
  EXPECT_TRUE(cfg.monitor().wandb);
  EXPECT_TRUE(cfg.monitor().comet);
  EXPECT_EQ(effective(cfg, "wandb.project"), "\"deepspeed\"");  // WandbConfig.project
  EXPECT_EQ(effective(cfg, "comet.samples_log_interval"), "8");
  const auto off = parse_ok(R"({"train_batch_size": 4, "wandb": {"enabled": false}})");
  EXPECT_FALSE(off.monitor().wandb);
  EXPECT_FALSE(off.monitor().comet);
}

TEST(Config, LoggingSectionsAreRead) {
  const auto cfg = parse_ok(R"({"train_batch_size": 4, "wall_clock_breakdown": true,
      "comms_logger": {"enabled": true, "prof_all": false, "prof_ops": ["all_reduce"], "verbose": true, "debug": true},
      "flops_profiler": {"enabled": true, "profile_step": 3, "module_depth": 2, "top_modules": 4, "detailed": false,
                         "recompute_fwd_factor": 1.0, "output_file": "/tmp/p.txt"}})");
  EXPECT_TRUE(cfg.unsupported_features().empty()) << cfg.unsupported_features().front();
  const auto& l = cfg.logging();
  EXPECT_TRUE(l.wall_clock_breakdown);
  EXPECT_TRUE(l.comms_logger.enabled && !l.comms_logger.prof_all && l.comms_logger.verbose && l.comms_logger.debug);
  EXPECT_EQ(l.comms_logger.prof_ops, std::vector<std::string>{"all_reduce"});
  EXPECT_TRUE(l.flops_profiler.enabled && !l.flops_profiler.detailed);
  EXPECT_EQ(l.flops_profiler.profile_step, 3);
  EXPECT_EQ(l.flops_profiler.module_depth, 2);
  EXPECT_EQ(l.flops_profiler.top_modules, 4);
  EXPECT_EQ(l.flops_profiler.recompute_fwd_factor, 1.0);
  EXPECT_EQ(l.flops_profiler.output_file, "/tmp/p.txt");
  // An operation the engine never issues is a warning naming the key and what it issues.
  const auto warned = parse_ok(R"({"train_batch_size": 4,
      "comms_logger": {"enabled": true, "prof_all": false, "prof_ops": ["all_to_all_single"]}})");
  std::string w;
  for (const auto& s : warned.warnings()) w += s + "\n";
  expect_contains(w, {"comms_logger.prof_ops", "\"all_to_all_single\" is never issued", "reduce_scatter_tensor"});
}

TEST(Config, ZeroPlusPlusQuantizedWeightsAndHierarchicalPartitions) {
  const auto cfg = parse_ok(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3,
      "zero_quantized_weights": true, "zero_hpz_partition_size": 4}})", {.world_size = 4});
  EXPECT_TRUE(cfg.unsupported_features().empty()) << cfg.unsupported_features().front();
  EXPECT_TRUE(cfg.zero().quantized_weights);
  std::string w;
  for (const auto& s : cfg.warnings()) w += s + "\n";
  expect_contains(w, {"zero_optimization.zero_hpz_partition_size", "4 equals the world size"});
  // A secondary partition smaller than the world (hpZ proper) is not implemented: listed, and refused at startup.
  const auto hpz = parse_ok(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3,
      "zero_hpz_partition_size": 4}})", {.world_size = 8});
  std::string all;
  for (const auto& f : hpz.unsupported_features()) all += f + "\n";
  expect_contains(all, {"ZeRO++ hierarchical partitioning (hpZ) (zero_optimization.zero_hpz_partition_size = 4)"});
  // hpZ must divide the world; below stage 3 it is a warning, not a refusal.
  try {
    Config::from_string(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3, "zero_hpz_partition_size": 3}})",
                        {.world_size = 8});
    ADD_FAILURE() << "hpZ 3 of 8 ranks accepted";
  } catch (const ConfigError& e) {
    expect_contains(e.what(), {"zero_optimization.zero_hpz_partition_size", "3 does not divide the world size 8",
                               "allowed: 1, the world size, or a divisor of it"});
  }
  const auto stage2 = parse_ok(R"({"train_batch_size": 8, "zero_optimization": {"stage": 2,
      "zero_hpz_partition_size": 4}})", {.world_size = 8});
  EXPECT_TRUE(stage2.unsupported_features().empty());
  // qwZ below stage 3 has nothing to quantize: a warning; quantized gradients (qgZ) are not implemented.
  const auto low = parse_ok(R"({"train_batch_size": 8, "zero_optimization": {"stage": 2, "zero_quantized_weights": true,
      "zero_quantized_gradients": true}})", {.world_size = 8});
  w.clear();
  for (const auto& s : low.warnings()) w += s + "\n";
  expect_contains(w, {"zero_optimization.zero_quantized_weights", "only at stage 3"});
  all.clear();
  for (const auto& f : low.unsupported_features()) all += f + "\n";
  expect_contains(all, {"ZeRO++ (zero_optimization.zero_quantized_gradients = true)"});
}

TEST(Config, DisabledFeatureSectionsAreNotListed) {
  const auto cfg = parse_ok(R"({"train_batch_size": 4, "flops_profiler": {"enabled": false, "profile_step": 5},
                                "tensorboard": {"enabled": false}, "amp": {"enabled": false}})");
  EXPECT_TRUE(cfg.unsupported_features().empty()) << cfg.unsupported_features().front();
  EXPECT_NO_THROW(cfg.require_supported());
}

TEST(Config, EffectiveJsonUsesDeepSpeedNames) {
  const auto cfg = parse_ok(R"({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 4,
      "bfloat16": {"enabled": true}, "zero_optimization": {"stage": 2, "prefetch_bucket_size": 7}})",
                            {.world_size = 8});
  const auto j = nlohmann::json::parse(cfg.to_json());
  EXPECT_EQ(j["gradient_accumulation_steps"], 2);
  EXPECT_EQ(j["bf16"]["enabled"], true);
  EXPECT_FALSE(j.contains("bfloat16"));
  EXPECT_EQ(j["zero_optimization"]["stage3_prefetch_bucket_size"], 7);
  EXPECT_EQ(j["zero_optimization"]["overlap_comm"], false);
  EXPECT_FALSE(j.contains("steps_per_print"));  // unset keys are absent, as in DeepSpeed
  // Re-reading the effective config gives the same effective config.
  const auto again = Config::from_string(cfg.to_json(), {.world_size = 8});
  EXPECT_EQ(again.to_json(), cfg.to_json());
}

TEST(Config, ExampleConfigsAreValid) {
  const std::filesystem::path dir = std::filesystem::path(ZEROTRAIN_SOURCE_DIR) / "examples" / "configs";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    for (int ws : {1, 2, 4, 8}) EXPECT_NO_THROW(Config::from_file(entry.path().string(), {.world_size = ws}));
    ++count;
  }
  EXPECT_GE(count, 5);
}

TEST(Config, AdvancedZero3SeedConfig) {
  const auto cfg = Config::from_file(std::string(ZEROTRAIN_SOURCE_DIR) + "/examples/configs/advanced_zero3_config.json",
                                     {.world_size = 8});
  EXPECT_EQ(cfg.batch().train_batch_size, 1024);
  EXPECT_EQ(cfg.batch().gradient_accumulation_steps, 32);  // 1024 / (4 * 8)
  EXPECT_EQ(cfg.zero().stage, 3);
  EXPECT_EQ(cfg.zero().offload_param.device, OffloadDevice::kCpu);
  EXPECT_EQ(cfg.precision(), Precision::kFp16);
  EXPECT_TRUE(cfg.fp16().dynamic_args_given);
  EXPECT_EQ(cfg.scheduler().kind, SchedulerKind::kWarmupLR);
}

}  // namespace
}  // namespace zerotrain
