// LAMB kernels with DeepSpeed FusedLamb's arithmetic (csrc/lamb/fused_lamb_cuda_kernel.cu), for a whole shard at
// once instead of one parameter at a time. A trust ratio needs its parameter's norms over all elements on all
// ranks, so a step is: (1) moments and per-chunk partial norms, (2) per-bucket sums, [the caller all-reduces the
// sums across ranks], (3) the update. Three launches per step whatever the parameter count (DeepSpeed launches
// three per parameter). Partial sums are combined in a fixed order, never with atomics, so a step is bitwise
// reproducible.
#include "optim/kernel_utils.cuh"
#include "optim/optim_kernels.h"

namespace zerotrain::detail {
namespace {

// Where bucket q's sums live in the norms vector: parameters first (w then u, so the first 2P entries are the
// all-reduced part), the padding bucket q == P last.
__device__ __forceinline__ int64_t w_index(int64_t q, int64_t num_params) {
  return q < num_params ? q : 2 * num_params;
}
__device__ __forceinline__ int64_t u_index(int64_t q, int64_t num_params) {
  return q < num_params ? num_params + q : 2 * num_params + 1;
}

__device__ __forceinline__ float lamb_denom(float v, const LambKernelArgs& a) {
  return a.eps_inside_sqrt ? sqrtf(v + a.eps) : sqrtf(v) + a.eps;
}

// o = {exp_avg, exp_avg_sq}, x = {param, grad}; accumulates this thread's sum of w^2 and u^2.
struct LambMomentsOp {
  LambKernelArgs a;
  float w2 = 0.f, u2 = 0.f;
  __device__ __forceinline__ void operator()(float (&o)[2], const float (&x)[2]) {
    const float p = x[0], g = x[1];
    const float m = a.beta1 * o[0] + a.one_minus_beta1 * g;
    const float v = a.beta2 * o[1] + a.one_minus_beta2 * g * g;
    const float u = m / lamb_denom(v, a) + a.weight_decay * p;
    w2 += p * p;
    u2 += u * u;
    o[0] = m;
    o[1] = v;
  }
};

// o = {param}, x = {exp_avg, exp_avg_sq}
struct LambApplyOp {
  LambKernelArgs a;
  float scale;  // step_size * trust ratio of the chunk's bucket
  __device__ __forceinline__ void operator()(float (&o)[1], const float (&x)[2]) const {
    const float p = o[0];
    const float u = x[0] / lamb_denom(x[1], a) + a.weight_decay * p;
    o[0] = p - scale * u;
  }
};

__global__ void __launch_bounds__(cuda::kThreads)
    lamb_moments_kernel(cuda::Arrays<2, 2> arrays, const int64_t* chunk_begin, const int64_t* chunk_end,
                        int64_t num_chunks, bool vectorize, LambKernelArgs args, float2* partials) {
  for (int64_t c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    LambMomentsOp op{args};
    cuda::for_each_element(arrays, chunk_begin[c], chunk_end[c], vectorize, threadIdx.x, blockDim.x, op);
    const float2 sums = cuda::block_sum2(op.w2, op.u2);
    if (threadIdx.x == 0) partials[c] = sums;
  }
}

// One warp per bucket: sums its chunks' partials in double (a parameter may span thousands of chunks).
__global__ void __launch_bounds__(cuda::kThreads)
    lamb_bucket_norms_kernel(const float2* partials, const int32_t* bucket_chunk_offsets, const int32_t* bucket_chunks,
                             int64_t num_params, float* norms) {
  const int lane = threadIdx.x % 32;
  const int64_t num_warps = int64_t{gridDim.x} * blockDim.x / 32;
  for (int64_t q = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) / 32; q <= num_params; q += num_warps) {
    double w = 0, u = 0;
    for (int k = bucket_chunk_offsets[q] + lane; k < bucket_chunk_offsets[q + 1]; k += 32) {
      const float2 s = partials[bucket_chunks[k]];
      w += s.x;
      u += s.y;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      w += __shfl_down_sync(0xffffffffu, w, offset);
      u += __shfl_down_sync(0xffffffffu, u, offset);
    }
    if (lane == 0) {
      norms[w_index(q, num_params)] = static_cast<float>(w);
      norms[u_index(q, num_params)] = static_cast<float>(u);
    }
  }
}

__global__ void __launch_bounds__(cuda::kThreads)
    lamb_apply_kernel(cuda::Arrays<1, 2> arrays, const int64_t* chunk_begin, const int64_t* chunk_end,
                      const int32_t* chunk_bucket, int64_t num_chunks, int64_t num_params, bool vectorize,
                      LambKernelArgs args, const float* norms) {
  for (int64_t c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    const int64_t q = chunk_bucket[c];
    const float w = sqrtf(norms[w_index(q, num_params)]);
    const float u = sqrtf(norms[u_index(q, num_params)]);
    // DeepSpeed: ratio 1 when either norm is zero, else clamped to [min_coeff, max_coeff] (NaN stays NaN).
    float coeff = 1.f;
    if (w != 0.f && u != 0.f) {
      coeff = w / u;
      if (coeff > args.max_coeff) coeff = args.max_coeff;
      if (coeff < args.min_coeff) coeff = args.min_coeff;
    }
    const LambApplyOp op{args, args.step_size * coeff};
    cuda::for_each_element(arrays, chunk_begin[c], chunk_end[c], vectorize, threadIdx.x, blockDim.x, op);
  }
}

}  // namespace

void lamb_moments_and_norms_cuda(const float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                                 float* partials, float* norms, const LambLayoutCuda& layout,
                                 const LambKernelArgs& args, cudaStream_t stream) {
  if (layout.num_chunks > 0) {
    const cuda::Arrays<2, 2> arrays{{exp_avg, exp_avg_sq}, {param, grad}};
    lamb_moments_kernel<<<cuda::capped_blocks(layout.num_chunks), cuda::kThreads, 0, stream>>>(
        arrays, layout.chunk_begin, layout.chunk_end, layout.num_chunks, cuda::all_aligned16(arrays), args,
        reinterpret_cast<float2*>(partials));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  // Runs even for an empty shard: every bucket's sums are written (zeros without chunks).
  constexpr int kWarpsPerBlock = cuda::kThreads / 32;
  lamb_bucket_norms_kernel<<<cuda::capped_blocks((layout.num_params + kWarpsPerBlock) / kWarpsPerBlock), cuda::kThreads,
                             0, stream>>>(reinterpret_cast<const float2*>(partials), layout.bucket_chunk_offsets,
                                          layout.bucket_chunks, layout.num_params, norms);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void lamb_apply_cuda(float* param, const float* exp_avg, const float* exp_avg_sq, const float* norms,
                     const LambLayoutCuda& layout, const LambKernelArgs& args, cudaStream_t stream) {
  if (layout.num_chunks == 0) return;
  const cuda::Arrays<1, 2> arrays{{param}, {exp_avg, exp_avg_sq}};
  lamb_apply_kernel<<<cuda::capped_blocks(layout.num_chunks), cuda::kThreads, 0, stream>>>(
      arrays, layout.chunk_begin, layout.chunk_end, layout.chunk_bucket, layout.num_chunks, layout.num_params,
      cuda::all_aligned16(arrays), args, norms);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace zerotrain::detail
