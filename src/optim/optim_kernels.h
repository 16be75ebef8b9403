// Fused CUDA kernels of the shard optimizers (src/optim/*_kernels.cu). Each launcher updates a whole flat fp32
// shard on `stream` with grid-stride loops and float4 loads where the arrays are 16-byte aligned. The caller has made
// the arrays' device current and checked them: (n,) fp32, contiguous, one device.
//
// The interface is raw pointers so that the .cu files include no ATen header: that keeps each one a few seconds of
// nvcc instead of half a minute. Only built with CUDA (ZEROTRAIN_WITH_CUDA).
//
// Hyperparameters arrive as floats that the host computed in double (1 - beta, bias corrections, step sizes), so
// the device does fp32 arithmetic only, as DeepSpeed's kernels do.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "optim/kernel_args.h"

namespace zerotrain::detail {

// How the Adam kernel walks memory (bench/micro_bench.cc compares them; the defaults are the fastest measured):
// float4 groups per thread and iteration, streaming (evict-first) cache hints, and a grid of exactly the resident
// blocks (occupancy) instead of 8 blocks per SM.
// Measured on H200 (1e9 elements, docs/performance.md): unroll 4, plain loads, occupancy grid 94.7% of a device
// copy's bandwidth (93.6% with the bf16 copy); streaming hints cost 7% with the copy.
struct AdamLaunch {
  int unroll = 4;  // 1, 2, 4 or 8
  bool streaming = false;
  bool occupancy_grid = true;
};

// param, exp_avg, exp_avg_sq updated in place; grad read only; `copy` receives the updated param, cast.
void adam_step_cuda(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                    const AdamKernelArgs& args, cudaStream_t stream, ParamCopy copy = {}, AdamLaunch launch = {});

// torch.optim.SGD.
struct SgdKernelArgs {
  float lr, weight_decay, momentum, one_minus_dampening;
  bool nesterov;
  bool first_step;  // the momentum buffer takes the gradient itself (torch's "buf is None")
};
// momentum_buffer: null when momentum == 0 (plain SGD, no state).
void sgd_step_cuda(float* param, const float* grad, float* momentum_buffer, int64_t n, const SgdKernelArgs& args,
                   cudaStream_t stream);

// DeepSpeed FusedLion (csrc/lion/multi_tensor_lion.cu).
struct LionKernelArgs {
  float lr, beta1, one_minus_beta1, beta2, one_minus_beta2;
  float after_decay;  // 1 - lr * weight_decay
};
void lion_step_cuda(float* param, const float* grad, float* exp_avg, int64_t n, const LionKernelArgs& args,
                    cudaStream_t stream);

// torch.optim.Adagrad.
struct AdagradKernelArgs {
  float clr;  // lr / (1 + (step - 1) * lr_decay)
  float weight_decay, eps;
};
void adagrad_step_cuda(float* param, const float* grad, float* sum, int64_t n, const AdagradKernelArgs& args,
                       cudaStream_t stream);

// LAMB over a shard cut into chunks: each chunk is a run of at most kLambChunk elements of one bucket (a model
// parameter's local piece, or the shard's padding), so one block reduces one chunk's norms without atomics.
// Buckets 0..P-1 are the model's parameters, bucket P the padding. Device arrays, built once by lamb.cc.
struct LambLayoutCuda {
  const int64_t* chunk_begin;           // (C,): first element of each chunk
  const int64_t* chunk_end;             // (C,): one past its last element
  const int32_t* chunk_bucket;          // (C,): its bucket
  const int32_t* bucket_chunk_offsets;  // (P + 2,): CSR over bucket_chunks, one row per bucket
  const int32_t* bucket_chunks;         // (C,): chunk ids grouped by bucket
  int64_t num_chunks;                   // C
  int64_t num_params;                   // P
};
constexpr int64_t kLambChunk = 16384;

struct LambKernelArgs {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay;
  float step_size;  // lr * sqrt(1 - beta2^t) / (1 - beta1^t), or lr without bias correction
  float min_coeff, max_coeff;
  bool eps_inside_sqrt;
};
// Phase 1 (two launches): updates exp_avg / exp_avg_sq and writes the local squared norms of every bucket into
// `norms` ((2P + 2,): sum w^2 of parameter q at [q], sum u^2 at [P + q], the padding's at [2P], [2P + 1]),
// u = exp_avg / denom + weight_decay * param. `partials` ((C, 2)) is scratch.
void lamb_moments_and_norms_cuda(const float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                                 float* partials, float* norms, const LambLayoutCuda& layout,
                                 const LambKernelArgs& args, cudaStream_t stream);
// Phase 2 (one launch), after `norms` holds the global sums: param -= step_size * trust_ratio(bucket) * u.
void lamb_apply_cuda(float* param, const float* exp_avg, const float* exp_avg_sq, const float* norms,
                     const LambLayoutCuda& layout, const LambKernelArgs& args, cudaStream_t stream);

}  // namespace zerotrain::detail
