// Monitor events as DeepSpeed's monitors receive them (monitor/monitor.py write_events), and a sink for them: how the
// Python package's Weights & Biases and Comet monitors get the engine's events (C++ has no client for either).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace zerotrain {

// One event: a name, its value, and the step as DeepSpeed counts it, in trained samples (global_samples).
struct MonitorEvent {
  std::string name;  // "Train/Samples/train_loss"
  double value = 0;
  int64_t step = 0;
};

// Receives rank 0's events where the engine writes its own monitors' (after each optimizer step and, with
// wall_clock_breakdown, the timers'). An exception it throws reaches the caller of Engine::step.
using MonitorSink = std::function<void(const std::vector<MonitorEvent>&)>;

}  // namespace zerotrain
