// Learning-rate schedules with DeepSpeed's formulas and parameter names (deepspeed/runtime/lr_schedules.py):
// WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle, LRRangeTest.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

#include "zerotrain/config.h"

namespace zerotrain::detail {

// A schedule is a pure function of the step index, so resuming needs only the index.
class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // The learning rate in effect for the optimizer step that follows `completed_steps` scheduler steps, i.e. the lr
  // DeepSpeed's scheduler has set after `completed_steps` calls of scheduler.step() (0 = right after construction).
  // DeepSpeed's last_batch_iteration is then cfg.last_batch_iteration + completed_steps, so with the default -1 it
  // is completed_steps - 1. A schedule configured to resume (last_batch_iteration >= 0) leaves the optimizer's lr
  // alone until its first step, as DeepSpeed's constructors do: lr(0) is then base_lr. After a checkpoint load the
  // optimizer state carries lr(completed_steps) of the saved run, which is the same value. completed_steps >= 0.
  virtual double lr(int64_t completed_steps) const = 0;
  // Adam's beta1 as OneCycle with cycle_momentum sets it; nullopt when the schedule leaves it alone (other schedules,
  // cycle_momentum false, or before the first step of a resumed schedule). DeepSpeed cycles only optimizers whose
  // defaults have `betas` (Adam, AdamW, Lamb, Lion): for SGD and Adagrad it warns and cycles nothing, so the engine
  // must ignore this for them. Wherever it sets beta1, DeepSpeed also sets beta2 to kOneCycleBeta2.
  virtual std::optional<double> momentum(int64_t completed_steps) const {
    (void)completed_steps;
    return std::nullopt;
  }
};

// OneCycle writes betas = (momentum, 0.99) into the optimizer: beta2 becomes 0.99 whatever the config said
// (DeepSpeed's OneCycle._initialize_momentum), from construction on (or from the first step when resuming).
inline constexpr double kOneCycleBeta2 = 0.99;

// Builds the schedule of `cfg` for an optimizer whose configured lr is `base_lr` (WarmupLR's warmup_max_lr
// defaults to it, WarmupDecayLR's to 0.001 as in DeepSpeed; WarmupCosineLR's ratios multiply it). Returns nullptr
// for SchedulerKind::kNone (constant lr). Throws ConfigError for kOther, and for values DeepSpeed's constructors
// reject (warmup_num_steps < 1, a missing total_num_steps, cycle_first_step_size < 1, cycle_second_step_size < 0,
// lr_range_test_step_size < 1) or that have no meaning (last_batch_iteration < -1).
std::unique_ptr<LrSchedule> make_lr_schedule(const SchedulerConfig& cfg, double base_lr);

}  // namespace zerotrain::detail
