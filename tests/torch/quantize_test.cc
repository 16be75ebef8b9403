// ZeRO++ qwZ's int8 blocks (src/zero/quantize.h, [Note: quantized gathers]): layout, error bound, exact values.
#include "zero/quantize.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace zerotrain::detail {
namespace {

TEST(Quantize, RoundTripIsWithinHalfAStepOfEachBlock) {
  const int64_t group = 64, n = 8 * group;
  at::manual_seed(0);
  // Blocks of very different magnitudes: each gets its own scale.
  at::Tensor x = at::randn({n}) * at::pow(10.0, at::arange(8).repeat_interleave(group) - 4);
  at::Tensor packed = at::empty({quantized_bytes(n, group)}, at::kChar);
  quantize_int8_into(x, group, packed);
  const at::Tensor back = dequantize_int8(packed.view({1, -1}), n, group, at::kFloat).view({n});
  const at::Tensor step = x.view({-1, group}).abs().amax(1, true) / 127;  // a block's quantization step
  const at::Tensor err = (back - x).view({-1, group}).abs();
  EXPECT_TRUE(err.le(step * 0.5 + 1e-12).all().item<bool>()) << (err / step).max();
  // The largest value of each block is exact (it defines the scale).
  const at::Tensor idx = x.view({-1, group}).abs().argmax(1, true);
  EXPECT_TRUE(at::allclose(back.view({-1, group}).gather(1, idx), x.view({-1, group}).gather(1, idx), 1e-6, 0));
}

TEST(Quantize, LayoutIsValuesThenFloatScales) {
  const int64_t group = 4;
  const at::Tensor x = at::tensor({1.0f, -2.0f, 0.5f, 127.0f, 0.0f, 0.0f, 0.0f, 0.0f});
  at::Tensor packed = at::empty({quantized_bytes(8, group)}, at::kChar);
  ASSERT_EQ(packed.numel(), 16);  // 8 values + 2 scales = 16 bytes, already a multiple of 16
  quantize_int8_into(x, group, packed);
  // Block 0: scale 127 / 127 = 1, values round(x / 1); block 1 (all zero): scale 1, values 0.
  EXPECT_TRUE(at::equal(packed.narrow(0, 0, 8), at::tensor({1, -2, 0, 127, 0, 0, 0, 0}, at::kChar)));
  const at::Tensor scales = packed.narrow(0, 8, 8).clone().view(at::kFloat);
  EXPECT_TRUE(at::equal(scales, at::tensor({1.0f, 1.0f})));
  // Two ranks' rows dequantize side by side.
  const at::Tensor rows = at::stack({packed, packed});
  const at::Tensor both = dequantize_int8(rows, 8, group, at::kFloat);
  EXPECT_TRUE(at::equal(both[1], at::tensor({1.0f, -2.0f, 0.0f, 127.0f, 0.0f, 0.0f, 0.0f, 0.0f})));  // 0.5 -> 0
}

TEST(Quantize, SixteenBitInputs) {
  const int64_t group = 32;
  const at::Tensor x = at::linspace(-3, 3, 4 * group).to(at::kBFloat16);
  at::Tensor packed = at::empty({quantized_bytes(4 * group, group)}, at::kChar);
  quantize_int8_into(x, group, packed);
  const at::Tensor back = dequantize_int8(packed.view({1, -1}), 4 * group, group, at::kFloat).view({-1});
  EXPECT_LE((back - x.to(at::kFloat)).abs().max().item<float>(), 3.0f / 127 / 2 + 1e-6f);
}

// On a GPU the fused kernels give the ATen form's bytes and values exactly, for fp32, bf16 and fp16 inputs.
TEST(Quantize, RowsArePaddedTo16Bytes) {
  // An odd number of groups: 3 x 2048 values + 3 scales = 6156 bytes, padded to 6160 with zeros.
  EXPECT_EQ(quantized_bytes(3 * kQuantGroup, kQuantGroup), 6160);
  at::Tensor packed = at::full({quantized_bytes(3 * kQuantGroup, kQuantGroup)}, 7, at::kChar);
  quantize_int8_into(at::ones({3 * kQuantGroup}), kQuantGroup, packed);
  EXPECT_TRUE(packed.narrow(0, 6156, 4).eq(0).all().item<bool>());
}

TEST(Quantize, CudaKernelsMatchTheAtenFormBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const int64_t group = kQuantGroup, groups = 15, n = groups * group;  // an odd group count: rows padded
  at::manual_seed(1);
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    at::Tensor x = (at::randn({n}) * at::pow(10.0, at::arange(groups).repeat_interleave(group) % 5 - 2)).to(dtype);
    x.narrow(0, 3 * group, group).zero_();  // an all-zero block
    at::Tensor cpu = at::empty({quantized_bytes(n, group)}, at::kChar);
    quantize_int8_into(x, group, cpu);
    const at::Tensor xg = x.cuda();
    at::Tensor gpu = at::empty({quantized_bytes(n, group)}, xg.options().dtype(at::kChar));
    quantize_int8_into(xg, group, gpu);
    EXPECT_TRUE(at::equal(gpu.cpu(), cpu));
    // Three ranks' rows (the second from other values), dequantized to the training dtype.
    at::Tensor other = at::empty_like(cpu);
    quantize_int8_into((x.to(at::kFloat) * -3).to(dtype), group, other);
    const at::Tensor want = dequantize_int8(at::stack({cpu, other, cpu}), n, group, dtype);
    const at::Tensor got = dequantize_int8(at::stack({gpu, other.cuda(), gpu}), n, group, dtype);
    EXPECT_TRUE(at::equal(got.cpu(), want));
  }
}

}  // namespace
}  // namespace zerotrain::detail
