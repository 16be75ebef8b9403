// ZeRO++'s quantized weight all-gather (qwZ, `zero_quantized_weights`): symmetric int8 blocks.
//
// [Note: quantized gathers]
// At stage 3 each gather sends this rank's chunks of a batch of units, concatenated and cut into blocks of
// kQuantGroup values; a block travels as int8 values round(x / s) in [-127, 127] with s = max|x| / 127 (fp32), so
// the collective moves 1 + 4 / kQuantGroup bytes per parameter instead of 2 (bf16/fp16) or 4 (fp32). Values and
// scales go in one int8 buffer (the scales' bytes after the values), so one collective carries both. Every rank,
// this one included, then writes the dequantized values s x q into the unit's buffer: all ranks compute with the
// same weights, each within s / 2 of the master's (training-dtype) value. The fp32 master, the optimizer and the
// gradients are untouched: only what forward and backward read is quantized, as in DeepSpeed. Persistent units
// (gathered once after each step) are not quantized. One rank gathers nothing and quantizes nothing.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>

namespace zerotrain::detail {

inline constexpr int64_t kQuantGroup = 2048;  // values per scale (DeepSpeed targets 4-8K; 0.2% of scale bytes)

// Bytes that `numel` values (a multiple of `group`) take quantized: the int8 values, one fp32 scale per group, then
// zeros up to a multiple of 16 bytes (so that every rank's row of a gathered buffer starts 16-byte aligned).
inline int64_t quantized_bytes(int64_t numel, int64_t group) { return (numel + 4 * (numel / group) + 15) / 16 * 16; }

// Quantizes `x` (contiguous, numel a multiple of group, any floating dtype) into `out` (int8, quantized_bytes). On a
// GPU both directions are one fused kernel each (src/zero/quantize_kernels.cu), bit-identical to the ATen form used
// elsewhere.
void quantize_int8_into(const at::Tensor& x, int64_t group, const at::Tensor& out);

// `packed`: (rows, quantized_bytes(numel, group)) int8, a row per quantized tensor; returns (rows, numel) of `dtype`
// (each value s x q computed in fp32 and rounded once to dtype).
at::Tensor dequantize_int8(const at::Tensor& packed, int64_t numel, int64_t group, at::ScalarType dtype);

}  // namespace zerotrain::detail
