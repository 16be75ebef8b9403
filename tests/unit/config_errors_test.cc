// Every config error path: each message names the JSON path (with line and column), the value and what is
// allowed.
#include <gtest/gtest.h>

#include "config_test_util.h"

namespace zerotrain {
namespace {

using testing::expect_contains;
using testing::parse_error;

TEST(ConfigErrors, InvalidJsonGivesLineAndColumn) {
  expect_contains(parse_error("{\n  \"train_batch_size\": 8,\n  \"fp16\": {\"enabled\": tru}\n}"),
                  {"test.json:3:23", "invalid JSON"});
}

TEST(ConfigErrors, DuplicateKey) {
  expect_contains(parse_error("{\"train_batch_size\": 8,\n \"train_batch_size\": 16}"),
                  {"test.json:2:2", "duplicate key \"train_batch_size\""});
}

TEST(ConfigErrors, RootMustBeAnObject) {
  expect_contains(parse_error("[1, 2]"), {"the config must be a JSON object", "a list"});
}

TEST(ConfigErrors, UnknownTopLevelKeyWithSuggestion) {
  expect_contains(parse_error("{\"train_batch_size\": 8,\n \"gradient_acumulation_steps\": 2}"),
                  {"gradient_acumulation_steps (line 2, column 32)", "unknown key",
                   "did you mean \"gradient_accumulation_steps\"?"});
}

TEST(ConfigErrors, UnknownNestedKeyWithSuggestion) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stgae": 2}})"),
                  {"zero_optimization.stgae", "unknown key \"stgae\" in \"zero_optimization\"",
                   "did you mean \"stage\"?"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"offload_optimizer": {"devise": "cpu"}}})"),
                  {"zero_optimization.offload_optimizer.devise", "did you mean \"device\"?"});
}

TEST(ConfigErrors, KeyAtTheWrongLevel) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "overlap_comm": true})"),
                  {"unknown key \"overlap_comm\"", "did you mean \"zero_optimization.overlap_comm\"?"});
}

TEST(ConfigErrors, UnknownKeyWithoutNearMatchListsAllowedKeys) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "bf16": {"xyzzy": 1}})"),
                  {"unknown key \"xyzzy\" in \"bf16\"", "allowed keys:", "enabled", "immediate_grad_update"});
}

TEST(ConfigErrors, WrongTypes) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": "two"}})"),
                  {"zero_optimization.stage (line 1, column 56)", "\"two\" is a string",
                   "allowed: an integer from 0 to 3"});
  expect_contains(parse_error(R"({"train_batch_size": 8.5})"),
                  {"train_batch_size", "8.5 is a fractional number", "allowed: an integer > 0"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "fp16": {"enabled": "yes"}})"),
                  {"fp16.enabled", "\"yes\" is a string", "allowed: true or false, or \"auto\""});
  expect_contains(parse_error(R"({"train_batch_size": 8, "fp16": true})"),
                  {"fp16", "true is a boolean", "allowed: an object"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "gradient_clipping": [1]})"),
                  {"gradient_clipping", "[1] is a list", "allowed: a number >= 0"});
}

TEST(ConfigErrors, OutOfRange) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": 4}})"),
                  {"zero_optimization.stage", "4 is out of range", "allowed: an integer from 0 to 3"});
  expect_contains(parse_error(R"({"train_batch_size": 0})"),
                  {"train_batch_size", "0 is out of range", "allowed: an integer > 0"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"reduce_bucket_size": -1}})"),
                  {"zero_optimization.reduce_bucket_size", "-1 is out of range", "allowed: an integer >= 0"});
  expect_contains(
      parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3, "offload_optimizer": {"ratio": 1.5}}})"),
      {"offload_optimizer.ratio", "1.5 is out of range", "from 0 to 1"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "gradient_predivide_factor": 0})"),
                  {"gradient_predivide_factor", "0 is out of range", "a number > 0"});
}

TEST(ConfigErrors, BadChoiceWithSuggestion) {
  expect_contains(
      parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpuu"}}})"),
      {"offload_optimizer.device", "\"cpuu\" is not a valid choice", "did you mean \"cpu\"?",
       "allowed: one of \"none\", \"cpu\", \"nvme\""});
  expect_contains(parse_error(R"({"train_batch_size": 8, "communication_data_type": "fp8"})"),
                  {"communication_data_type", "\"fp8\" is not a valid choice", "\"fp32\", \"fp16\", \"bf16\""});
}

TEST(ConfigErrors, ListElementType) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "optimizer": {"type": "Adam", "params": {"betas": [0.9, "x"]}}})"),
                  {"optimizer.params.betas", "element 1 (\"x\") is a string", "a list of numbers"});
}

TEST(ConfigErrors, AutoWhereNotAccepted) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": "auto"}})"),
                  {"zero_optimization.stage", "\"auto\" is not accepted here"});
}

TEST(ConfigErrors, NullWhereNotAccepted) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": null}})"),
                  {"zero_optimization.stage", "null is null"});
}

TEST(ConfigErrors, Fp16AndBf16Together) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "fp16": {"enabled": true}, "bf16": {"enabled": true}})"),
                  {"bf16.enabled", "fp16 and bf16 are both enabled"});
}

TEST(ConfigErrors, MaxGradNormInOptimizerParams) {
  expect_contains(
      parse_error(R"({"train_batch_size": 8, "optimizer": {"type": "AdamW", "params": {"max_grad_norm": 1.0}}})"),
      {"optimizer.params.max_grad_norm", "not accepted inside optimizer params", "gradient_clipping"});
}

TEST(ConfigErrors, NvmeWithoutPath) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": 3,
      "offload_optimizer": {"device": "nvme"}, "offload_param": {"device": "nvme"}}})"),
                  {"offload_optimizer.nvme_path", "offload_param.nvme_path", "needs \"nvme_path\""});
}

TEST(ConfigErrors, OffloadRules) {
  expect_contains(
      parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu", "ratio": 0.5}}})"),
      {"offload_optimizer.ratio", "needs stage 3; stage is 2"});
  expect_contains(
      parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": 0, "offload_optimizer": {"device": "cpu"}}})"),
      {"offload_optimizer.device", "needs ZeRO stage 1, 2 or 3"});
}

TEST(ConfigErrors, AllreduceSumAtStage3) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "gradient_allreduce_op": "sum", "zero_optimization": {"stage": 3}})"),
                  {"gradient_allreduce_op", "\"sum\" is not supported with ZeRO stage 3"});
}

TEST(ConfigErrors, PrescaleWithPredivide) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "prescale_gradients": true, "gradient_predivide_factor": 2})"),
                  {"gradient_predivide_factor", "cannot be combined with \"prescale_gradients\""});
}

TEST(ConfigErrors, DynamicLossScaleParameters) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "fp16": {"enabled": true, "loss_scale_window": 0}})"),
                  {"fp16.loss_scale_window", "out of range with dynamic loss scaling"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "fp16": {"enabled": true, "min_loss_scale": 0}})"),
                  {"fp16.min_loss_scale", "out of range with dynamic loss scaling"});
}

TEST(ConfigErrors, UnknownOptimizerAndScheduler) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "optimizer": {"type": "AdamWW"}})"),
                  {"optimizer.type", "\"AdamWW\" is not an optimizer DeepSpeed knows", "did you mean"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "optimizer": {"params": {"lr": 1}}})"),
                  {"optimizer.params", "without \"optimizer.type\""});
  expect_contains(parse_error(R"({"train_batch_size": 8, "optimizer": {}})"), {"optimizer", "\"type\" is missing"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "scheduler": {"type": "WarmupLr"}})"),
                  {"scheduler.type", "is not a schedule DeepSpeed knows", "did you mean \"WarmupLR\"?"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "scheduler": {}})"), {"scheduler", "\"type\" is missing"});
}

TEST(ConfigErrors, UnknownOptimizerParameter) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "optimizer": {"type": "AdamW", "params": {"beta": [0.9, 0.9]}}})"),
                  {"optimizer.params.beta", "unknown parameter \"beta\" for optimizer.type \"AdamW\"",
                   "did you mean \"betas\"?"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "optimizer": {"type": "Lion", "params": {"eps": 1e-8}}})"),
                  {"unknown parameter \"eps\"", "allowed: betas, lr"});
}

TEST(ConfigErrors, OptimizerParameterRules) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "optimizer": {"type": "Adam", "params": {"amsgrad": true}}})"),
                  {"optimizer.params.amsgrad", "not supported by the fused"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "optimizer": {"type": "SGD", "params": {"nesterov": true}}})"),
                  {"optimizer.params.nesterov", "needs momentum > 0"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "optimizer": {"type": "Adam", "params": {"betas": [0.9]}}})"),
                  {"optimizer.params.betas", "has 1 elements", "two numbers"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "optimizer": {"type": "Adam", "params": {"betas": [0.9, 1.0]}}})"),
                  {"optimizer.params.betas[1]", "1.0 is out of range"});
  expect_contains(
      parse_error(R"({"train_batch_size": 8, "optimizer": {"type": "Lamb", "params": {"min_coeff": 5, "max_coeff": 1}}})"),
      {"optimizer.params.min_coeff", "greater than max_coeff"});
}

TEST(ConfigErrors, SchedulerRequiredParameters) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "scheduler": {"type": "WarmupDecayLR", "params": {}}})"),
                  {"\"total_num_steps\" is required by WarmupDecayLR"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "scheduler": {"type": "WarmupCosineLR"}})"),
                  {"\"total_num_steps\" is required by WarmupCosineLR"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "scheduler": {"type": "OneCycle", "params": {"cycle_min_lr": 0}}})"),
                  {"\"cycle_max_lr\" is required by OneCycle"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "scheduler": {"type": "WarmupLR", "params": {"warmup_type": "cos"}}})"),
                  {"scheduler.params.warmup_type", "\"cos\" is not a valid choice"});
}

TEST(ConfigErrors, AliasGivenTwice) {
  expect_contains(parse_error(R"({"train_batch_size": 8, "bf16": {"enabled": true}, "bfloat16": {"enabled": true}})"),
                  {"bfloat16", "\"bfloat16\" and \"bf16\" name the same setting"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"prefetch_bucket_size": 1,
                                  "stage3_prefetch_bucket_size": 2}})"),
                  {"zero_optimization.prefetch_bucket_size", "name the same setting"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": 2, "cpu_offload": true,
                                  "offload_optimizer": {"device": "cpu"}}})"),
                  {"zero_optimization.cpu_offload", "both given"});
  expect_contains(parse_error(R"({"train_batch_size": 8, "zero_optimization": {"cpu_offload": "yes"}})"),
                  {"zero_optimization.cpu_offload", "\"yes\" is not a boolean"});
}

TEST(ConfigErrors, BatchErrorsCarryAllNumbers) {
  expect_contains(parse_error(R"({"gradient_accumulation_steps": 2})"),
                  {"batch size", "train_batch_size or train_micro_batch_size_per_gpu must be given"});
  expect_contains(parse_error(R"({"train_batch_size": 30, "train_micro_batch_size_per_gpu": 4,
                                  "gradient_accumulation_steps": 2})",
                              {.world_size = 4}),
                  {"train_batch_size 30 != train_micro_batch_size_per_gpu 4 * gradient_accumulation_steps 2 * "
                   "world_size 4 (= 32)"});
}

TEST(ConfigErrors, WorldSize) {
  expect_contains(parse_error(R"({"train_batch_size": 8})", {.world_size = 0}), {"world size 0 is invalid"});
}

TEST(ConfigErrors, MissingFile) {
  try {
    Config::from_file("/nonexistent/ds_config.json");
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    testing::expect_contains(e.what(), {"/nonexistent/ds_config.json", "cannot open"});
  }
}

TEST(ConfigErrors, EveryErrorIsReportedAtOnce) {
  const auto msg = parse_error(R"({"train_batch_size": 8, "zero_optimization": {"stage": 9, "stgae": 1},
                                   "fp16": {"enabled": "x"}, "foo": 1})");
  const auto lines = std::count(msg.begin(), msg.end(), '\n') + 1;
  EXPECT_EQ(lines, 4) << msg;
}

}  // namespace
}  // namespace zerotrain
