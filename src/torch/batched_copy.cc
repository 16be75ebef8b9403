#include "torch/batched_copy.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>

#ifdef ZEROTRAIN_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "torch/batched_copy_kernel.h"
#endif

namespace zerotrain::detail {

void copy_spans(const std::vector<CopySpan>& spans, const c10::Device& device) {
  if (device.is_cpu()) {
    // Large spans in parallel pieces (as ATen's copy would), small ones one memcpy each.
    constexpr int64_t kPiece = int64_t{1} << 20;
    for (const CopySpan& s : spans) {
      if (s.bytes <= 0) continue;
      if (s.bytes < 4 * kPiece) {
        std::memcpy(s.dst, s.src, static_cast<size_t>(s.bytes));
        continue;
      }
      at::parallel_for(0, (s.bytes + kPiece - 1) / kPiece, 1, [&](int64_t begin, int64_t end) {
        const int64_t from = begin * kPiece, to = std::min(end * kPiece, s.bytes);
        std::memcpy(static_cast<char*>(s.dst) + from, static_cast<const char*>(s.src) + from,
                    static_cast<size_t>(to - from));
      });
    }
    return;
  }
#ifdef ZEROTRAIN_WITH_CUDA
  TORCH_CHECK(device.is_cuda(), "copy_spans: device ", device, " is neither the CPU nor a CUDA device");
  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index());
  SpanTable table;
  table.n = 0;
  table.first_block[0] = 0;
  auto launch = [&] {
    if (table.n > 0) copy_spans_cuda(table, stream);
    table.n = 0;
  };
  for (const CopySpan& s : spans) {
    if (s.bytes <= 0) continue;
    const int64_t blocks = (s.bytes + kSpanBlockBytes - 1) / kSpanBlockBytes;
    // a launch's grid stays far below int32 (2^31 blocks of 16 KiB would be 32 TiB)
    if (table.n == kMaxSpans || int64_t{table.first_block[table.n]} + blocks > (int64_t{1} << 30)) launch();
    table.src[table.n] = static_cast<const char*>(s.src);
    table.dst[table.n] = static_cast<char*>(s.dst);
    table.bytes[table.n] = s.bytes;
    table.first_block[table.n + 1] = table.first_block[table.n] + static_cast<int32_t>(blocks);
    ++table.n;
  }
  launch();
#else
  TORCH_CHECK(false, "copy_spans: ", device, " but zerotrain was built without CUDA");
#endif
}

}  // namespace zerotrain::detail
