// CUDA forms of qwZ's quantization (zero/quantize.h; src/zero/quantize_kernels.cu). Raw pointers, as the optimizer
// and model kernels: the .cu file includes no ATen header. Preconditions (checked by the callers in quantize.cc): n a
// multiple of group, group a multiple of 8, x and out 16-byte aligned, `out` holding at least n + 4 * (n / group)
// bytes (the scales 4-byte aligned after the values). Only built with CUDA.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace zerotrain::detail {

enum class QuantType { kFloat, kBFloat16, kHalf };

// out[0, n): int8 values; out[n, n + 4 n / group): the fp32 scales.
void quantize_int8_cuda(const void* x, QuantType type, int64_t n, int64_t group, int8_t* out, cudaStream_t stream);
// `packed`: rows of `row` bytes (a multiple of 16: n values, n / group scales, padding); out: (rows, n) of `type`.
void dequantize_int8_cuda(const int8_t* packed, int64_t rows, int64_t row, int64_t n, int64_t group, void* out,
                          QuantType type, cudaStream_t stream);

}  // namespace zerotrain::detail
