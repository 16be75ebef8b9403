// DeepSpeed's engine timers (`wall_clock_breakdown: true`; utils/timer.py, runtime/engine.py EngineTimers).
//
// Each micro-step times forward (begin_forward .. end_forward), backward (all of Engine::backward), its two parts
// bwd_inner (autograd's backward of the model, the overlapped reductions launched from its hooks included) and
// bwd_allreduce (what is left of the reduction after autograd returns: waiting for and landing the gradients), and
// step. Each phase has a micro timer (fwd_microstep, ...: printed and reset after every step() call) and a global
// one (fwd, ...: summed over the micro-steps of an optimizer step, printed and reset at the accumulation boundary),
// printed by rank 0 as DeepSpeed prints them:
//   [Rank 0] time (ms) | fwd_microstep: 12.31 | bwd_microstep: 30.02 | bwd_inner_microstep: 28.90 | ...
// On a GPU the times are CUDA events recorded on the current stream at each start and stop (read when printed, so
// a step's figures wait for its device work), on a CPU the steady clock.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/Event.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zerotrain::detail {

class WallClock {
 public:
  enum Phase : int { kForward, kBackward, kBackwardInner, kBackwardReduce, kStep, kPhases };

  // micro = false: only the global timers (the flops profiler's, without wall_clock_breakdown).
  WallClock(c10::Device device, bool micro);

  void start(Phase phase);
  void stop(Phase phase);
  // The line of the micro timers, then reset them; of the global timers (`global`), then reset them. Timers never
  // started are left out (as DeepSpeed's Timers.log does); "" when none ran.
  std::string log(bool global);
  // Milliseconds of every timer that ran since its last reset, by DeepSpeed's name, without resetting.
  std::map<std::string, double> elapsed_ms();
  // DeepSpeed's names: "fwd_microstep", ..., "fwd", ...
  static const char* name(Phase phase, bool global);

 private:
  struct Record {
    std::optional<c10::Event> begin, end;  // device timers
    double host_seconds = 0;              // CPU timers
  };
  struct Timer {
    bool started = false;
    bool ran = false;  // started since the last reset
    std::chrono::steady_clock::time_point host_begin;
    std::unique_ptr<Record> open;
    std::vector<std::unique_ptr<Record>> records;
  };
  double elapsed(Timer& t);
  void start(Timer& t);
  void stop(Timer& t);

  c10::Device device_;
  bool micro_;
  Timer timers_[2][kPhases];  // [global][phase]
};

}  // namespace zerotrain::detail
