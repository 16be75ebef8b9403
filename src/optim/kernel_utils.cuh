// Device helpers shared by the optimizer kernels (and the models' fused kernels): an element loop that reads and
// writes float4 where it can, launch sizing for grid-stride loops, conversions between fp32 and the 16-bit types,
// and a deterministic block sum.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace zerotrain::detail::cuda {

constexpr int kThreads = 256;  // threads per block of every optimizer kernel
constexpr int kVec = 4;        // floats per float4

// The arrays one kernel touches: kOut read and written (param, optimizer state), kIn read only (grad, ...), all
// indexed by the same element index.
template <int kOut, int kIn>
struct Arrays {
  float* out[kOut];
  const float* in[kIn];
};

// True when every array starts on a 16-byte boundary, so element 4k of each starts a float4. The state tensors are
// fresh allocations; the param and grad shards may be views at any offset of a larger flat buffer.
template <int kOut, int kIn>
inline bool all_aligned16(const Arrays<kOut, kIn>& a) {
  bool ok = true;
  for (int k = 0; k < kOut; ++k) ok = ok && reinterpret_cast<uintptr_t>(a.out[k]) % 16 == 0;
  for (int k = 0; k < kIn; ++k) ok = ok && reinterpret_cast<uintptr_t>(a.in[k]) % 16 == 0;
  return ok;
}

// Blocks for a grid-stride loop that wants `wanted` blocks: enough to fill every SM a few times over (a resident
// wave is 2048 threads per SM on Hopper), not more; the loop covers the rest, which amortises per-block setup.
// Streaming multiprocessors of the current device.
inline int num_sms() {
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

inline int capped_blocks(int64_t wanted) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, int64_t{num_sms()} * 8)));
}

// Blocks for a grid-stride loop over `num_items` items of one thread each.
inline int grid_blocks(int64_t num_items) { return capped_blocks((num_items + kThreads - 1) / kThreads); }

// fp32 <-> the element types, rounding to nearest even.
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T cast_to(float x);
template <>
__device__ __forceinline__ float cast_to<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 cast_to<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half cast_to<__half>(float x) { return __float2half_rn(x); }

// Calls op(out_values, in_values) once per element i in [begin, end), where out_values[k] / in_values[k] hold
// element i of array k; the out values are stored back. Thread `thread` of `num_threads` takes every
// num_threads-th element (or float4). With `vectorize` (all arrays 16-byte aligned) the body moves float4s and
// only the up-to-3 elements before the first multiple of 4 and after the last go one by one.
template <int kOut, int kIn, typename Op>
__device__ __forceinline__ void for_each_element(const Arrays<kOut, kIn>& a, int64_t begin, int64_t end, bool vectorize,
                                                 int64_t thread, int64_t num_threads, Op& op) {
  int64_t body_begin = end, body_end = end;
  if (vectorize) {
    const int64_t first_multiple = (begin + kVec - 1) / kVec * kVec;
    body_begin = first_multiple < end ? first_multiple : end;
    body_end = body_begin + (end - body_begin) / kVec * kVec;
  }
  auto scalar = [&](int64_t i) {
    float o[kOut], x[kIn];
#pragma unroll
    for (int k = 0; k < kOut; ++k) o[k] = a.out[k][i];
#pragma unroll
    for (int k = 0; k < kIn; ++k) x[k] = a.in[k][i];
    op(o, x);
#pragma unroll
    for (int k = 0; k < kOut; ++k) a.out[k][i] = o[k];
  };
  for (int64_t i = begin + thread; i < body_begin; i += num_threads) scalar(i);
  for (int64_t v = body_begin / kVec + thread; v < body_end / kVec; v += num_threads) {
    float4 o4[kOut], x4[kIn];
#pragma unroll
    for (int k = 0; k < kOut; ++k) o4[k] = reinterpret_cast<const float4*>(a.out[k])[v];
#pragma unroll
    for (int k = 0; k < kIn; ++k) x4[k] = reinterpret_cast<const float4*>(a.in[k])[v];
#pragma unroll
    for (int lane = 0; lane < kVec; ++lane) {
      float o[kOut], x[kIn];
#pragma unroll
      for (int k = 0; k < kOut; ++k) o[k] = reinterpret_cast<const float*>(&o4[k])[lane];
#pragma unroll
      for (int k = 0; k < kIn; ++k) x[k] = reinterpret_cast<const float*>(&x4[k])[lane];
      op(o, x);
#pragma unroll
      for (int k = 0; k < kOut; ++k) reinterpret_cast<float*>(&o4[k])[lane] = o[k];
    }
#pragma unroll
    for (int k = 0; k < kOut; ++k) reinterpret_cast<float4*>(a.out[k])[v] = o4[k];
  }
  for (int64_t i = body_end + thread; i < end; i += num_threads) scalar(i);
}

// One elementwise update over a whole shard [0, n): a grid-stride loop over all threads of the grid.
template <int kOut, int kIn, typename Op>
__global__ void __launch_bounds__(kThreads)
    elementwise_update_kernel(Arrays<kOut, kIn> a, int64_t n, bool vectorize, Op op) {
  const int64_t thread = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const int64_t num_threads = int64_t{gridDim.x} * blockDim.x;
  for_each_element(a, 0, n, vectorize, thread, num_threads, op);
}

// Launches elementwise_update_kernel on `stream` (of the current device). n == 0 launches nothing.
template <int kOut, int kIn, typename Op>
void launch_elementwise_update(const Arrays<kOut, kIn>& a, int64_t n, const Op& op, cudaStream_t stream) {
  if (n == 0) return;
  const bool vectorize = all_aligned16(a);
  const int blocks = grid_blocks(vectorize ? (n + kVec - 1) / kVec : n);
  elementwise_update_kernel<kOut, kIn, Op><<<blocks, kThreads, 0, stream>>>(a, n, vectorize, op);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Sum of (a, b) over the block, in a fixed order (warp shuffles, then one warp over the warp sums), so results do not
// vary from run to run. The result is valid in thread 0. Every thread of the block must call it.
__device__ __forceinline__ float2 block_sum2(float a, float b) {
  static_assert(kThreads % 32 == 0 && kThreads / 32 <= 32, "one warp must cover the warp sums");
  __shared__ float2 warp_sums[kThreads / 32];
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    a += __shfl_down_sync(0xffffffffu, a, offset);
    b += __shfl_down_sync(0xffffffffu, b, offset);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = make_float2(a, b);
  __syncthreads();
  float2 total = make_float2(0.f, 0.f);
  if (warp == 0) {
    if (lane < kThreads / 32) total = warp_sums[lane];
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      total.x += __shfl_down_sync(0xffffffffu, total.x, offset);
      total.y += __shfl_down_sync(0xffffffffu, total.y, offset);
    }
  }
  __syncthreads();  // warp_sums may be reused by the next call
  return total;
}

}  // namespace zerotrain::detail::cuda
