// Many small same-dtype copies within one device as one operation: the gradient path's landing (each parameter's
// gradient into its range of a flat buffer) without a tensor view per gradient.
//
// A view per copy (as_strided: a dispatcher call and a TensorImpl) and a multi-tensor copy's per-tensor checks cost
// the host ~2 us per gradient; on a model of many small parameters that is a visible share of the step
// (docs/performance.md, session 9). Here a copy is three numbers: on CUDA the spans go to the device as the kernel's
// argument (up to kMaxSpans per launch) and each block copies a slice of one span with the widest loads its
// alignment allows; on the host each span is a memcpy.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <vector>

namespace zerotrain::detail {

struct CopySpan {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t bytes = 0;
};

// Copies every span (source and destination must not overlap) on `device`: a CUDA device's current stream, in
// stream order like any kernel (the caller keeps the sources alive until then: freeing a caching-allocator tensor
// after this call is stream-ordered), or the host, at once.
void copy_spans(const std::vector<CopySpan>& spans, const c10::Device& device);

}  // namespace zerotrain::detail
