// copy_spans (torch/batched_copy.h): many same-dtype copies as one operation, on the host and on a GPU: any
// alignment, spans across the kernel's 16 KiB blocks, more spans than one launch carries, empty spans.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <gtest/gtest.h>

#include <vector>

#include "torch/batched_copy.h"

namespace zerotrain::detail {
namespace {

// Copies `count` spans of varied sizes and byte offsets out of a random source into a destination filled with a
// marker, then checks every byte: copied where a span lands, untouched elsewhere.
// `aligned`: every offset a multiple of 16 bytes and sizes around the kernel's 16 KiB blocks (the wide-load path real
// gradients take); otherwise offsets that leave every alignment from 1 to 16 bytes.
void check_spans(const c10::Device& device, int count, bool aligned = false) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  const int64_t kTotal = 1 << 22;
  const at::Tensor src_host = at::randint(0, 256, {kTotal}, gen, at::kByte);
  at::Tensor src = src_host.to(device);
  at::Tensor dst = at::full({kTotal}, 7, at::TensorOptions(at::kByte).device(device));
  at::Tensor want = at::full({kTotal}, 7, at::kByte);
  std::vector<CopySpan> spans;
  int64_t at_src = 0, at_dst = 0;
  for (int i = 0; i < count; ++i) {
    // sizes from 0 to past several 16 KiB blocks
    int64_t bytes = i % 7 == 0 ? 0 : (i * 7919 % 40000) + (i % 3 == 0 ? 16 * 1024 : 0);
    int64_t src_off = at_src + i % 5, dst_off = at_dst + i % 16;
    if (aligned) {
      const int64_t kBlock = 16 * 1024;
      const int64_t sizes[] = {kBlock, 2 * kBlock, kBlock - 1, kBlock + 1, 16, 48, 3 * kBlock + 16, 0, 5000};
      bytes = sizes[i % 9];
      src_off = (at_src + 15) / 16 * 16;
      dst_off = (at_dst + 15) / 16 * 16 + (i % 2) * 16;
    }
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

TEST(CopySpans, CopiesAlignedSpansOfWholeBlocksOnTheHost) { check_spans(c10::Device(c10::kCPU), 300, true); }

TEST(CopySpans, CopiesEverySpanOnAGpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  check_spans(c10::Device(c10::kCUDA, 0), 20);         // one launch
  check_spans(c10::Device(c10::kCUDA, 0), 300);        // several (96 spans a launch)
  check_spans(c10::Device(c10::kCUDA, 0), 300, true);  // 16-byte loads, whole and partial 16 KiB blocks
  // on the current stream, whichever it is: a side stream's copy is ordered after that stream's work
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, 0);
  const c10::cuda::CUDAStreamGuard guard(side);
  check_spans(c10::Device(c10::kCUDA, 0), 120, true);
}

TEST(CopySpans, LargeSpansOnTheHostCopyInParallelPieces) {
  // 9 MiB: split into 1 MiB pieces across threads; every byte must still land
  const at::Tensor src = at::randint(0, 256, {9 << 20}, at::kByte);
  at::Tensor dst = at::zeros({(9 << 20) + 3}, at::kByte);
  copy_spans({{src.const_data_ptr(), static_cast<char*>(dst.data_ptr()) + 3, src.numel()}}, c10::Device(c10::kCPU));
  EXPECT_TRUE(at::equal(dst.narrow(0, 3, src.numel()), src));
  EXPECT_EQ(dst.narrow(0, 0, 3).sum().item<int64_t>(), 0);
}

TEST(CopySpans, NothingToCopyIsNothing) {
  copy_spans({}, c10::Device(c10::kCPU));
  if (at::hasCUDA()) copy_spans({{nullptr, nullptr, 0}}, c10::Device(c10::kCUDA, 0));
}

}  // namespace
}  // namespace zerotrain::detail
