// Accounting behind zerotrain::engine_host_cpu_seconds() (include/zerotrain/profile.h). Engine entry points open a
// HostScope; only the outermost scope of a thread counts, so nested entry points never count twice. Model code called
// from inside a scope (a segment's forward, autograd's backward) runs under a HostPause: not counted, while engine
// hooks it reaches open scopes of their own and count. All of it is off (one relaxed load per scope) unless
// set_engine_host_accounting(true).
#pragma once

namespace zerotrain::detail {

class HostScope {
 public:
  HostScope();
  ~HostScope();
  HostScope(const HostScope&) = delete;
  HostScope& operator=(const HostScope&) = delete;

 private:
  bool counted_;  // the accounting was on when the scope opened (set_engine_host_accounting)
};

class HostPause {
 public:
  HostPause();
  ~HostPause();
  HostPause(const HostPause&) = delete;
  HostPause& operator=(const HostPause&) = delete;

 private:
  int saved_depth_;
};

}  // namespace zerotrain::detail
