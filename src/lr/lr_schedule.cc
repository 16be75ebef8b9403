// DeepSpeed's LR schedules (deepspeed/runtime/lr_schedules.py) as pure functions of the step index. Every formula
// keeps DeepSpeed's operation order so that the values agree to the last bit or two, which matters where a floor()
// decides a stair (OneCycle, LRRangeTest staircase). tests/golden/make_schedule_golden.py re-derives the same
// formulas in Python; tests/torch/lr_schedule_test.cc compares every step.
#include "lr/lr_schedule.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace zerotrain::detail {
namespace {

// [Note: DeepSpeed's step index]
// DeepSpeed's schedules keep last_batch_iteration, the index of the last step taken: -1 on a fresh start, and each
// scheduler.step() adds one before computing the lr. The constructor writes the lr for index -1 into the optimizer
// only when it is -1; a schedule built to resume (index >= 0) leaves the optimizer's own lr (and betas) in place
// until its first step. So after `completed_steps` steps the index is start + completed_steps, and the lr in effect
// is the formula at that index, except for completed_steps == 0 with start >= 0, where it is the optimizer's lr.
class DeepSpeedSchedule : public LrSchedule {
 public:
  DeepSpeedSchedule(int64_t start, double base_lr) : start_(start), base_lr_(base_lr) {}

  double lr(int64_t completed_steps) const final {
    assert(completed_steps >= 0 && "completed_steps counts scheduler steps taken");
    if (untouched(completed_steps)) return base_lr_;
    return lr_at(start_ + completed_steps);
  }

 protected:
  // The lr DeepSpeed computes at last_batch_iteration `iteration` (>= -1).
  virtual double lr_at(int64_t iteration) const = 0;
  // True while a resumed schedule has not stepped yet: the optimizer still holds its configured values.
  bool untouched(int64_t completed_steps) const { return completed_steps == 0 && start_ != -1; }
  int64_t iteration(int64_t completed_steps) const { return start_ + completed_steps; }

 private:
  int64_t start_;   // the configured last_batch_iteration
  double base_lr_;  // the optimizer's configured lr
};

// The warmup ramp shared by WarmupLR, WarmupDecayLR and WarmupCosineLR: a fraction in [0, 1) of the way through
// warmup at step index `iteration` < num_steps.
struct WarmupRamp {
  int64_t num_steps;           // max(2, warmup_num_steps): DeepSpeed's log ramp divides by log(num_steps)
  WarmupType type;
  double inverse_log_num_steps;

  WarmupRamp(int64_t warmup_num_steps, WarmupType warmup_type)
      : num_steps(std::max<int64_t>(2, warmup_num_steps)),
        type(warmup_type),
        inverse_log_num_steps(1.0 / std::log(static_cast<double>(num_steps))) {}

  double fraction(int64_t iteration) const {
    assert(iteration >= 0 && iteration < num_steps);
    if (type == WarmupType::kLog) return inverse_log_num_steps * std::log(static_cast<double>(iteration + 1));
    return static_cast<double>(iteration) / static_cast<double>(num_steps);
  }
};

// WarmupLR: min_lr + (max_lr - min_lr) * gamma, gamma the ramp during warmup and 1 after. WarmupDecayLR replaces
// the 1 by a linear decay that reaches 0 at total_num_steps and stays there.
class WarmupLr : public DeepSpeedSchedule {
 public:
  WarmupLr(const SchedulerConfig& cfg, double base_lr, double max_lr, std::optional<int64_t> decay_total_steps)
      : DeepSpeedSchedule(cfg.last_batch_iteration, base_lr),
        ramp_(cfg.warmup_num_steps, cfg.warmup_type),
        min_lr_(cfg.warmup_min_lr),
        delta_lr_(max_lr - cfg.warmup_min_lr),
        decay_total_steps_(decay_total_steps) {}

 protected:
  double lr_at(int64_t iteration) const override {
    if (iteration < 0) return min_lr_;  // DeepSpeed's get_lr before the first step
    return min_lr_ + delta_lr_ * gamma(iteration);
  }

 private:
  double gamma(int64_t iteration) const {
    if (iteration < ramp_.num_steps) return ramp_.fraction(iteration);
    if (!decay_total_steps_) return 1.0;
    // WarmupDecayLR._get_gamma; the window is at least one step so that total <= warmup does not divide by zero.
    const int64_t total = *decay_total_steps_;
    const double window = std::max(1.0, static_cast<double>(total - ramp_.num_steps));
    return std::max(0.0, static_cast<double>(total - iteration) / window);
  }

  WarmupRamp ramp_;
  double min_lr_;
  double delta_lr_;
  std::optional<int64_t> decay_total_steps_;  // set for WarmupDecayLR
};

// WarmupCosineLR: base_lr times a ratio that ramps from warmup_min_ratio to 1, then follows half a cosine down to
// cos_min_ratio at total_num_steps and stays there.
class WarmupCosineLr : public DeepSpeedSchedule {
 public:
  WarmupCosineLr(const SchedulerConfig& cfg, double base_lr)
      : DeepSpeedSchedule(cfg.last_batch_iteration, base_lr),
        ramp_(cfg.warmup_num_steps, cfg.warmup_type),
        org_lr_(base_lr),
        total_num_steps_(*cfg.total_num_steps),
        warmup_min_ratio_(cfg.warmup_min_ratio),
        cos_min_ratio_(cfg.cos_min_ratio) {}

 protected:
  double lr_at(int64_t iteration) const override {
    // Before the first step DeepSpeed's get_lr gives 0, not warmup_min_ratio * lr: a fresh WarmupCosineLR sets the
    // optimizer's lr to 0 until the first scheduler step.
    if (iteration < 0) return 0.0;
    return org_lr_ * ratio(iteration);
  }

 private:
  double ratio(int64_t iteration) const {
    if (iteration < ramp_.num_steps) {
      return warmup_min_ratio_ + ramp_.fraction(iteration) * (1.0 - warmup_min_ratio_);
    }
    const int64_t steps_into_decay = iteration - ramp_.num_steps + 1;
    const int64_t decay_steps = std::max<int64_t>(1, total_num_steps_ - ramp_.num_steps);
    // Clamped at 1 so that the ratio stays at cos_min_ratio past the end instead of rising again.
    const double progress =
        std::min(1.0, static_cast<double>(steps_into_decay) / static_cast<double>(decay_steps));
    const double cosine = (1.0 + std::cos(std::numbers::pi * progress)) / 2.0;
    return std::max(0.0, cos_min_ratio_ + (1.0 - cos_min_ratio_) * cosine);
  }

  WarmupRamp ramp_;
  double org_lr_;  // DeepSpeed's org_lrs: the optimizer's lr at construction
  int64_t total_num_steps_;
  double warmup_min_ratio_;
  double cos_min_ratio_;
};

// OneCycle: one triangle cycle (rising for cycle_first_step_size steps, falling for cycle_second_step_size),
// optionally in stairs, then an optional hyperbolic decay. Momentum (beta1) moves against the lr.
class OneCycle : public DeepSpeedSchedule {
 public:
  OneCycle(const SchedulerConfig& cfg, double base_lr)
      : DeepSpeedSchedule(cfg.last_batch_iteration, base_lr),
        first_step_size_(static_cast<double>(cfg.cycle_first_step_size)),
        second_step_size_(static_cast<double>(cfg.cycle_second_step_size.value_or(cfg.cycle_first_step_size))),
        total_size_(first_step_size_ + second_step_size_),
        step_ratio_(first_step_size_ / total_size_),
        first_stair_count_(cfg.cycle_first_stair_count),
        second_stair_count_(cfg.cycle_second_stair_count.value_or(cfg.cycle_first_stair_count)),
        decay_step_size_(cfg.decay_step_size),
        min_lr_(cfg.cycle_min_lr),
        max_lr_(cfg.cycle_max_lr),
        decay_lr_rate_(cfg.decay_lr_rate),
        skip_lr_decay_(cfg.decay_step_size == 0 || cfg.decay_lr_rate == 0.0),
        cycle_momentum_(cfg.cycle_momentum),
        min_mom_(cfg.cycle_min_mom),
        max_mom_(cfg.cycle_max_mom),
        decay_mom_rate_(cfg.decay_mom_rate),
        skip_mom_decay_(cfg.decay_step_size == 0 || cfg.decay_mom_rate == 0.0) {}

  std::optional<double> momentum(int64_t completed_steps) const override {
    assert(completed_steps >= 0 && "completed_steps counts scheduler steps taken");
    if (!cycle_momentum_ || untouched(completed_steps)) return std::nullopt;
    const int64_t it = iteration(completed_steps);
    // A fresh OneCycle writes cycle_min_mom, though the cycle itself starts at cycle_max_mom (scale 0): DeepSpeed's
    // first optimizer step runs with the low momentum, every later one follows the cycle.
    if (it == -1) return min_mom_;
    if (static_cast<double>(it) < total_size_) return max_mom_ - (max_mom_ - min_mom_) * scale_factor(it);
    if (skip_mom_decay_) return max_mom_;
    // Note the product: DeepSpeed's momentum decay raises beta1 over time.
    return max_mom_ * (1.0 + decay_mom_rate_ * decay_interval(it));
  }

 protected:
  double lr_at(int64_t iteration) const override {
    if (iteration == -1) return min_lr_;
    if (static_cast<double>(iteration) < total_size_) return min_lr_ + (max_lr_ - min_lr_) * scale_factor(iteration);
    if (skip_lr_decay_) return min_lr_;
    return min_lr_ / (1.0 + decay_lr_rate_ * decay_interval(iteration));
  }

 private:
  // OneCycle._get_scale_factor: the position in the triangle, 0 at the ends and 1 at the peak.
  double scale_factor(int64_t iteration) const {
    const auto batch = static_cast<double>(iteration + 1);
    const double cycle = std::floor(1.0 + batch / total_size_);
    const double x = 1.0 + batch / total_size_ - cycle;
    double scale;
    int64_t stair_count;
    if (x <= step_ratio_) {
      scale = x / step_ratio_;
      stair_count = first_stair_count_;
    } else {
      scale = (x - 1.0) / (step_ratio_ - 1.0);
      stair_count = second_stair_count_;
    }
    if (stair_count > 0) {
      // DeepSpeed places the stairs from the integer position in the cycle, not from `scale`: the float scale can
      // land just under a stair boundary (1e-16 below the peak in an asymmetric cycle) and floor it a stair down.
      // Which half's stair count applies still comes from the float comparison above, as in DeepSpeed.
      const double in_cycle = std::fmod(batch, total_size_);
      const auto stairs = static_cast<double>(stair_count);
      const double position = in_cycle <= first_step_size_ ? in_cycle * stairs / first_step_size_
                                                           : (total_size_ - in_cycle) * stairs / second_step_size_;
      scale = std::floor(position) / stairs;
    }
    return scale;
  }

  // Steps since the cycle ended, in units of decay_step_size (continuous, not floored).
  double decay_interval(int64_t iteration) const {
    return (static_cast<double>(iteration) - total_size_ + 1.0) / static_cast<double>(decay_step_size_);
  }

  double first_step_size_, second_step_size_, total_size_, step_ratio_;
  int64_t first_stair_count_, second_stair_count_;  // 0: continuous
  int64_t decay_step_size_;                         // 0: no decay after the cycle
  double min_lr_, max_lr_, decay_lr_rate_;
  bool skip_lr_decay_;
  bool cycle_momentum_;
  double min_mom_, max_mom_, decay_mom_rate_;
  bool skip_mom_decay_;
};

// LRRangeTest: min_lr * (1 + step_rate * (steps / step_size)), the quotient floored in staircase mode.
class LrRangeTest : public DeepSpeedSchedule {
 public:
  LrRangeTest(const SchedulerConfig& cfg, double base_lr)
      : DeepSpeedSchedule(cfg.last_batch_iteration, base_lr),
        min_lr_(cfg.lr_range_test_min_lr),
        step_size_(cfg.lr_range_test_step_size),
        step_rate_(cfg.lr_range_test_step_rate),
        staircase_(cfg.lr_range_test_staircase) {}

 protected:
  double lr_at(int64_t iteration) const override {
    double interval = static_cast<double>(iteration + 1) / static_cast<double>(step_size_);
    if (staircase_) interval = std::floor(interval);
    return min_lr_ * (1.0 + step_rate_ * interval);
  }

 private:
  double min_lr_;
  int64_t step_size_;
  double step_rate_;
  bool staircase_;
};

// DeepSpeed's class name for `kind`, for messages (SchedulerConfig::type is empty when built in C++).
const char* kind_name(SchedulerKind kind) {
  switch (kind) {
    case SchedulerKind::kWarmupLR: return "WarmupLR";
    case SchedulerKind::kWarmupDecayLR: return "WarmupDecayLR";
    case SchedulerKind::kWarmupCosineLR: return "WarmupCosineLR";
    case SchedulerKind::kOneCycle: return "OneCycle";
    case SchedulerKind::kLRRangeTest: return "LRRangeTest";
    case SchedulerKind::kNone:
    case SchedulerKind::kOther: break;
  }
  return "this schedule";
}

// Collects what DeepSpeed's constructors would reject (they raise ValueError or TypeError), so that a
// SchedulerConfig built in C++ gets the same checks as one read from JSON.
std::vector<std::string> check(const SchedulerConfig& cfg) {
  std::vector<std::string> errors;
  const char* name = kind_name(cfg.kind);
  const std::string p = "scheduler.params.";
  auto at_least = [&](const char* key, int64_t value, int64_t min) {
    if (value < min) {
      errors.push_back(
          fmt::format("{}{}: {} is out of range for {}; allowed: an integer >= {}", p, key, value, name, min));
    }
  };
  at_least("last_batch_iteration", cfg.last_batch_iteration, -1);
  switch (cfg.kind) {
    case SchedulerKind::kWarmupDecayLR:
    case SchedulerKind::kWarmupCosineLR:
      if (!cfg.total_num_steps) {
        errors.push_back(fmt::format("{}total_num_steps: missing; {} needs it; allowed: an integer > 0", p, name));
      }
      [[fallthrough]];
    case SchedulerKind::kWarmupLR:
      at_least("warmup_num_steps", cfg.warmup_num_steps, 1);
      break;
    case SchedulerKind::kOneCycle:
      at_least("cycle_first_step_size", cfg.cycle_first_step_size, 1);
      if (cfg.cycle_second_step_size) at_least("cycle_second_step_size", *cfg.cycle_second_step_size, 0);
      break;
    case SchedulerKind::kLRRangeTest:
      at_least("lr_range_test_step_size", cfg.lr_range_test_step_size, 1);
      break;
    case SchedulerKind::kNone:
    case SchedulerKind::kOther:
      break;
  }
  return errors;
}

}  // namespace

std::unique_ptr<LrSchedule> make_lr_schedule(const SchedulerConfig& cfg, double base_lr) {
  if (cfg.kind == SchedulerKind::kNone) return nullptr;
  if (cfg.kind == SchedulerKind::kOther) {
    throw ConfigError({fmt::format("scheduler.type: \"{}\" is not supported yet; allowed: WarmupLR, WarmupDecayLR, "
                                   "WarmupCosineLR, OneCycle, LRRangeTest",
                                   cfg.type)});
  }
  if (auto errors = check(cfg); !errors.empty()) throw ConfigError(std::move(errors));
  switch (cfg.kind) {
    case SchedulerKind::kWarmupLR:
      return std::make_unique<WarmupLr>(cfg, base_lr, cfg.warmup_max_lr.value_or(base_lr), std::nullopt);
    case SchedulerKind::kWarmupDecayLR:
      // WarmupDecayLR's own default for warmup_max_lr is 0.001, unlike WarmupLR's (the optimizer's lr).
      return std::make_unique<WarmupLr>(cfg, base_lr, cfg.warmup_max_lr.value_or(0.001), cfg.total_num_steps);
    case SchedulerKind::kWarmupCosineLR:
      return std::make_unique<WarmupCosineLr>(cfg, base_lr);
    case SchedulerKind::kOneCycle:
      return std::make_unique<OneCycle>(cfg, base_lr);
    case SchedulerKind::kLRRangeTest:
      return std::make_unique<LrRangeTest>(cfg, base_lr);
    case SchedulerKind::kNone:
    case SchedulerKind::kOther:
      break;
  }
  assert(false && "every SchedulerKind is handled above");
  return nullptr;
}

}  // namespace zerotrain::detail
