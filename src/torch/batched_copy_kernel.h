// The CUDA side of copy_spans (batched_copy.h), raw pointers only so that the .cu file includes no ATen header.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace zerotrain::detail {

// Spans one launch carries in its argument (kept under the 4 KiB kernel-argument limit of every CUDA version).
inline constexpr int kMaxSpans = 96;

struct SpanTable {
  const char* src[kMaxSpans];
  char* dst[kMaxSpans];
  int64_t bytes[kMaxSpans];
  int32_t first_block[kMaxSpans + 1];  // prefix sums of each span's blocks; [n] = the grid
  int32_t n;
};

// Bytes one block copies of its span.
inline constexpr int64_t kSpanBlockBytes = 16 * 1024;

void copy_spans_cuda(const SpanTable& table, cudaStream_t stream);

}  // namespace zerotrain::detail
