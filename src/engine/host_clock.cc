#include "engine/host_clock.h"

#include <atomic>
#include <chrono>
#include <cstdint>

#include "zerotrain/profile.h"

namespace zerotrain {
namespace detail {
namespace {

std::atomic<int64_t> g_total_ns{0};
std::atomic<bool> g_enabled{false};
thread_local int t_depth = 0;  // counted scopes open on this thread (0 while paused)
thread_local int64_t t_start_ns = 0;

// The steady clock (vDSO: ~20 ns a read, no system call). The thread's CPU clock would also leave out a wait that
// blocks, but it is a system call (~0.4 us a read, two per scope): on small parameters that was a fifth of the hook
// it measured. Waits inside engine code are paused explicitly instead (the optimizer step's wait for the gradient
// norm: zero_optimizer.cc).
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

HostScope::HostScope() : counted_(g_enabled.load(std::memory_order_relaxed)) {
  if (counted_ && t_depth++ == 0) t_start_ns = now_ns();
}

HostScope::~HostScope() {
  if (counted_ && --t_depth == 0) g_total_ns.fetch_add(now_ns() - t_start_ns, std::memory_order_relaxed);
}

HostPause::HostPause() : saved_depth_(t_depth) {
  if (saved_depth_ > 0) g_total_ns.fetch_add(now_ns() - t_start_ns, std::memory_order_relaxed);
  t_depth = 0;  // engine hooks reached from the paused code open outermost scopes of their own
}

HostPause::~HostPause() {
  t_depth = saved_depth_;
  if (saved_depth_ > 0) t_start_ns = now_ns();
}

}  // namespace detail

double engine_host_cpu_seconds() { return static_cast<double>(detail::g_total_ns.load()) * 1e-9; }

void set_engine_host_accounting(bool enabled) { detail::g_enabled.store(enabled); }

}  // namespace zerotrain
