#include "optim/host_kernels.h"

#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

// Built with -ffp-contract=off -fno-math-errno (CMakeLists.txt): no fused multiply-adds (identical bits on every
// machine), and sqrt as one instruction so the loops vectorize.

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ZT_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ZT_SIMD_CLONES
#endif

namespace zerotrain::detail {
namespace {

// ATen's float -> bfloat16 (round to nearest even, NaN to the canonical quiet NaN), branch-free.
inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return f != f ? uint16_t{0x7FC0} : static_cast<uint16_t>(rounded);
}

struct NoStore {
  void operator()(int64_t, float) const {}
};
struct StoreFloat {
  float* out;
  void operator()(int64_t i, float p) const { out[i] = p; }
};
struct StoreBf16 {
  uint16_t* out;
  void operator()(int64_t i, float p) const { out[i] = bf16_bits(p); }
};
struct StoreHalf {
  c10::Half* out;
  void operator()(int64_t i, float p) const { out[i] = c10::Half(p); }
};

// The step's constants, from the kernel arguments in double (DeepSpeed's CPU Adam, csrc/includes/cpu_adam.h, computes
// them on the host the same way): one division and one square root per element, not three and one.
struct HostAdamConsts {
  float gm, wd, b1, c1, b2, c2, eps;
  float step_size;      // -lr / (1 - beta1^t)
  float bc2_rsqrt;      // 1 / sqrt(1 - beta2^t)
  float decay;          // -lr * weight_decay (decoupled decay, applied to the parameter first)
};

HostAdamConsts consts_of(const AdamKernelArgs& a) {
  return {a.grad_multiplier * (a.grad_multiplier_device != nullptr ? *a.grad_multiplier_device : 1.f),
          a.weight_decay,
          a.beta1,
          a.one_minus_beta1,
          a.beta2,
          a.one_minus_beta2,
          a.eps,
          static_cast<float>(-static_cast<double>(a.lr) / a.bias_correction1),
          static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.bias_correction2))),
          static_cast<float>(-static_cast<double>(a.lr) * a.weight_decay)};
}

// DeepSpeed's CPU Adam (csrc/includes/cpu_adam_impl.h) element by element: the same update as the CUDA kernel's
// AdamMath (m_hat / (sqrt(v_hat) + eps), decay decoupled or L2), arranged as DeepSpeed arranges it on the CPU.
template <bool kDecoupled, typename Store>
__attribute__((always_inline)) inline void adam_loop(float* __restrict__ p, const float* __restrict__ g,
                                                     float* __restrict__ m, float* __restrict__ v, int64_t n,
                                                     const HostAdamConsts& k, Store store) {
  const float gm = k.gm, wd = k.wd, b1 = k.b1, c1 = k.c1, b2 = k.b2, c2 = k.c2, eps = k.eps, step = k.step_size,
              rs = k.bc2_rsqrt, decay = k.decay;
  for (int64_t i = 0; i < n; ++i) {
    float pi = p[i];
    float gi = g[i] * gm;
    if constexpr (!kDecoupled) gi = pi * wd + gi;  // L2: the decay term enters the moments
    const float mi = m[i] * b1 + gi * c1;
    const float vi = v[i] * b2 + gi * gi * c2;
    const float update = mi / (std::sqrt(vi) * rs + eps);
    if constexpr (kDecoupled) pi = pi + decay * pi;  // p * (1 - lr * wd), then the step
    const float next = update * step + pi;
    m[i] = mi;
    v[i] = vi;
    p[i] = next;
    store(i, next);
  }
}

// One function per copy dtype, each built for several instruction sets (ZT_SIMD_CLONES).
#define ZT_ADAM_RANGE(NAME, STORE_T, STORE_ARG)                                                              \
  ZT_SIMD_CLONES void NAME(float* p, const float* g, float* m, float* v, int64_t n, const HostAdamConsts& k, \
                           bool decoupled, void* out) {                                                      \
    (void)out;                                                                                               \
    if (decoupled) {                                                                                         \
      adam_loop<true>(p, g, m, v, n, k, STORE_T{STORE_ARG});                                                 \
    } else {                                                                                                 \
      adam_loop<false>(p, g, m, v, n, k, STORE_T{STORE_ARG});                                                \
    }                                                                                                        \
  }
ZT_ADAM_RANGE(adam_range_none, NoStore, )
ZT_ADAM_RANGE(adam_range_float, StoreFloat, static_cast<float*>(out))
ZT_ADAM_RANGE(adam_range_bf16, StoreBf16, static_cast<uint16_t*>(out))
ZT_ADAM_RANGE(adam_range_half, StoreHalf, static_cast<c10::Half*>(out))
#undef ZT_ADAM_RANGE

}  // namespace

void host_parallel(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t threads = std::clamp<int64_t>(n / std::max<int64_t>(grain, 1), 1, std::max(at::get_num_threads(), 1));
  // Slices of equal size, rounded to 64 elements (whole cache lines of fp32 and of the 16-bit copy).
  const int64_t slice = ((n + threads - 1) / threads + 63) / 64 * 64;
  std::vector<std::thread> helpers;
  std::exception_ptr error;
  std::mutex error_mu;
  auto run = [&](int64_t begin) {
    try {
      fn(begin, std::min(n, begin + slice));
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
    }
  };
  int64_t begin = slice;
  try {
    for (; begin < n; begin += slice) helpers.emplace_back(run, begin);
  } catch (const std::system_error&) {
    for (; begin < n; begin += slice) run(begin);  // no more threads to be had: the rest on this one
  }
  run(0);
  for (auto& t : helpers) t.join();
  if (error) std::rethrow_exception(error);
}

void adam_step_host(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                    const AdamKernelArgs& args, ParamCopy copy) {
  auto* range = &adam_range_none;
  int64_t copy_bytes = 0;
  switch (copy.data == nullptr ? CopyDtype::kNone : copy.dtype) {
    case CopyDtype::kNone: break;
    case CopyDtype::kFloat: range = &adam_range_float, copy_bytes = 4; break;
    case CopyDtype::kBFloat16: range = &adam_range_bf16, copy_bytes = 2; break;
    case CopyDtype::kHalf: range = &adam_range_half, copy_bytes = 2; break;
  }
  char* out = static_cast<char*>(copy.data);
  const HostAdamConsts k = consts_of(args);
  // 1M elements a thread at least: below that a thread's start costs more than its share of the pass.
  host_parallel(n, int64_t{1} << 20, [&](int64_t b, int64_t e) {
    range(param + b, grad + b, exp_avg + b, exp_avg_sq + b, e - b, k, args.adam_w_mode,
          out == nullptr ? nullptr : out + b * copy_bytes);
  });
}

}  // namespace zerotrain::detail
