// DeepSpeed's fp16 loss scaling. The dynamic rules mirror DynamicLossScaler.update_scale (ZeRO) and
// FP16_Optimizer._update_scale (non-ZeRO); tests/golden/make_schedule_golden.py re-derives both in Python and
// tests/torch/loss_scaler_test.cc replays its overflow patterns step by step.
#include "precision/loss_scaler.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace zerotrain::detail {
namespace {

constexpr double kScaleFactor = 2.0;  // DeepSpeed's scale_factor: halve on overflow, double after a clean window

}  // namespace

LossScaler::LossScaler(const Fp16Config& cfg, bool zero_optimizer) : zero_(zero_optimizer) {
  if (!cfg.enabled) return;  // fp32 / bf16: DeepSpeed's CreateLossScaler gives a static scale of 1
  if (!std::isfinite(cfg.loss_scale) || cfg.loss_scale < 0) {
    throw ConfigError({fmt::format("fp16.loss_scale: {} is out of range; allowed: a finite number >= 0 (0 selects "
                                   "dynamic loss scaling)",
                                   cfg.loss_scale)});
  }
  if (cfg.loss_scale > 0) {
    scale_ = cfg.loss_scale;
    return;
  }
  std::vector<std::string> errors;
  if (cfg.loss_scale_window < 1) {
    errors.push_back(fmt::format("fp16.loss_scale_window: {} is out of range with dynamic loss scaling (loss_scale "
                                 "0); allowed: an integer >= 1",
                                 cfg.loss_scale_window));
  }
  if (!(cfg.min_loss_scale > 0) || !std::isfinite(cfg.min_loss_scale)) {
    errors.push_back(fmt::format("fp16.min_loss_scale: {} is out of range with dynamic loss scaling; allowed: a "
                                 "finite number > 0",
                                 cfg.min_loss_scale));
  }
  const double initial = std::ldexp(1.0, cfg.initial_scale_power);
  if (!std::isfinite(initial) || !(initial > 0)) {
    errors.push_back(fmt::format("fp16.initial_scale_power: {} is out of range (2^{} is not a finite positive "
                                 "double); allowed: -1022 to 1023, usually 8 to 32",
                                 cfg.initial_scale_power, cfg.initial_scale_power));
  }
  if (zero_optimizer && cfg.hysteresis < 1) {
    // DeepSpeed accepts this and then never lowers the scale: cur_hysteresis counts down past 1 without reaching
    // the branch that halves, so every later overflowing step is skipped forever. Refuse instead.
    errors.push_back(fmt::format("fp16.hysteresis: {} is out of range with dynamic loss scaling; allowed: an "
                                 "integer >= 1 (with {} the scale would never decrease)",
                                 cfg.hysteresis, cfg.hysteresis));
  }
  if (!errors.empty()) throw ConfigError(std::move(errors));
  dynamic_ = true;
  scale_ = initial;
  min_scale_ = cfg.min_loss_scale;
  window_ = cfg.loss_scale_window;
  hysteresis_ = hysteresis_left_ = cfg.hysteresis;
  consecutive_hysteresis_ = cfg.consecutive_hysteresis;
}

bool LossScaler::update(bool overflow) {
  if (dynamic_ && overflow) {
    if (!zero_) {
      // FP16_Optimizer._update_scale: every overflow halves, down to the floor, and nothing is raised there.
      scale_ = std::max(scale_ / kScaleFactor, min_scale_);
    } else if (hysteresis_ == 1 || hysteresis_left_ == 1) {
      // Exact equality, as DeepSpeed: a scale below the floor (2^initial_scale_power < min_loss_scale) is first
      // raised to the floor by the max() below instead of failing.
      if (scale_ == min_scale_) throw_at_minimum();
      scale_ = std::max(scale_ / kScaleFactor, min_scale_);
    } else {
      // Absorbed: the scale stays. The hysteresis is not refilled by this decrease, so after `hysteresis` overflows
      // every further overflow halves until a clean window (or, consecutive, one clean step) refills it.
      --hysteresis_left_;
    }
    last_overflow_iteration_ = iteration_;
  } else if (dynamic_) {
    if (zero_ && consecutive_hysteresis_) hysteresis_left_ = hysteresis_;
    // Clean updates since the last overflow, not counting the first one after it: the scale doubles on the
    // (window + 1)-th clean update, then every window updates while no overflow intervenes.
    const int64_t stable_interval = iteration_ - last_overflow_iteration_ - 1;
    if (stable_interval > 0 && stable_interval % window_ == 0) {
      if (zero_ && !consecutive_hysteresis_) hysteresis_left_ = hysteresis_;
      scale_ *= kScaleFactor;
    }
  }
  ++iteration_;
  if (overflow) ++skipped_steps_;
  return overflow;
}

void LossScaler::throw_at_minimum() const {
  throw std::runtime_error(fmt::format(
      "fp16 gradient overflow on optimizer step {} (counting from 1, {} skipped so far) with the loss scale already "
      "at its minimum {} (fp16.min_loss_scale) and the hysteresis spent: the gradients are inf/NaN even at the "
      "smallest allowed scale, so the model has diverged or its inputs or loss contain inf/NaN. DeepSpeed stops "
      "here too (\"Current loss scale already at minimum\"). Try: bf16 instead of fp16 (\"bf16\": {{\"enabled\": "
      "true}}, no loss scaling needed); a lower learning rate or a longer warmup; gradient clipping "
      "(\"gradient_clipping\": 1.0); checking the data and the loss for inf/NaN; a larger fp16.hysteresis or "
      "\"consecutive_hysteresis\": true to ride out isolated overflows; or, if fp16.min_loss_scale is above 1, a "
      "smaller one.",
      iteration_ + 1, skipped_steps_, min_scale_));
}

LossScaler::State LossScaler::state() const {
  return State{.scale = scale_,
               .steps_since_overflow = iteration_ - last_overflow_iteration_,
               .iteration = iteration_,
               .last_overflow_iteration = last_overflow_iteration_,
               .hysteresis_left = hysteresis_left_,
               .skipped_steps = skipped_steps_};
}

void LossScaler::load_state(const State& s) {
  auto bad = [&](const std::string& what) {
    throw std::invalid_argument(fmt::format(
        "loss scaler state cannot be restored: {} (scale {}, iteration {}, last_overflow_iteration {}, "
        "steps_since_overflow {}, hysteresis_left {}, skipped_steps {})",
        what, s.scale, s.iteration, s.last_overflow_iteration, s.steps_since_overflow, s.hysteresis_left,
        s.skipped_steps));
  };
  if (!std::isfinite(s.scale) || !(s.scale > 0)) bad("the scale must be finite and > 0");
  if (s.iteration < 0) bad("iteration must be >= 0");
  if (s.last_overflow_iteration < -1 || s.last_overflow_iteration >= s.iteration) {
    bad("last_overflow_iteration must be in [-1, iteration)");
  }
  if (s.steps_since_overflow != s.iteration - s.last_overflow_iteration) {
    bad("steps_since_overflow must equal iteration - last_overflow_iteration");
  }
  if (s.skipped_steps < 0 || s.skipped_steps > s.iteration) bad("skipped_steps must be in [0, iteration]");
  if (dynamic_ && zero_ && s.hysteresis_left < 1) bad("hysteresis_left must be >= 1");
  if (dynamic_) {
    scale_ = s.scale;
    hysteresis_left_ = zero_ ? s.hysteresis_left : hysteresis_;
  }
  iteration_ = s.iteration;
  last_overflow_iteration_ = s.last_overflow_iteration;
  skipped_steps_ = s.skipped_steps;
}

}  // namespace zerotrain::detail
