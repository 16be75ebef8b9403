// Fused CUDA kernels of the built-in models' elementwise work (src/models/fused_kernels.cu): SwiGLU and rotary
// embedding, forward and backward, one pass over memory each where the unfused ATen forms take 2-6 (docs/performance.md,
// "session 5"). Raw pointers, as the optimizer kernels (optim/optim_kernels.h): the .cu file includes no ATen header.
// The callers in layers.cc check shapes, dtypes and devices, and make the device current. Only built with CUDA.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace zerotrain::detail {

enum class ElemType { kFloat, kBFloat16, kHalf };

// out = silu(gate) * up over n elements, computed in fp32 and rounded once.
void swiglu_forward_cuda(const void* gate, const void* up, void* out, int64_t n, ElemType type, cudaStream_t stream);
// d_gate = d_out * up * silu'(gate), d_up = d_out * silu(gate).
void swiglu_backward_cuda(const void* d_out, const void* gate, const void* up, void* d_gate, void* d_up, int64_t n,
                          ElemType type, cudaStream_t stream);

// Rotary embedding with the rotate-half convention over rows of `dim` elements (dimension i pairs with i + dim/2):
//   forward:   y1 = x1 cos1 - x2 sin1,  y2 = x2 cos2 + x1 sin2
//   transpose: y1 = x1 cos1 + x2 sin2,  y2 = x2 cos2 - x1 sin1   (the backward: the map is linear)
// Rows are indexed (b, s, h) < (batch, seq, heads); `x_stride` and `y_stride` give each array's element strides of b,
// s and h (the last dimension is contiguous), so a kernel can read one layout and write another (the projection's
// (B, S, n, d) and attention's (B, n, S, d)). cos, sin: (seq, dim) fp32, contiguous.
struct RopeShape {
  int64_t batch = 0, seq = 0, heads = 0, dim = 0;
  int64_t x_stride[3] = {0, 0, 0};
  int64_t y_stride[3] = {0, 0, 0};
};
void rope_cuda(const void* x, void* y, const float* cos, const float* sin, const RopeShape& shape, bool transpose,
               ElemType type, cudaStream_t stream);

}  // namespace zerotrain::detail
