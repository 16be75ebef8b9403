// A sampling profiler of the process's host CPU time, for machines without perf, gdb or Nsight Systems (the GPU
// machines: bench/gpu/run.sh, ZT_SAMPLE=1). SIGPROF fires every `period_us` of process CPU time (all threads
// together); the handler stores the interrupted thread's call stack (backtrace(3)). report() symbolizes the
// stacks with dladdr (exported symbols only: a hidden function shows as the nearest exported one before it, a
// stripped library as its file name) and prints, of all samples:
//   self       the innermost frame's function (where the CPU was);
//   inclusive  functions on the stack (each counted once per sample);
//   zerotrain  the innermost zerotrain:: frame (what engine code the time was spent under; "(none)": the model,
//              autograd's own work, or the benchmark loop);
//   library    the innermost frame's shared object.
#pragma once

namespace zt_bench {

void sampler_start(int period_us);
void sampler_stop();
// Prints the `top` rows of each table, each line prefixed with "SAMPLE <title>", then forgets the samples.
void sampler_report(const char* title, int top);

}  // namespace zt_bench
