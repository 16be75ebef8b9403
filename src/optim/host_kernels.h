// The shard optimizers' CPU kernels: what optimizer offload (ZeRO-Offload) runs on the host each step, and what
// CPU training runs. One pass over memory per step, as the CUDA kernels (optim_kernels.h): the gradient's
// unscale-and-clip multiplier, the update, and the updated parameters written in the training dtype for the device.
//
// Arithmetic: the CUDA kernel's update (DeepSpeed FusedAdam's rule) arranged as DeepSpeed's CPU Adam arranges it (the
// bias corrections folded into a step size and a reciprocal square root: one division per element), in fp32 with no
// contraction into fused multiply-adds, so every x86 machine and SIMD width (the loop is built for AVX-512, AVX2 and the
// baseline, picked at load time) gives the same bits. Threads: at::get_num_threads() (OMP_NUM_THREADS; `zerotrain launch` shares the node's cores
// among its ranks), each a contiguous slice of the shard.
#pragma once

#include <cstdint>
#include <functional>

#include "optim/kernel_args.h"

namespace zerotrain::detail {

// param, exp_avg, exp_avg_sq updated in place; grad read only; `copy` (host memory) receives the updated param,
// cast (bf16: round to nearest even, as ATen).
void adam_step_host(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                    const AdamKernelArgs& args, ParamCopy copy = {});

// Runs fn(begin, end) over [0, n) split into at most at::get_num_threads() slices of at least `grain` elements
// (multiples of 64), on this thread and short-lived helpers; rethrows the first exception.
void host_parallel(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace zerotrain::detail
