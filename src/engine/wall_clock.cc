#include "engine/wall_clock.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <fmt/format.h>

namespace zerotrain::detail {

const char* WallClock::name(Phase phase, bool global) {
  static const char* const kMicro[kPhases] = {"fwd_microstep", "bwd_microstep", "bwd_inner_microstep",
                                              "bwd_allreduce_microstep", "step_microstep"};
  static const char* const kGlobal[kPhases] = {"fwd", "bwd", "bwd_inner", "bwd_allreduce", "step"};
  return global ? kGlobal[phase] : kMicro[phase];
}

WallClock::WallClock(c10::Device device, bool micro) : device_(device), micro_(micro) {}

void WallClock::start(Timer& t) {
  if (t.started) return;  // a nested entry (an engine call inside the model's forward) keeps the outer start
  t.started = true;
  t.ran = true;
  t.open = std::make_unique<Record>();
  if (device_.is_cpu()) {
    t.host_begin = std::chrono::steady_clock::now();
    return;
  }
  const auto* impl = c10::impl::getDeviceGuardImpl(device_.type());
  t.open->begin.emplace(device_.type(), c10::EventFlag::BACKEND_DEFAULT);  // timing enabled
  t.open->begin->record(impl->getStream(device_));
}

void WallClock::stop(Timer& t) {
  if (!t.started) return;
  t.started = false;
  if (device_.is_cpu()) {
    t.open->host_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t.host_begin).count();
  } else {
    const auto* impl = c10::impl::getDeviceGuardImpl(device_.type());
    t.open->end.emplace(device_.type(), c10::EventFlag::BACKEND_DEFAULT);
    t.open->end->record(impl->getStream(device_));
  }
  t.records.push_back(std::move(t.open));
}

void WallClock::start(Phase phase) {
  if (micro_) start(timers_[0][phase]);
  start(timers_[1][phase]);
}

void WallClock::stop(Phase phase) {
  if (micro_) stop(timers_[0][phase]);
  stop(timers_[1][phase]);
}

double WallClock::elapsed(Timer& t) {
  double ms = 0;
  for (const auto& r : t.records) {
    if (r->begin) {
      r->end->synchronize();
      ms += r->begin->elapsedTime(*r->end);
    } else {
      ms += r->host_seconds * 1e3;
    }
  }
  return ms;
}

std::string WallClock::log(bool global) {
  std::string line;
  for (int p = 0; p < kPhases; ++p) {
    Timer& t = timers_[global ? 1 : 0][p];
    if (!t.ran) continue;
    line += fmt::format(" | {}: {:.2f}", name(static_cast<Phase>(p), global), elapsed(t));
    t.records.clear();
    t.ran = t.started;  // a timer running through the log keeps counting
  }
  return line.empty() ? line : "time (ms)" + line;
}

std::map<std::string, double> WallClock::elapsed_ms() {
  std::map<std::string, double> out;
  for (int g = 0; g < 2; ++g) {
    for (int p = 0; p < kPhases; ++p) {
      if (timers_[g][p].ran) out[name(static_cast<Phase>(p), g == 1)] = elapsed(timers_[g][p]);
    }
  }
  return out;
}

}  // namespace zerotrain::detail
