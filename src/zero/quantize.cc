#include "zero/quantize.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

#ifdef ZEROTRAIN_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "zero/quantize_kernels.h"
#endif

namespace zerotrain::detail {
namespace {

#ifdef ZEROTRAIN_WITH_CUDA
// The fused kernels take contiguous, 16-byte aligned float / bf16 / fp16 data in groups of a multiple of 8.
std::optional<QuantType> kernel_type(const at::Tensor& t, int64_t group) {
  if (!t.is_cuda() || !t.is_contiguous() || group % 8 != 0 || reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0) {
    return std::nullopt;
  }
  switch (t.scalar_type()) {
    case at::kFloat: return QuantType::kFloat;
    case at::kBFloat16: return QuantType::kBFloat16;
    case at::kHalf: return QuantType::kHalf;
    default: return std::nullopt;
  }
}
#endif

}  // namespace

void quantize_int8_into(const at::Tensor& x, int64_t group, const at::Tensor& out) {
  const int64_t n = x.numel();
  TORCH_CHECK(n % group == 0 && out.scalar_type() == at::kChar && out.numel() == quantized_bytes(n, group) &&
                  out.is_contiguous(),
              "quantize_int8_into: ", n, " values in groups of ", group, " into ", out.numel(), " bytes");
#ifdef ZEROTRAIN_WITH_CUDA
  if (auto type = kernel_type(x, group); type && reinterpret_cast<uintptr_t>(out.data_ptr()) % 16 == 0) {
    const c10::cuda::CUDAGuard guard(x.device());
    quantize_int8_cuda(x.data_ptr(), *type, n, group, out.data_ptr<int8_t>(), at::cuda::getCurrentCUDAStream());
    if (const int64_t tail = out.numel() - n - 4 * (n / group); tail > 0) out.narrow(0, out.numel() - tail, tail).zero_();
    return;
  }
#endif
  const at::Tensor blocks = x.reshape({n / group, group}).to(at::kFloat);
  // An all-zero block gets scale 1 (its values quantize to 0 either way) so that nothing divides by zero.
  const at::Tensor absmax = blocks.abs().amax(1, /*keepdim=*/true);
  const at::Tensor scale = at::where(absmax > 0, absmax / 127.0, at::ones_like(absmax));
  out.narrow(0, 0, n).view({n / group, group}).copy_(blocks.div(scale).round_().clamp_(-127, 127));
  out.narrow(0, n, 4 * (n / group)).copy_(scale.reshape({-1}).view(at::kChar));
  if (const int64_t tail = out.numel() - n - 4 * (n / group); tail > 0) out.narrow(0, out.numel() - tail, tail).zero_();
}

at::Tensor dequantize_int8(const at::Tensor& packed, int64_t numel, int64_t group, at::ScalarType dtype) {
  const int64_t rows = packed.size(0), groups = numel / group;
  TORCH_CHECK(packed.dim() == 2 && packed.size(1) == quantized_bytes(numel, group) && numel % group == 0,
              "dequantize_int8: rows of ", packed.size(1), " bytes for ", numel, " values in groups of ", group);
#ifdef ZEROTRAIN_WITH_CUDA
  at::Tensor out = at::empty({rows, numel}, packed.options().dtype(dtype));
  // Rows are multiples of 16 bytes (quantized_bytes), so each row's values and scales are aligned like the first's.
  if (auto type = kernel_type(out, group); type && packed.is_contiguous() &&
                                           reinterpret_cast<uintptr_t>(packed.data_ptr()) % 16 == 0) {
    const c10::cuda::CUDAGuard guard(packed.device());
    dequantize_int8_cuda(packed.data_ptr<int8_t>(), rows, packed.size(1), numel, group, out.data_ptr(), *type,
                         at::cuda::getCurrentCUDAStream());
    return out;
  }
#endif
  const at::Tensor values = packed.narrow(1, 0, numel).reshape({rows, groups, group});
  const at::Tensor scales = packed.narrow(1, numel, 4 * groups).contiguous().view(at::kFloat).view({rows, groups, 1});
  return (values.to(at::kFloat) * scales).view({rows, numel}).to(dtype);
}

}  // namespace zerotrain::detail
