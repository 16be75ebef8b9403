// The micro-benchmarks' shared pieces (bench/micro_bench.cc has the overview): timing, arguments, and the
// entry point of each benchmark, one file per group (micro_bench.cc: opt, layers, cpu_adam; micro_comm.cc: comm;
// micro_engine_cpu.cc: engine_cpu, unit_floor).
#pragma once

// NCCL proxy thread spins in the measurement; every stage still runs its full bookkeeping (hooks, buckets, units).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/record_function.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#ifdef ZEROTRAIN_BENCH_NCCL
#include <dlfcn.h>
#include <nccl.h>
#endif

#include "host_sampler.h"
#include "models/layers.h"
#include "optim/host_kernels.h"
#include "optim/optim_kernels.h"
#include "optim/shard_optimizer.h"
#include "traffic_kernels.h"
#include "zero/flat_layout.h"
#include "zero/zero_optimizer.h"
#include "zerotrain/comm.h"
#include "zerotrain/engine.h"
#include "zerotrain/profile.h"
#include "zerotrain/segmented.h"

namespace zt_micro {

using zerotrain::detail::FlatLayout;
using zerotrain::detail::ParamCopyRange;
using zerotrain::detail::ParamPlacement;
using zerotrain::detail::StepArgs;
using zerotrain::detail::ZeroOptimizer;


// Seconds per call of fn: `reps` calls between two CUDA events on the current stream, best of `trials`.
double time_cuda(const std::function<void()>& fn, int reps = 10, int trials = 5);
// The value after `name` among argv[2..], else `def`.
std::string arg(int argc, char** argv, const std::string& name, const std::string& def);
// A one-rank AdamW config in `precision` ("bf16", "fp16"; anything else: that section enabled).
zerotrain::Config adamw_config(const char* precision);

int bench_opt(int64_t n);
int bench_comm();
int bench_engine_cpu(int64_t blocks, int64_t width, int64_t tokens, int count_ops, int64_t persistence,
                     const std::string& stages, const std::string& comm, int sample_us, const std::string& zero_extra);
int bench_unit_floor(int64_t units);
int bench_layers();
int bench_cpu_adam(int64_t n);

}  // namespace zt_micro
