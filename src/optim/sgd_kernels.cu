// SGD kernel with torch.optim.SGD's rule: weight decay as L2, momentum buffer with dampening (the gradient itself on
// the first step), optional Nesterov look-ahead. One launch per step.
#include "optim/kernel_utils.cuh"
#include "optim/optim_kernels.h"

namespace zerotrain::detail {
namespace {

// o = {param, momentum_buffer}, x = {grad}
struct SgdMomentumOp {
  SgdKernelArgs a;
  __device__ __forceinline__ void operator()(float (&o)[2], const float (&x)[1]) const {
    const float p = o[0];
    const float d = a.weight_decay != 0.f ? x[0] + a.weight_decay * p : x[0];
    const float buf = a.first_step ? d : a.momentum * o[1] + a.one_minus_dampening * d;
    const float step = a.nesterov ? d + a.momentum * buf : buf;
    o[0] = p - a.lr * step;
    o[1] = buf;
  }
};

// o = {param}, x = {grad}: momentum 0 keeps no buffer.
struct SgdPlainOp {
  SgdKernelArgs a;
  __device__ __forceinline__ void operator()(float (&o)[1], const float (&x)[1]) const {
    const float p = o[0];
    const float d = a.weight_decay != 0.f ? x[0] + a.weight_decay * p : x[0];
    o[0] = p - a.lr * d;
  }
};

}  // namespace

void sgd_step_cuda(float* param, const float* grad, float* momentum_buffer, int64_t n, const SgdKernelArgs& args,
                   cudaStream_t stream) {
  if (momentum_buffer != nullptr) {
    cuda::launch_elementwise_update(cuda::Arrays<2, 1>{{param, momentum_buffer}, {grad}}, n, SgdMomentumOp{args},
                                    stream);
  } else {
    cuda::launch_elementwise_update(cuda::Arrays<1, 1>{{param}, {grad}}, n, SgdPlainOp{args}, stream);
  }
}

}  // namespace zerotrain::detail
