// How much host time zerotrain's own code takes: the engine's hooks, gathers, reductions, bookkeeping and the kernel
// launches it makes, on every thread of this process (autograd's worker threads run its hooks), excluding the
// model's forward and backward, which the engine pauses around, and the optimizer step's wait for the device (the
// gradient norm). Time on the steady clock inside engine code. bench/micro_bench.cc (`engine_cpu`) reports it per
// step against the step time.
#pragma once

namespace zerotrain {

// Seconds of host time spent in engine code in this process while the accounting was on.
double engine_host_cpu_seconds();

// Turns the accounting on or off; off by default: every engine entry point and gradient hook then reads the steady
// clock twice (~20 ns each through the vDSO).
void set_engine_host_accounting(bool enabled);

}  // namespace zerotrain
