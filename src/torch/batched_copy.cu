#include <c10/cuda/CUDAException.h>

#include "torch/batched_copy_kernel.h"

namespace zerotrain::detail {
namespace {

constexpr int kCopyThreads = 256;

// Copies bytes [begin, end) of (src, dst) with loads of type T: both pointers are aligned to sizeof(T).
template <typename T>
__device__ __forceinline__ void copy_as(const char* src, char* dst, int64_t begin, int64_t end) {
  const int64_t words_begin = begin / static_cast<int64_t>(sizeof(T));
  const int64_t words_end = end / static_cast<int64_t>(sizeof(T));
  const T* s = reinterpret_cast<const T*>(src);
  T* d = reinterpret_cast<T*>(dst);
  for (int64_t i = words_begin + threadIdx.x; i < words_end; i += blockDim.x) d[i] = s[i];
  // the bytes after the last whole word (only in the span's last block: blocks start on multiples of 16 KiB)
  for (int64_t i = words_end * static_cast<int64_t>(sizeof(T)) + threadIdx.x; i < end; i += blockDim.x) {
    dst[i] = src[i];
  }
}

__global__ void __launch_bounds__(kCopyThreads) copy_spans_kernel(const SpanTable table) {
  const int32_t block = static_cast<int32_t>(blockIdx.x);
  // the span whose blocks include this one: the last with first_block <= block
  int lo = 0, hi = table.n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table.first_block[mid] <= block) lo = mid;
    else hi = mid - 1;
  }
  const char* src = table.src[lo];
  char* dst = table.dst[lo];
  const int64_t begin = static_cast<int64_t>(block - table.first_block[lo]) * kSpanBlockBytes;
  const int64_t end = min(begin + kSpanBlockBytes, table.bytes[lo]);
  const uintptr_t align = reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst);
  if (align % 16 == 0) copy_as<uint4>(src, dst, begin, end);
  else if (align % 8 == 0) copy_as<uint2>(src, dst, begin, end);
  else if (align % 4 == 0) copy_as<uint32_t>(src, dst, begin, end);
  else if (align % 2 == 0) copy_as<uint16_t>(src, dst, begin, end);
  else copy_as<uint8_t>(src, dst, begin, end);
}

}  // namespace

void copy_spans_cuda(const SpanTable& table, cudaStream_t stream) {
  const int32_t blocks = table.first_block[table.n];
  if (blocks == 0) return;
  copy_spans_kernel<<<blocks, kCopyThreads, 0, stream>>>(table);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace zerotrain::detail
