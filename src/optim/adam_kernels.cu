// Adam / AdamW kernel with DeepSpeed FusedAdam's arithmetic (csrc/adam/multi_tensor_adam.cu): the moments without
// bias correction in memory, m / bc1 / (sqrt(v / bc2) + eps) as the step, decoupled decay added to the update.
//
// One pass does all of a ZeRO step's elementwise work on the shard: the gradient's unscale-and-clip multiplier, the
// update, and the 16-bit (or fp32) copy of the updated parameter that the model trains with. Per element it reads
// 16 bytes (param, grad, exp_avg, exp_avg_sq) and writes 12 plus the copy's 2 or 4: the least any Adam can move
// (see bench/micro_bench.cc for its bandwidth against a device copy).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "optim/kernel_utils.cuh"
#include "optim/optim_kernels.h"

namespace zerotrain::detail {
namespace {

struct AdamMath {
  AdamKernelArgs a;
  __device__ __forceinline__ void operator()(float& p, float g, float& m, float& v) const {
    g = g * a.grad_multiplier;
    if (!a.adam_w_mode) g = g + a.weight_decay * p;  // L2: the decay term enters the moments
    m = a.beta1 * m + a.one_minus_beta1 * g;
    v = a.beta2 * v + a.one_minus_beta2 * g * g;
    const float denom = sqrtf(v / a.bias_correction2) + a.eps;
    float update = (m / a.bias_correction1) / denom;
    if (a.adam_w_mode) update = update + a.weight_decay * p;  // decoupled: p - lr * (step + wd * p)
    p = p - a.lr * update;
  }
};

using cuda::cast_to;

// Four values of T stored with one instruction (8 bytes for 16-bit types, 16 for float).
template <typename T>
struct alignas(4 * sizeof(T)) Vec4 {
  T v[4];
};

template <bool kStream>
__device__ __forceinline__ float4 load4(const float* base, int64_t q) {
  const float4* ptr = reinterpret_cast<const float4*>(base) + q;
  if constexpr (kStream) return __ldcs(ptr);
  return *ptr;
}

template <bool kStream>
__device__ __forceinline__ void store4(float* base, int64_t q, const float4& value) {
  float4* ptr = reinterpret_cast<float4*>(base) + q;
  if constexpr (kStream) {
    __stcs(ptr, value);
  } else {
    *ptr = value;
  }
}

// Copy = void: no copy. Grid-stride over float4 groups when `vectorize` (every array aligned for its vector width),
// kUnroll groups per thread and iteration (all loads issued before any math), then single elements for the rest.
template <typename Copy, int kUnroll, bool kStream>
__global__ void __launch_bounds__(cuda::kThreads)
    adam_kernel(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ exp_avg,
                float* __restrict__ exp_avg_sq, Copy* __restrict__ copy, int64_t n, bool vectorize, AdamMath op) {
  constexpr bool kCopy = !std::is_void_v<Copy>;
  if (op.a.grad_multiplier_device != nullptr) op.a.grad_multiplier *= *op.a.grad_multiplier_device;
  const int64_t thread = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const int64_t num_threads = int64_t{gridDim.x} * blockDim.x;
  const int64_t groups = vectorize ? n / cuda::kVec : 0;
  const int64_t stride = num_threads * kUnroll;
  for (int64_t base = thread; base < groups; base += stride) {
    float4 p[kUnroll], g[kUnroll], m[kUnroll], v[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int64_t q = base + k * num_threads;
      if (q < groups) {
        p[k] = load4<kStream>(param, q);
        g[k] = load4<kStream>(grad, q);
        m[k] = load4<kStream>(exp_avg, q);
        v[k] = load4<kStream>(exp_avg_sq, q);
      }
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int64_t q = base + k * num_threads;
      if (q >= groups) continue;
      op(p[k].x, g[k].x, m[k].x, v[k].x);
      op(p[k].y, g[k].y, m[k].y, v[k].y);
      op(p[k].z, g[k].z, m[k].z, v[k].z);
      op(p[k].w, g[k].w, m[k].w, v[k].w);
      store4<kStream>(param, q, p[k]);
      store4<kStream>(exp_avg, q, m[k]);
      store4<kStream>(exp_avg_sq, q, v[k]);
      if constexpr (kCopy) {
        Vec4<Copy> c;
        c.v[0] = cast_to<Copy>(p[k].x);
        c.v[1] = cast_to<Copy>(p[k].y);
        c.v[2] = cast_to<Copy>(p[k].z);
        c.v[3] = cast_to<Copy>(p[k].w);
        reinterpret_cast<Vec4<Copy>*>(copy)[q] = c;
      }
    }
  }
  for (int64_t i = groups * cuda::kVec + thread; i < n; i += num_threads) {
    float p = param[i], m = exp_avg[i], v = exp_avg_sq[i];
    op(p, grad[i], m, v);
    param[i] = p;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    if constexpr (kCopy) copy[i] = cast_to<Copy>(p);
  }
}

bool aligned(const void* ptr, size_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

template <typename Copy, int kUnroll, bool kStream>
void launch_with(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, Copy* copy, int64_t n,
                 const AdamKernelArgs& args, cudaStream_t stream, bool vectorize, bool occupancy_grid) {
  auto kernel = adam_kernel<Copy, kUnroll, kStream>;
  const int64_t items = vectorize ? (n / cuda::kVec + kUnroll - 1) / kUnroll : n;  // thread-iterations
  int blocks = cuda::grid_blocks(items);
  if (occupancy_grid) {
    // Exactly the blocks that can be resident at once: one wave, every block busy until the end. Resident blocks
    // per SM depend on the kernel's registers only: asked once per kernel, not on every step.
    static const int per_sm = [&] {
      int n = 0;
      C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, cuda::kThreads, 0));
      return std::max(n, 1);
    }();
    blocks = static_cast<int>(std::max<int64_t>(
        1, std::min<int64_t>((items + cuda::kThreads - 1) / cuda::kThreads, int64_t{cuda::num_sms()} * per_sm)));
  }
  kernel<<<blocks, cuda::kThreads, 0, stream>>>(param, grad, exp_avg, exp_avg_sq, copy, n, vectorize, AdamMath{args});
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename Copy>
void launch(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, Copy* copy, int64_t n,
            const AdamKernelArgs& args, cudaStream_t stream, const AdamLaunch& how) {
  if (n == 0) return;
  bool vectorize = aligned(param, 16) && aligned(grad, 16) && aligned(exp_avg, 16) && aligned(exp_avg_sq, 16);
  if constexpr (!std::is_void_v<Copy>) vectorize = vectorize && aligned(copy, sizeof(Vec4<Copy>));
  auto go = [&](auto unroll, auto stream_hint) {
    launch_with<Copy, decltype(unroll)::value, decltype(stream_hint)::value>(
        param, grad, exp_avg, exp_avg_sq, copy, n, args, stream, vectorize, how.occupancy_grid);
  };
  using One = std::integral_constant<int, 1>;
  using Two = std::integral_constant<int, 2>;
  using Four = std::integral_constant<int, 4>;
  using Eight = std::integral_constant<int, 8>;
  using On = std::true_type;
  using Off = std::false_type;
  switch (how.unroll) {
    case 1: return how.streaming ? go(One{}, On{}) : go(One{}, Off{});
    case 2: return how.streaming ? go(Two{}, On{}) : go(Two{}, Off{});
    case 4: return how.streaming ? go(Four{}, On{}) : go(Four{}, Off{});
    case 8: return how.streaming ? go(Eight{}, On{}) : go(Eight{}, Off{});
    default: TORCH_CHECK(false, "adam_step_cuda: AdamLaunch::unroll ", how.unroll, "; allowed: 1, 2, 4, 8");
  }
}

}  // namespace

void adam_step_cuda(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                    const AdamKernelArgs& args, cudaStream_t stream, ParamCopy copy, AdamLaunch how) {
  switch (copy.dtype) {
    case CopyDtype::kNone:
      return launch<void>(param, grad, exp_avg, exp_avg_sq, nullptr, n, args, stream, how);
    case CopyDtype::kFloat:
      return launch(param, grad, exp_avg, exp_avg_sq, static_cast<float*>(copy.data), n, args, stream, how);
    case CopyDtype::kBFloat16:
      return launch(param, grad, exp_avg, exp_avg_sq, static_cast<__nv_bfloat16*>(copy.data), n, args, stream, how);
    case CopyDtype::kHalf:
      return launch(param, grad, exp_avg, exp_avg_sq, static_cast<__half*>(copy.data), n, args, stream, how);
  }
}

}  // namespace zerotrain::detail
