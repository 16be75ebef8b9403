// qwZ's int8 blocks on the GPU (zero/quantize.h): one pass each way, where the ATen form takes ~10 kernels and fp32
// temporaries (25 ms a step on the 1.1B at stage 3, 2 x H200: docs/performance.md, session 12). Same arithmetic as the
// ATen form, bit for bit: scale = max|x| / 127 (1 for an all-zero block), q = rint(x / scale) clamped to [-127, 127],
// dequantized value = q * scale rounded once to the output type.
#include <cstdint>

#include "optim/kernel_utils.cuh"
#include "zero/quantize_kernels.h"

namespace zerotrain::detail {
namespace {

using cuda::cast_to;
using cuda::kThreads;
using cuda::to_float;

constexpr int kPer = 8;  // elements a thread handles at once (16 bytes of bf16, 8 bytes of int8)

template <typename T>
struct alignas(sizeof(T) * kPer) Pack {
  T v[kPer];
};
struct alignas(8) Bytes {
  int8_t v[kPer];
};

// One block per group: the group's absolute maximum (a block reduction), then its values quantized.
template <typename T>
__global__ void quantize_kernel(const T* __restrict__ x, int64_t group, int8_t* __restrict__ out, float* scales) {
  const int64_t g = blockIdx.x;
  const T* in = x + g * group;
  float local = 0.f;
  for (int64_t i = threadIdx.x * int64_t{kPer}; i < group; i += int64_t{blockDim.x} * kPer) {
    const Pack<T> p = *reinterpret_cast<const Pack<T>*>(in + i);
#pragma unroll
    for (int k = 0; k < kPer; ++k) local = fmaxf(local, fabsf(to_float(p.v[k])));
  }
  __shared__ float warp_max[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) local = fmaxf(local, __shfl_xor_sync(0xffffffffu, local, offset));
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = local;
  __syncthreads();
  __shared__ float block_scale;
  if (threadIdx.x == 0) {
    float m = 0.f;
    for (int w = 0; w < kThreads / 32; ++w) m = fmaxf(m, warp_max[w]);
    block_scale = m > 0.f ? __fdiv_rn(m, 127.f) : 1.f;
    scales[g] = block_scale;
  }
  __syncthreads();
  const float scale = block_scale;
  int8_t* q = out + g * group;
  for (int64_t i = threadIdx.x * int64_t{kPer}; i < group; i += int64_t{blockDim.x} * kPer) {
    const Pack<T> p = *reinterpret_cast<const Pack<T>*>(in + i);
    Bytes b;
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      b.v[k] = static_cast<int8_t>(fminf(fmaxf(rintf(__fdiv_rn(to_float(p.v[k]), scale)), -127.f), 127.f));
    }
    *reinterpret_cast<Bytes*>(q + i) = b;
  }
}

// Rows of `row` bytes (n values, then n / group scales); a thread writes kPer outputs of one group.
template <typename T>
__global__ void dequantize_kernel(const int8_t* __restrict__ packed, int64_t rows, int64_t row, int64_t n,
                                  int64_t group, T* __restrict__ out) {
  const int64_t packs_per_row = n / kPer, total = rows * packs_per_row;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < total; p += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = p / packs_per_row, i = (p % packs_per_row) * kPer;
    const int8_t* src = packed + r * row;
    const Bytes b = *reinterpret_cast<const Bytes*>(src + i);
    const float scale = reinterpret_cast<const float*>(src + n)[i / group];
    Pack<T> o;
#pragma unroll
    for (int k = 0; k < kPer; ++k) o.v[k] = cast_to<T>(static_cast<float>(b.v[k]) * scale);
    *reinterpret_cast<Pack<T>*>(out + r * n + i) = o;
  }
}

template <typename Fn>
void dispatch(QuantType type, Fn&& fn) {
  switch (type) {
    case QuantType::kFloat: fn(float{}); break;
    case QuantType::kBFloat16: fn(__nv_bfloat16{}); break;
    case QuantType::kHalf: fn(__half{}); break;
  }
}

}  // namespace

void quantize_int8_cuda(const void* x, QuantType type, int64_t n, int64_t group, int8_t* out, cudaStream_t stream) {
  if (n == 0) return;
  dispatch(type, [&](auto tag) {
    using T = decltype(tag);
    quantize_kernel<T><<<static_cast<unsigned>(n / group), kThreads, 0, stream>>>(
        static_cast<const T*>(x), group, out, reinterpret_cast<float*>(out + n));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void dequantize_int8_cuda(const int8_t* packed, int64_t rows, int64_t row, int64_t n, int64_t group, void* out,
                          QuantType type, cudaStream_t stream) {
  if (rows * n == 0) return;
  dispatch(type, [&](auto tag) {
    using T = decltype(tag);
    dequantize_kernel<T><<<cuda::grid_blocks(rows * n / kPer), kThreads, 0, stream>>>(packed, rows, row, n, group,
                                                                                      static_cast<T*>(out));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace zerotrain::detail
