// Loss scaling for fp16 with DeepSpeed's semantics (deepspeed/runtime/fp16/loss_scaler.py: LossScaler,
// DynamicLossScaler; deepspeed/runtime/fp16/fused_optimizer.py: FP16_Optimizer._update_scale): static scale, or
// dynamic with initial_scale_power, loss_scale_window, hysteresis, consecutive_hysteresis and min_loss_scale.
//
// The dynamic scale starts at 2^initial_scale_power, halves on overflow and doubles on the (window + 1)-th clean
// step after the last overflow (DeepSpeed counts stable_interval = cur_iter - last_overflow_iter - 1 and doubles
// when it is a positive multiple of the window). The ZeRO optimizers (stage >= 1) use DynamicLossScaler:
// `hysteresis` overflows are absorbed before the first halving, the hysteresis refills only when the scale doubles
// (or after every clean step with consecutive_hysteresis), and an overflow at min_loss_scale with the hysteresis
// spent is fatal. The non-ZeRO fp16 optimizer (stage 0) halves on every overflow and stays at the floor silently.
#pragma once

#include <cstdint>

#include "zerotrain/config.h"

namespace zerotrain::detail {

class LossScaler {
 public:
  // `zero_optimizer`: DeepSpeed's ZeRO (stage >= 1) semantics (hysteresis, error at the floor) rather than the
  // non-ZeRO fp16 optimizer's. Both start at 2^initial_scale_power. (DeepSpeed's ZeRO path started at 2^32 with
  // hysteresis 1 when the config set no dynamic-scaling key, until PR #6976 of June 2025 made
  // DeepSpeedFP16Config.dynamic_loss_scale_args always pass the configured values; Fp16Config::dynamic_args_given
  // therefore changes nothing here.) A disabled fp16 config gives a static scale of 1.
  // Throws ConfigError for dynamic settings DeepSpeed cannot run with: loss_scale_window < 1, min_loss_scale <= 0,
  // 2^initial_scale_power not a finite positive double, and (ZeRO only) hysteresis < 1, with which DeepSpeed never
  // lowers the scale and skips every later step that overflows.
  LossScaler(const Fp16Config& cfg, bool zero_optimizer);

  double scale() const { return scale_; }            // multiply the loss by this before backward
  bool dynamic() const { return dynamic_; }
  // Records the outcome of one optimizer step (overflow = any inf/NaN gradient, all ranks agreed). Returns true
  // when the step must be skipped (overflow; static scales skip too, as DeepSpeed does). Updates the scale as
  // DeepSpeed's update_scale does. Throws std::runtime_error with an actionable message exactly where DeepSpeed
  // raises "Current loss scale already at minimum - cannot decrease scale anymore": ZeRO, dynamic, an overflow
  // while scale() == min_loss_scale and the hysteresis is spent (hysteresis 1, or already worn down to 1). The
  // state is then left as it was, as DeepSpeed raises before touching it.
  bool update(bool overflow);
  int64_t skipped_steps() const { return skipped_steps_; }  // overflowed steps so far

  // For checkpoints: the whole state, restorable exactly. Unlike DeepSpeed, which pickles the scaler object and so
  // also restores the old run's window, hysteresis and floor, the settings come from the current config; a static
  // scaler keeps its configured scale and restores only the counters. load_state throws std::invalid_argument for
  // a state no scaler can reach (e.g. inconsistent counters, a non-positive scale).
  struct State {
    double scale;
    int64_t steps_since_overflow;  // DeepSpeed's cur_iter - last_overflow_iter bookkeeping
    int64_t iteration;
    int64_t last_overflow_iteration;
    int hysteresis_left;
    int64_t skipped_steps;
  };
  State state() const;
  void load_state(const State& s);

 private:
  [[noreturn]] void throw_at_minimum() const;

  bool zero_ = true;  // DynamicLossScaler semantics (hysteresis, error at the floor)
  bool dynamic_ = false;
  double scale_ = 1.0;
  double min_scale_ = 1.0;
  int64_t window_ = 1000;
  int hysteresis_ = 2;       // DeepSpeed's delayed_shift
  int hysteresis_left_ = 2;  // DeepSpeed's cur_hysteresis
  bool consecutive_hysteresis_ = false;
  int64_t iteration_ = 0;                  // DeepSpeed's cur_iter: updates so far
  int64_t last_overflow_iteration_ = -1;  // DeepSpeed's last_overflow_iter
  int64_t skipped_steps_ = 0;
};

}  // namespace zerotrain::detail
