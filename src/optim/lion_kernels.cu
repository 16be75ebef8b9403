// Lion kernel with DeepSpeed FusedLion's arithmetic (csrc/lion/multi_tensor_lion.cu): the step is -lr where
// c = beta1 * m + (1 - beta1) * g is > 0 and +lr otherwise (c == 0 and NaN included), applied after decoupled decay.
#include "optim/kernel_utils.cuh"
#include "optim/optim_kernels.h"

namespace zerotrain::detail {
namespace {

// o = {param, exp_avg}, x = {grad}
struct LionOp {
  LionKernelArgs a;
  __device__ __forceinline__ void operator()(float (&o)[2], const float (&x)[1]) const {
    const float g = x[0];
    const float c = a.beta1 * o[1] + a.one_minus_beta1 * g;
    const float update = c > 0.f ? -a.lr : a.lr;
    o[0] = o[0] * a.after_decay + update;
    o[1] = a.beta2 * o[1] + a.one_minus_beta2 * g;
  }
};

}  // namespace

void lion_step_cuda(float* param, const float* grad, float* exp_avg, int64_t n, const LionKernelArgs& args,
                    cudaStream_t stream) {
  cuda::launch_elementwise_update(cuda::Arrays<2, 1>{{param, exp_avg}, {grad}}, n, LionOp{args}, stream);
}

}  // namespace zerotrain::detail
