#include "engine/memory_report.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "zerotrain/memory.h"

namespace zerotrain::detail {

void see_memory_usage(const char* message, c10::Device device, bool reset_peak) {
  const MemoryStats s = memory_stats(device);
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  auto gb = [&](int64_t b) { return std::round(static_cast<double>(b) / kGiB * 100) / 100; };
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0, total = 0, available = 0;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemTotal:") total = kib;
    if (key == "MemAvailable:") available = kib;
  }
  const double used = static_cast<double>(total - available) * 1024;
  fmt::print("{}\nMA {:g} GB         Max_MA {:g} GB         CA {:g} GB         Max_CA {:g} GB \n"
             "CPU Virtual Memory:  used = {:g} GB, percent = {:g}%\n",
             message, gb(s.current_bytes), gb(s.peak_bytes), gb(s.reserved_bytes),
             std::round(static_cast<double>(s.peak_reserved_bytes) / kGiB), std::round(used / kGiB * 100) / 100,
             total > 0 ? std::round(1000.0 * (total - available) / total) / 10 : 0.0);
  std::fflush(stdout);
  if (reset_peak) reset_peak_memory(device);
}

}  // namespace zerotrain::detail
