// The optimizer step's memory-traffic floor for micro_bench opt: a kernel that moves exactly the Adam step's bytes
// (reads param, grad, exp_avg, exp_avg_sq; writes param, exp_avg, exp_avg_sq; optionally a bf16 copy of param) with
// one add per value instead of Adam's arithmetic, walked the way the Adam kernel walks memory (float4 per array,
// four groups per thread and iteration, one wave of resident blocks). What it reaches against a device copy is what
// any kernel with Adam's mix of 16 bytes read to 12 (or 14) written can reach on this GPU.
#include <c10/cuda/CUDAException.h>
#include <cuda_bf16.h>

#include <algorithm>

#include "optim/kernel_utils.cuh"
#include "traffic_kernels.h"

namespace zerotrain::bench {
namespace {

using detail::cuda::kThreads;  // the Adam kernel's block size and SM count helper (src/optim/kernel_utils.cuh)
constexpr int kUnroll = 4;

struct alignas(8) Bf16x4 {
  __nv_bfloat16 v[4];
};

__device__ __forceinline__ void add4(float4& a, const float4& b) {
  a.x += b.x;
  a.y += b.y;
  a.z += b.z;
  a.w += b.w;
}

template <bool kCopy>
__global__ void __launch_bounds__(kThreads)
    traffic_kernel(float4* __restrict__ p, const float4* __restrict__ g, float4* __restrict__ m,
                   float4* __restrict__ v, Bf16x4* __restrict__ copy, int64_t groups) {
  const int64_t thread = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const int64_t num_threads = int64_t{gridDim.x} * blockDim.x;
  for (int64_t base = thread; base < groups; base += num_threads * kUnroll) {
    float4 pv[kUnroll], gv[kUnroll], mv[kUnroll], vv[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int64_t q = base + k * num_threads;
      if (q < groups) {
        pv[k] = p[q];
        gv[k] = g[q];
        mv[k] = m[q];
        vv[k] = v[q];
      }
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int64_t q = base + k * num_threads;
      if (q >= groups) continue;
      add4(pv[k], gv[k]);
      add4(mv[k], gv[k]);
      add4(vv[k], gv[k]);
      p[q] = pv[k];
      m[q] = mv[k];
      v[q] = vv[k];
      if constexpr (kCopy) {
        copy[q] = Bf16x4{{__float2bfloat16_rn(pv[k].x), __float2bfloat16_rn(pv[k].y), __float2bfloat16_rn(pv[k].z),
                          __float2bfloat16_rn(pv[k].w)}};
      }
    }
  }
}

template <bool kCopy>
void launch(float* p, const float* g, float* m, float* v, void* copy, int64_t n, cudaStream_t stream) {
  const int64_t groups = n / 4;  // the benchmark's n is a multiple of 4
  auto kernel = traffic_kernel<kCopy>;
  int per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
  const int sms = detail::cuda::num_sms();
  const int64_t items = (groups + kUnroll - 1) / kUnroll;
  const int blocks = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>((items + kThreads - 1) / kThreads, int64_t{sms} * std::max(per_sm, 1))));
  kernel<<<blocks, kThreads, 0, stream>>>(reinterpret_cast<float4*>(p), reinterpret_cast<const float4*>(g),
                                          reinterpret_cast<float4*>(m), reinterpret_cast<float4*>(v),
                                          static_cast<Bf16x4*>(copy), groups);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void adam_traffic_cuda(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, void* bf16_copy,
                       int64_t n, cudaStream_t stream) {
  if (bf16_copy != nullptr) {
    launch<true>(param, grad, exp_avg, exp_avg_sq, bf16_copy, n, stream);
  } else {
    launch<false>(param, grad, exp_avg, exp_avg_sq, nullptr, n, stream);
  }
}

}  // namespace zerotrain::bench
