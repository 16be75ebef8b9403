// SwiGLU and rotary-embedding kernels (fused_kernels.h). Each thread handles VEC neighbouring elements with one
// aligned load per array (16 bytes of 16-bit values) where the arrays allow it, one element otherwise; arithmetic is
// fp32, each output rounded once.
#include <cstdint>

#include "models/fused_kernels.h"
#include "optim/kernel_utils.cuh"

namespace zerotrain::detail {
namespace {

using cuda::cast_to;
using cuda::kThreads;
using cuda::to_float;

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load(const T* p) {
  return *reinterpret_cast<const Pack<T, VEC>*>(p);
}
template <typename T, int VEC>
__device__ __forceinline__ void store(T* p, const Pack<T, VEC>& v) {
  *reinterpret_cast<Pack<T, VEC>*>(p) = v;
}

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

template <typename T, int VEC>
__global__ void swiglu_forward_kernel(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out,
                                      int64_t packs) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < packs; i += int64_t{gridDim.x} * blockDim.x) {
    const Pack<T, VEC> g = load<T, VEC>(gate + i * VEC), u = load<T, VEC>(up + i * VEC);
    Pack<T, VEC> o;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float x = to_float(g.v[k]);
      o.v[k] = cast_to<T>(x * sigmoid(x) * to_float(u.v[k]));
    }
    store<T, VEC>(out + i * VEC, o);
  }
}

template <typename T, int VEC>
__global__ void swiglu_backward_kernel(const T* __restrict__ d_out, const T* __restrict__ gate,
                                       const T* __restrict__ up, T* __restrict__ d_gate, T* __restrict__ d_up,
                                       int64_t packs) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < packs; i += int64_t{gridDim.x} * blockDim.x) {
    const Pack<T, VEC> d = load<T, VEC>(d_out + i * VEC), g = load<T, VEC>(gate + i * VEC),
                       u = load<T, VEC>(up + i * VEC);
    Pack<T, VEC> dg, du;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float x = to_float(g.v[k]), s = sigmoid(x), dy = to_float(d.v[k]);
      du.v[k] = cast_to<T>(dy * x * s);
      dg.v[k] = cast_to<T>(dy * to_float(u.v[k]) * s * (1.f + x * (1.f - s)));
    }
    store<T, VEC>(d_gate + i * VEC, dg);
    store<T, VEC>(d_up + i * VEC, du);
  }
}

// A grid-stride loop's blocks, as the optimizer kernels size theirs.
int blocks_for(int64_t work) { return cuda::grid_blocks(work); }

bool aligned(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <typename T>
void swiglu_forward_typed(const void* gate, const void* up, void* out, int64_t n, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const auto* g = static_cast<const T*>(gate);
  const auto* u = static_cast<const T*>(up);
  auto* o = static_cast<T*>(out);
  if (n % kVec == 0 && aligned(g, 16) && aligned(u, 16) && aligned(o, 16)) {
    swiglu_forward_kernel<T, kVec><<<blocks_for(n / kVec), kThreads, 0, stream>>>(g, u, o, n / kVec);
  } else {
    swiglu_forward_kernel<T, 1><<<blocks_for(n), kThreads, 0, stream>>>(g, u, o, n);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void swiglu_backward_typed(const void* d_out, const void* gate, const void* up, void* d_gate, void* d_up, int64_t n,
                           cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const auto* d = static_cast<const T*>(d_out);
  const auto* g = static_cast<const T*>(gate);
  const auto* u = static_cast<const T*>(up);
  auto* dg = static_cast<T*>(d_gate);
  auto* du = static_cast<T*>(d_up);
  if (n % kVec == 0 && aligned(d, 16) && aligned(g, 16) && aligned(u, 16) && aligned(dg, 16) && aligned(du, 16)) {
    swiglu_backward_kernel<T, kVec><<<blocks_for(n / kVec), kThreads, 0, stream>>>(d, g, u, dg, du, n / kVec);
  } else {
    swiglu_backward_kernel<T, 1><<<blocks_for(n), kThreads, 0, stream>>>(d, g, u, dg, du, n);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// One thread per VEC pairs (i, i + dim/2) of one row.
template <typename T, int VEC, bool kTranspose>
__global__ void rope_kernel(const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ cos,
                            const float* __restrict__ sin, RopeShape shape) {
  const int64_t half = shape.dim / 2, packs_per_row = half / VEC;
  const int64_t total = shape.batch * shape.seq * shape.heads * packs_per_row;
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < total; t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t j = (t % packs_per_row) * VEC;
    int64_t row = t / packs_per_row;
    const int64_t h = row % shape.heads;
    row /= shape.heads;
    const int64_t s = row % shape.seq, b = row / shape.seq;
    const T* xr = x + b * shape.x_stride[0] + s * shape.x_stride[1] + h * shape.x_stride[2];
    T* yr = y + b * shape.y_stride[0] + s * shape.y_stride[1] + h * shape.y_stride[2];
    const float* c = cos + s * shape.dim;
    const float* sn = sin + s * shape.dim;
    const Pack<T, VEC> x1 = load<T, VEC>(xr + j), x2 = load<T, VEC>(xr + half + j);
    Pack<T, VEC> y1, y2;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const float a = to_float(x1.v[k]), bb = to_float(x2.v[k]);
      const float c1 = c[j + k], c2 = c[half + j + k], s1 = sn[j + k], s2 = sn[half + j + k];
      if (kTranspose) {
        y1.v[k] = cast_to<T>(a * c1 + bb * s2);
        y2.v[k] = cast_to<T>(bb * c2 - a * s1);
      } else {
        y1.v[k] = cast_to<T>(a * c1 - bb * s1);
        y2.v[k] = cast_to<T>(bb * c2 + a * s2);
      }
    }
    store<T, VEC>(yr + j, y1);
    store<T, VEC>(yr + half + j, y2);
  }
}

template <typename T, bool kTranspose>
void rope_typed(const void* x, void* y, const float* cos, const float* sin, const RopeShape& shape,
                cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const auto* xp = static_cast<const T*>(x);
  auto* yp = static_cast<T*>(y);
  bool vec = (shape.dim / 2) % kVec == 0 && aligned(xp, 16) && aligned(yp, 16);
  for (int k = 0; k < 3; ++k) vec = vec && shape.x_stride[k] % kVec == 0 && shape.y_stride[k] % kVec == 0;
  const int64_t rows = shape.batch * shape.seq * shape.heads;
  if (vec) {
    rope_kernel<T, kVec, kTranspose>
        <<<blocks_for(rows * (shape.dim / 2 / kVec)), kThreads, 0, stream>>>(xp, yp, cos, sin, shape);
  } else {
    rope_kernel<T, 1, kTranspose><<<blocks_for(rows * (shape.dim / 2)), kThreads, 0, stream>>>(xp, yp, cos, sin, shape);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void swiglu_forward_cuda(const void* gate, const void* up, void* out, int64_t n, ElemType type, cudaStream_t stream) {
  if (n == 0) return;
  switch (type) {
    case ElemType::kFloat: return swiglu_forward_typed<float>(gate, up, out, n, stream);
    case ElemType::kBFloat16: return swiglu_forward_typed<__nv_bfloat16>(gate, up, out, n, stream);
    case ElemType::kHalf: return swiglu_forward_typed<__half>(gate, up, out, n, stream);
  }
}

void swiglu_backward_cuda(const void* d_out, const void* gate, const void* up, void* d_gate, void* d_up, int64_t n,
                          ElemType type, cudaStream_t stream) {
  if (n == 0) return;
  switch (type) {
    case ElemType::kFloat: return swiglu_backward_typed<float>(d_out, gate, up, d_gate, d_up, n, stream);
    case ElemType::kBFloat16: return swiglu_backward_typed<__nv_bfloat16>(d_out, gate, up, d_gate, d_up, n, stream);
    case ElemType::kHalf: return swiglu_backward_typed<__half>(d_out, gate, up, d_gate, d_up, n, stream);
  }
}

void rope_cuda(const void* x, void* y, const float* cos, const float* sin, const RopeShape& shape, bool transpose,
               ElemType type, cudaStream_t stream) {
  if (shape.batch * shape.seq * shape.heads * shape.dim == 0) return;
  switch (type) {
    case ElemType::kFloat:
      return transpose ? rope_typed<float, true>(x, y, cos, sin, shape, stream)
                       : rope_typed<float, false>(x, y, cos, sin, shape, stream);
    case ElemType::kBFloat16:
      return transpose ? rope_typed<__nv_bfloat16, true>(x, y, cos, sin, shape, stream)
                       : rope_typed<__nv_bfloat16, false>(x, y, cos, sin, shape, stream);
    case ElemType::kHalf:
      return transpose ? rope_typed<__half, true>(x, y, cos, sin, shape, stream)
                       : rope_typed<__half, false>(x, y, cos, sin, shape, stream);
  }
}

}  // namespace zerotrain::detail
