// copy_spans (torch/batched_copy.h): many same-dtype copies as one operation, on the host and on a GPU: any
// alignment, spans across the kernel's 16 KiB blocks, more spans than one launch carries, empty spans.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "torch/batched_copy.h"

namespace zerotrain::detail {
namespace {

// Copies `count` spans of varied sizes and byte offsets out of a random source into a destination filled with a
// marker, then checks every byte: copied where a span lands, untouched elsewhere.
void check_spans(const c10::Device& device, int count) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const int64_t kTotal = 1 << 22;
  const at::Tensor src_host = at::randint(0, 256, {kTotal}, gen, at::kByte);
  at::Tensor src = src_host.to(device);
  at::Tensor dst = at::full({kTotal}, 7, at::TensorOptions(at::kByte).device(device));
  at::Tensor want = at::full({kTotal}, 7, at::kByte);
  std::vector<CopySpan> spans;
  int64_t at_src = 0, at_dst = 0;
  for (int i = 0; i < count; ++i) {
    // sizes from 0 to past several 16 KiB blocks; offsets that leave every alignment from 1 to 16 bytes
    const int64_t bytes = i % 7 == 0 ? 0 : (i * 7919 % 40000) + (i % 3 == 0 ? 16 * 1024 : 0);
    const int64_t src_off = at_src + i % 5, dst_off = at_dst + i % 16;
    if (dst_off + bytes > kTotal || src_off + bytes > kTotal) break;
    spans.push_back({static_cast<const char*>(src.const_data_ptr()) + src_off,
                     static_cast<char*>(dst.data_ptr()) + dst_off, bytes});
    want.narrow(0, dst_off, bytes).copy_(src_host.narrow(0, src_off, bytes));
    at_src = src_off + bytes;
    at_dst = dst_off + bytes + 3;
  }
  ASSERT_GT(static_cast<int>(spans.size()), count / 2) << "the buffers hold most of the spans";
  copy_spans(spans, device);
  EXPECT_TRUE(at::equal(dst.cpu(), want)) << spans.size() << " spans on " << device;
}

TEST(CopySpans, CopiesEverySpanOnTheHost) { check_spans(c10::Device(c10::kCPU), 300); }

TEST(CopySpans, CopiesEverySpanOnAGpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  check_spans(c10::Device(c10::kCUDA, 0), 20);   // one launch
  check_spans(c10::Device(c10::kCUDA, 0), 300);  // several (96 spans a launch)
}

TEST(CopySpans, NothingToCopyIsNothing) {
  copy_spans({}, c10::Device(c10::kCPU));
  if (at::hasCUDA()) copy_spans({{nullptr, nullptr, 0}}, c10::Device(c10::kCUDA, 0));
}

}  // namespace
}  // namespace zerotrain::detail
