// Adagrad kernel with torch.optim.Adagrad's rule: weight decay as L2, sum += g^2, p -= clr * g / (sqrt(sum) + eps).
// One launch per step.
#include "optim/kernel_utils.cuh"
#include "optim/optim_kernels.h"

namespace zerotrain::detail {
namespace {

// o = {param, sum}, x = {grad}
struct AdagradOp {
  AdagradKernelArgs a;
  __device__ __forceinline__ void operator()(float (&o)[2], const float (&x)[1]) const {
    const float p = o[0];
    const float d = a.weight_decay != 0.f ? x[0] + a.weight_decay * p : x[0];
    const float sum = o[1] + d * d;
    o[0] = p - a.clr * (d / (sqrtf(sum) + a.eps));
    o[1] = sum;
  }
};

}  // namespace

void adagrad_step_cuda(float* param, const float* grad, float* sum, int64_t n, const AdagradKernelArgs& args,
                       cudaStream_t stream) {
  cuda::launch_elementwise_update(cuda::Arrays<2, 1>{{param, sum}, {grad}}, n, AdagradOp{args}, stream);
}

}  // namespace zerotrain::detail
