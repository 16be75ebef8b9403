// Hyperparameters and copy targets shared by the shard optimizers' CUDA kernels (optim_kernels.h) and their CPU
// twins (host_kernels.h). No CUDA or ATen header: both sides include it.
#pragma once

namespace zerotrain::detail {

// DeepSpeed FusedAdam (csrc/adam/multi_tensor_adam.cu) with explicit bias corrections (1 when disabled).
struct AdamKernelArgs {
  float lr, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay;
  float bias_correction1, bias_correction2;  // 1 - beta^step, or 1 without bias correction
  bool adam_w_mode;                          // true: decoupled decay; false: L2 added to the gradient
  float grad_multiplier = 1.f;               // the gradient is read as grad * grad_multiplier (unscale and clip)
  // Where set, one float in the kernel's own memory (device memory for the CUDA kernel) that grad_multiplier is
  // multiplied by, read by the kernel: a clip factor computed on the device, which the host never waits for.
  const float* grad_multiplier_device = nullptr;
};

// Where a kernel also writes the updated parameters, cast: `data` holds n elements of `dtype` (kNone: no copy).
enum class CopyDtype { kNone, kFloat, kBFloat16, kHalf };
struct ParamCopy {
  void* data = nullptr;
  CopyDtype dtype = CopyDtype::kNone;
};

}  // namespace zerotrain::detail
