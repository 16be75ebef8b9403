// The schema table itself: every default conforms to its own rule, every key has a parent section and a doc.
#include <gtest/gtest.h>

#include <set>

#include "config/schema.h"
#include "config/validate.h"

namespace zerotrain::detail {
namespace {

std::vector<KeySpec> every_spec() {
  std::vector<KeySpec> out(all_key_specs().begin(), all_key_specs().end());
  for (const auto& dep : dependent_sections()) {
    for (const char* type : {"Adam", "AdamW", "Lamb", "Lion", "Adagrad", "SGD", "WarmupLR", "WarmupDecayLR",
                             "WarmupCosineLR", "OneCycle", "LRRangeTest"}) {
      if (auto children = dep.children(type)) out.insert(out.end(), children->begin(), children->end());
    }
  }
  return out;
}

TEST(ConfigSchema, DefaultsConformToTheirOwnRules) {
  for (const auto& spec : every_spec()) {
    if (spec.def.empty()) continue;
    SCOPED_TRACE(std::string(spec.path));
    Json value;
    ASSERT_NO_THROW(value = Json::parse(spec.def)) << spec.def;
    EXPECT_EQ(check_value(spec, value), "");
  }
}

TEST(ConfigSchema, EveryKeyHasADocAndAParent) {
  std::set<std::string_view> paths;
  for (const auto& spec : all_key_specs()) {
    SCOPED_TRACE(std::string(spec.path));
    EXPECT_TRUE(paths.insert(spec.path).second) << "duplicate path";
    EXPECT_FALSE(spec.doc.empty());
    const size_t dot = spec.path.rfind('.');
    if (dot == std::string_view::npos) continue;
    const KeySpec* parent = find_key_spec(spec.path.substr(0, dot));
    ASSERT_NE(parent, nullptr) << "no parent section";
    EXPECT_TRUE(parent->type == KeyType::kObject || parent->type == KeyType::kMap ||
                parent->rule.alt == KeyType::kObject);
  }
}

TEST(ConfigSchema, CoversTheSectionsDeepSpeedReads) {
  for (const char* section :
       {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "optimizer", "scheduler",
        "fp16", "fp16.auto_cast", "bf16", "amp", "zero_optimization", "zero_optimization.offload_param.nvme_path",
        "zero_optimization.stage3_max_reuse_distance", "aio", "gradient_clipping", "prescale_gradients",
        "gradient_predivide_factor", "communication_data_type", "activation_checkpointing", "flops_profiler",
        "wall_clock_breakdown", "memory_breakdown", "steps_per_print", "autotuning", "tensorboard", "csv_monitor",
        "wandb", "comms_logger", "checkpoint", "data_types", "pipeline", "tensor_parallel", "compression_training",
        "sparse_attention", "elasticity"}) {
    EXPECT_NE(find_key_spec(section), nullptr) << section;
  }
}

TEST(ConfigSchema, MapChildrenMatchStar) {
  EXPECT_EQ(find_key_spec("zero_optimization.nonexistent"), nullptr);
  EXPECT_NE(find_key_spec("zero_optimization.stage"), nullptr);
}

}  // namespace
}  // namespace zerotrain::detail
