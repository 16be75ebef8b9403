// How much host CPU time zerotrain's own code takes: the engine's hooks, gathers, reductions, bookkeeping and the
// kernel launches it makes, on every thread of this process (autograd's worker threads run its hooks), excluding the
// model's forward and backward, which the engine pauses around. Thread CPU time, so waiting for a GPU under
// cudaDeviceScheduleBlockingSync costs none; under the default spin-wait, the optimizer step's wait for the gradient
// norm is counted. bench/micro_bench.cc (`engine_cpu`) reports it per step against the step time.
#pragma once

namespace zerotrain {

// Seconds of host CPU time spent in engine code in this process while the accounting was on.
double engine_host_cpu_seconds();

// Turns the accounting on or off; off by default, because every engine entry point and gradient hook then reads
// the thread's CPU clock twice (a system call, ~0.4 us each: a tenth to a quarter of a small parameter's hook).
void set_engine_host_accounting(bool enabled);

}  // namespace zerotrain
