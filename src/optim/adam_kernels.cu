// Adam / AdamW kernel with DeepSpeed FusedAdam's arithmetic (csrc/adam/multi_tensor_adam.cu): the moments without
// bias correction in memory, m / bc1 / (sqrt(v / bc2) + eps) as the step, decoupled decay added to the update.
// adam.cc uses ATen's fused kernel where it computes the same (bias correction on) and this one where ATen's
// cannot (bias_correction false).
#include "optim/kernel_utils.cuh"
#include "optim/optim_kernels.h"

namespace zerotrain::detail {
namespace {

struct AdamOp {
  AdamKernelArgs a;
  // o = {param, exp_avg, exp_avg_sq}, x = {grad}
  __device__ __forceinline__ void operator()(float (&o)[3], const float (&x)[1]) const {
    const float p = o[0];
    float g = x[0];
    if (!a.adam_w_mode) g = g + a.weight_decay * p;  // L2: the decay term enters the moments
    const float m = a.beta1 * o[1] + a.one_minus_beta1 * g;
    const float v = a.beta2 * o[2] + a.one_minus_beta2 * g * g;
    const float denom = sqrtf(v / a.bias_correction2) + a.eps;
    float update = (m / a.bias_correction1) / denom;
    if (a.adam_w_mode) update = update + a.weight_decay * p;  // decoupled: p - lr * (step + wd * p)
    o[0] = p - a.lr * update;
    o[1] = m;
    o[2] = v;
  }
};

}  // namespace

void adam_step_cuda(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                    const AdamKernelArgs& args, cudaStream_t stream) {
  cuda::launch_elementwise_update(cuda::Arrays<3, 1>{{param, exp_avg, exp_avg_sq}, {grad}}, n, AdamOp{args}, stream);
}

}  // namespace zerotrain::detail
