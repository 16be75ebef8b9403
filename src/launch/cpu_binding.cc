#include "launch/cpu_binding.h"

#include <fmt/format.h>
#include <sched.h>

#include <charconv>

#include "launch/error.h"

namespace zerotrain::detail {
namespace {

int parse_core(std::string_view item, std::string_view text) {
  int v = -1;
  const auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
  if (item.empty() || ec != std::errc() || p != item.data() + item.size() || v < 0) {
    throw LaunchError(fmt::format("--bind_core_list '{}': '{}' is not a core number; the syntax is N or N-M, "
                                  "comma-separated, e.g. 0,2-4,6",
                                  text, item));
  }
  return v;
}

}  // namespace

std::vector<int> parse_core_list(std::string_view text) {
  std::vector<int> cores;
  size_t pos = 0;
  while (true) {
    size_t end = text.find(',', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view item = text.substr(pos, end - pos);
    const size_t dash = item.find('-');
    const int first = parse_core(item.substr(0, dash), text);
    const int last = dash == std::string_view::npos ? first : parse_core(item.substr(dash + 1), text);
    if (last < first) {
      throw LaunchError(fmt::format("--bind_core_list '{}': range '{}' ends before it starts", text, item));
    }
    if (!cores.empty() && first <= cores.back()) {
      throw LaunchError(fmt::format("--bind_core_list '{}': '{}' overlaps or precedes the cores before it; list "
                                    "ranges in ascending order",
                                    text, item));
    }
    for (int c = first; c <= last; ++c) cores.push_back(c);
    if (end == text.size()) break;
    pos = end + 1;
  }
  return cores;
}

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

std::vector<int> cores_for_rank(const std::vector<int>& cores, int num_local_ranks, int local_rank) {
  const int per_rank = static_cast<int>(cores.size()) / num_local_ranks;
  if (per_rank < 1) {
    throw LaunchError(fmt::format("--bind_cores_to_rank: {} ranks on this node but only {} cores to bind them to",
                                  num_local_ranks, cores.size()));
  }
  return {cores.begin() + per_rank * local_rank, cores.begin() + per_rank * (local_rank + 1)};
}

}  // namespace zerotrain::detail
