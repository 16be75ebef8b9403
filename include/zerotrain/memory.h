// Memory in use, for progress lines and benchmarks.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>

namespace zerotrain {

struct MemoryStats {
  int64_t current_bytes = 0;  // CUDA: bytes allocated by the caching allocator; CPU: resident set size
  int64_t peak_bytes = 0;     // CUDA: peak allocated since start (or reset); CPU: peak resident set size
  int64_t reserved_bytes = 0;       // CUDA: held by the caching allocator (allocated + cached); CPU: 0
  int64_t peak_reserved_bytes = 0;  // CUDA: its peak since start (or reset); CPU: 0
};

// Memory of `device` as seen by this process.
MemoryStats memory_stats(c10::Device device);

// Starts a new CUDA peak measurement (no-op on CPU).
void reset_peak_memory(c10::Device device);

}  // namespace zerotrain
