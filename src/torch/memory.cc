#include "zerotrain/memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>

#ifdef ZEROTRAIN_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace zerotrain {

MemoryStats memory_stats(c10::Device device) {
  MemoryStats s;
#ifdef ZEROTRAIN_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    const auto& all = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
    s.current_bytes = all.current;
    s.peak_bytes = all.peak;
    const auto& reserved = stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
    s.reserved_bytes = reserved.current;
    s.peak_reserved_bytes = reserved.peak;
    return s;
  }
#endif
  (void)device;
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  if (statm >> pages >> resident) s.current_bytes = resident * sysconf(_SC_PAGESIZE);
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) == 0) s.peak_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  return s;
}

void reset_peak_memory(c10::Device device) {
#ifdef ZEROTRAIN_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif
  (void)device;
}

}  // namespace zerotrain
