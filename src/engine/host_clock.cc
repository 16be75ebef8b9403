#include "engine/host_clock.h"

#include <time.h>

#include <atomic>
#include <cstdint>

#include "zerotrain/profile.h"

namespace zerotrain {
namespace detail {
namespace {

std::atomic<int64_t> g_total_ns{0};
std::atomic<bool> g_enabled{false};
thread_local int t_depth = 0;  // counted scopes open on this thread (0 while paused)
thread_local int64_t t_start_ns = 0;

int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

HostScope::HostScope() : counted_(g_enabled.load(std::memory_order_relaxed)) {
  if (counted_ && t_depth++ == 0) t_start_ns = thread_cpu_ns();
}

HostScope::~HostScope() {
  if (counted_ && --t_depth == 0) g_total_ns.fetch_add(thread_cpu_ns() - t_start_ns, std::memory_order_relaxed);
}

HostPause::HostPause() : saved_depth_(t_depth) {
  if (saved_depth_ > 0) g_total_ns.fetch_add(thread_cpu_ns() - t_start_ns, std::memory_order_relaxed);
  t_depth = 0;  // engine hooks reached from the paused code open outermost scopes of their own
}

HostPause::~HostPause() {
  t_depth = saved_depth_;
  if (saved_depth_ > 0) t_start_ns = thread_cpu_ns();
}

}  // namespace detail

double engine_host_cpu_seconds() { return static_cast<double>(detail::g_total_ns.load()) * 1e-9; }

void set_engine_host_accounting(bool enabled) { detail::g_enabled.store(enabled); }

}  // namespace zerotrain
