// How much host CPU time zerotrain's own code takes: the engine's hooks, gathers, reductions, bookkeeping and the
// kernel launches it makes, on every thread of this process (autograd's worker threads run its hooks), excluding the
// model's forward and backward, which the engine pauses around. Thread CPU time, so waiting for a GPU under
// cudaDeviceScheduleBlockingSync costs none; under the default spin-wait, the optimizer step's wait for the gradient
// norm is counted. bench/micro_bench.cc (`engine_cpu`) reports it per step against the step time.
#pragma once

namespace zerotrain {

// Seconds of host CPU time spent in engine code in this process so far.
double engine_host_cpu_seconds();

}  // namespace zerotrain
