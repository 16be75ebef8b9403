// optimizer and scheduler. Parameter names and defaults follow what DeepSpeed hands to the optimizer class it
// builds (deepspeed/runtime/engine.py _configure_basic_optimizer: FusedAdam, FusedLamb, FusedLion,
// torch.optim.Adagrad, torch.optim.<Name>) and the scheduler classes in deepspeed/runtime/lr_schedules.py.
#include <algorithm>
#include <cctype>
#include <string>

#include "config/schema.h"

namespace zerotrain::detail {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Hyper-parameters shared by several optimizers. "auto" is accepted where Hugging Face fills them in.
KeySpec lr(std::string_view def) {
  return {.path = "optimizer.params.lr", .type = KeyType::kNumber, .def = def, .doc = "Learning rate.",
          .rule = {.min = 0, .allow_auto = true}};
}
KeySpec betas(std::string_view def) {
  return {.path = "optimizer.params.betas", .type = KeyType::kList, .def = def,
          .doc = "Coefficients of the running averages of the gradient and its square.",
          .rule = {.elem = KeyType::kNumber, .allow_auto = true}};
}
KeySpec eps(std::string_view def) {
  return {.path = "optimizer.params.eps", .type = KeyType::kNumber, .def = def,
          .doc = "Term added to the denominator for numerical stability.",
          .rule = {.min = 0, .allow_auto = true}};
}
KeySpec weight_decay() {
  return {.path = "optimizer.params.weight_decay", .type = KeyType::kNumber, .def = "0.0",
          .doc = "Weight decay (decoupled in AdamW mode, L2 otherwise).", .rule = {.min = 0, .allow_auto = true}};
}
KeySpec bias_correction() {
  return {.path = "optimizer.params.bias_correction", .type = KeyType::kBool, .def = "true",
          .doc = "Apply Adam's bias correction to the moments."};
}
// DeepSpeed rejects max_grad_norm inside optimizer params (engine.py); declaring it lets the validator give
// the specific error instead of "unknown key".
KeySpec max_grad_norm() {
  return {.path = "optimizer.params.max_grad_norm", .type = KeyType::kNumber, .def = "",
          .doc = "Not allowed: use the top-level gradient_clipping.", .rule = {.nullable = true}};
}

std::optional<std::vector<KeySpec>> optimizer_params(std::string_view type) {
  const std::string t = lower(type);
  if (t == "adam" || t == "adamw") {
    return std::vector<KeySpec>{
        lr("0.001"), betas("[0.9, 0.999]"), eps("1e-08"), weight_decay(), bias_correction(),
        {.path = "optimizer.params.amsgrad", .type = KeyType::kBool, .def = "false",
         .doc = "AMSGrad variant (DeepSpeed's FusedAdam rejects true)."},
        {.path = "optimizer.params.adam_w_mode", .type = KeyType::kBool, .def = "true",
         .doc = "Decoupled weight decay (AdamW). Type \"AdamW\" forces it on; \"Adam\" defaults to it too."},
        {.path = "optimizer.params.torch_adam", .type = KeyType::kBool, .def = "false",
         .doc = "Use torch.optim.Adam/AdamW instead of the fused kernel (same math)."},
        {.path = "optimizer.params.fp32_optimizer_states", .type = KeyType::kBool, .def = "true",
         .doc = "With CPU offload, keep the Adam moments in fp32."},
        {.path = "optimizer.params.set_grad_none", .type = KeyType::kBool, .def = "true",
         .doc = "zero_grad sets gradients to None."},
        max_grad_norm(),
    };
  }
  if (t == "lamb") {
    return std::vector<KeySpec>{
        lr("0.001"), betas("[0.9, 0.999]"), eps("1e-08"), weight_decay(), bias_correction(),
        {.path = "optimizer.params.eps_inside_sqrt", .type = KeyType::kBool, .def = "false",
         .doc = "Add eps inside the square root of the second moment."},
        {.path = "optimizer.params.max_coeff", .type = KeyType::kNumber, .def = "10.0",
         .doc = "Upper clamp of the LAMB trust ratio.", .rule = {.min = 0}},
        {.path = "optimizer.params.min_coeff", .type = KeyType::kNumber, .def = "0.01",
         .doc = "Lower clamp of the LAMB trust ratio.", .rule = {.min = 0}},
        {.path = "optimizer.params.amsgrad", .type = KeyType::kBool, .def = "false",
         .doc = "AMSGrad variant (DeepSpeed's FusedLamb rejects true)."},
        max_grad_norm(),
    };
  }
  if (t == "lion") {
    return std::vector<KeySpec>{
        lr("0.001"), betas("[0.9, 0.99]"), weight_decay(),
        {.path = "optimizer.params.set_grad_none", .type = KeyType::kBool, .def = "true",
         .doc = "zero_grad sets gradients to None."},
        max_grad_norm(),
    };
  }
  if (t == "adagrad") {
    return std::vector<KeySpec>{
        lr("0.01"), eps("1e-10"), weight_decay(),
        {.path = "optimizer.params.lr_decay", .type = KeyType::kNumber, .def = "0.0",
         .doc = "Learning-rate decay per step.", .rule = {.min = 0}},
        {.path = "optimizer.params.initial_accumulator_value", .type = KeyType::kNumber, .def = "0.0",
         .doc = "Starting value of the squared-gradient sum.", .rule = {.min = 0}},
        max_grad_norm(),
    };
  }
  if (type == "SGD") {  // not a DeepSpeed name: DeepSpeed falls through to torch.optim.SGD
    return std::vector<KeySpec>{
        lr("0.001"), weight_decay(),
        {.path = "optimizer.params.momentum", .type = KeyType::kNumber, .def = "0.0",
         .doc = "Momentum factor.", .rule = {.min = 0}},
        {.path = "optimizer.params.dampening", .type = KeyType::kNumber, .def = "0.0",
         .doc = "Dampening of the momentum.", .rule = {.min = 0}},
        {.path = "optimizer.params.nesterov", .type = KeyType::kBool, .def = "false",
         .doc = "Nesterov momentum (needs momentum > 0 and dampening 0)."},
        {.path = "optimizer.params.maximize", .type = KeyType::kBool, .def = "false",
         .doc = "Maximize the objective instead of minimizing it."},
        max_grad_norm(),
    };
  }
  return std::nullopt;  // OneBitAdam, Muon, torch.optim names, ...: see feature.cc
}

KeySpec warmup_num_steps() {
  return {.path = "scheduler.params.warmup_num_steps", .type = KeyType::kInt, .def = "1000",
          .doc = "Steps of warmup (at least 2 take effect).", .rule = {.min = 0, .min_exclusive = true,
                                                                        .allow_auto = true}};
}
KeySpec warmup_type() {
  return {.path = "scheduler.params.warmup_type", .type = KeyType::kString, .def = "\"log\"",
          .doc = "Shape of the warmup ramp.", .rule = {.choices = "log|linear"}};
}
KeySpec last_batch_iteration() {
  return {.path = "scheduler.params.last_batch_iteration", .type = KeyType::kInt, .def = "-1",
          .doc = "Index of the last step taken, to resume a schedule (-1: start).", .rule = {.min = -1}};
}
KeySpec total_num_steps() {
  return {.path = "scheduler.params.total_num_steps", .type = KeyType::kInt, .def = "",
          .doc = "Steps of the whole schedule (required).", .rule = {.min = 0, .min_exclusive = true,
                                                                        .allow_auto = true}};
}

std::optional<std::vector<KeySpec>> scheduler_params(std::string_view type) {
  if (type == "WarmupLR" || type == "WarmupDecayLR") {
    std::vector<KeySpec> specs{
        {.path = "scheduler.params.warmup_min_lr", .type = KeyType::kNumber, .def = "0.0",
         .doc = "Learning rate at the start of warmup.", .rule = {.min = 0, .allow_auto = true}},
        // WarmupLR's code default is None (the optimizer's lr); WarmupDecayLR's is 0.001.
        {.path = "scheduler.params.warmup_max_lr", .type = KeyType::kNumber,
         .def = type == "WarmupLR" ? "" : "0.001",
         .doc = "Learning rate at the end of warmup (WarmupLR: unset = the optimizer's lr).",
         .rule = {.min = 0, .nullable = true, .allow_auto = true}},
        warmup_num_steps(), warmup_type(), last_batch_iteration()};
    if (type == "WarmupDecayLR") specs.push_back(total_num_steps());
    return specs;
  }
  if (type == "WarmupCosineLR") {
    return std::vector<KeySpec>{
        total_num_steps(),
        {.path = "scheduler.params.warmup_min_ratio", .type = KeyType::kNumber, .def = "0.0",
         .doc = "Starting learning rate as a fraction of the optimizer's lr.", .rule = {.min = 0, .max = 1}},
        warmup_num_steps(),
        {.path = "scheduler.params.cos_min_ratio", .type = KeyType::kNumber, .def = "0.0001",
         .doc = "Final learning rate as a fraction of the optimizer's lr.", .rule = {.min = 0, .max = 1}},
        warmup_type(), last_batch_iteration()};
  }
  if (type == "OneCycle") {
    return std::vector<KeySpec>{
        {.path = "scheduler.params.cycle_min_lr", .type = KeyType::kNumber, .def = "",
         .doc = "Lowest learning rate of the cycle (required).", .rule = {.min = 0}},
        {.path = "scheduler.params.cycle_max_lr", .type = KeyType::kNumber, .def = "",
         .doc = "Highest learning rate of the cycle (required).", .rule = {.min = 0}},
        {.path = "scheduler.params.decay_lr_rate", .type = KeyType::kNumber, .def = "0.0",
         .doc = "Learning-rate decay rate after the cycle.", .rule = {.min = 0}},
        {.path = "scheduler.params.cycle_first_step_size", .type = KeyType::kInt, .def = "2000",
         .doc = "Steps of the rising half of the cycle.", .rule = {.min = 0, .min_exclusive = true}},
        {.path = "scheduler.params.cycle_second_step_size", .type = KeyType::kInt, .def = "",
         .doc = "Steps of the falling half (unset: same as the first).",
         .rule = {.min = 0, .min_exclusive = true, .nullable = true}},
        {.path = "scheduler.params.cycle_first_stair_count", .type = KeyType::kInt, .def = "0",
         .doc = "Stairs in the rising half (0: continuous).", .rule = {.min = 0}},
        {.path = "scheduler.params.cycle_second_stair_count", .type = KeyType::kInt, .def = "",
         .doc = "Stairs in the falling half (unset: same as the first).", .rule = {.min = 0, .nullable = true}},
        {.path = "scheduler.params.decay_step_size", .type = KeyType::kInt, .def = "0",
         .doc = "Steps between decays after the cycle (0: no decay).", .rule = {.min = 0}},
        {.path = "scheduler.params.cycle_momentum", .type = KeyType::kBool, .def = "true",
         .doc = "Cycle momentum (beta1) inversely to the learning rate."},
        {.path = "scheduler.params.cycle_min_mom", .type = KeyType::kNumber, .def = "0.8",
         .doc = "Lowest momentum of the cycle.", .rule = {.min = 0, .max = 1}},
        {.path = "scheduler.params.cycle_max_mom", .type = KeyType::kNumber, .def = "0.9",
         .doc = "Highest momentum of the cycle.", .rule = {.min = 0, .max = 1}},
        {.path = "scheduler.params.decay_mom_rate", .type = KeyType::kNumber, .def = "0.0",
         .doc = "Momentum decay rate after the cycle.", .rule = {.min = 0}},
        last_batch_iteration()};
  }
  if (type == "LRRangeTest") {
    return std::vector<KeySpec>{
        {.path = "scheduler.params.lr_range_test_min_lr", .type = KeyType::kNumber, .def = "0.001",
         .doc = "Starting learning rate.", .rule = {.min = 0}},
        {.path = "scheduler.params.lr_range_test_step_size", .type = KeyType::kInt, .def = "2000",
         .doc = "Steps between increases.", .rule = {.min = 0, .min_exclusive = true}},
        {.path = "scheduler.params.lr_range_test_step_rate", .type = KeyType::kNumber, .def = "1.0",
         .doc = "Increase per step_size interval.", .rule = {.min = 0}},
        {.path = "scheduler.params.lr_range_test_staircase", .type = KeyType::kBool, .def = "false",
         .doc = "Increase in steps instead of continuously."},
        last_batch_iteration()};
  }
  return std::nullopt;  // torch.optim.lr_scheduler names: see feature.cc
}

}  // namespace

std::vector<KeySpec> schema_optimizer() {
  return {
      {.path = "optimizer", .type = KeyType::kObject, .def = "", .doc = "The optimizer the engine builds."},
      {.path = "optimizer.type", .type = KeyType::kString, .def = "",
       .doc = "Adam, AdamW, Lamb, Lion, Adagrad (case-insensitive), or a torch.optim class name such as SGD."},
      {.path = "optimizer.params", .type = KeyType::kObject, .def = "",
       .doc = "Keyword arguments of the optimizer; which ones depends on type."},
      {.path = "optimizer.legacy_fusion", .type = KeyType::kBool, .def = "false",
       .doc = "Legacy fused fp16 optimizer path.", .feature = "legacy fusion"},
      {.path = "scheduler", .type = KeyType::kObject, .def = "", .doc = "The learning-rate schedule."},
      {.path = "scheduler.type", .type = KeyType::kString, .def = "",
       .doc = "WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle, LRRangeTest, or a torch lr_scheduler name."},
      {.path = "scheduler.params", .type = KeyType::kObject, .def = "",
       .doc = "Keyword arguments of the schedule; which ones depends on type."},
  };
}

std::span<const DependentSection> dependent_sections() {
  static const DependentSection kSections[] = {
      {"optimizer.params", "optimizer.type", &optimizer_params},
      {"scheduler.params", "scheduler.type", &scheduler_params},
  };
  return kSections;
}

}  // namespace zerotrain::detail
