// --bind_cores_to_rank: each local rank gets its own contiguous share of the node's cores, as DeepSpeed's
// launcher does with numactl -C, here through sched_setaffinity in the rank's process.
#pragma once

#include <string_view>
#include <vector>

namespace zerotrain::detail {

// Parses --bind_core_list, DeepSpeed's syntax: comma-separated numbers and inclusive ranges, ascending and
// not overlapping, e.g. "0,2-4,6" -> {0, 2, 3, 4, 6}.
std::vector<int> parse_core_list(std::string_view text);

// The CPUs this process may run on (sched_getaffinity), ascending.
std::vector<int> allowed_cpus();

// Rank `local_rank`'s share of `cores` among `num_local_ranks` ranks: floor(cores / ranks) consecutive entries
// (the remainder stays unused, as in DeepSpeed). Fewer cores than ranks is a LaunchError.
std::vector<int> cores_for_rank(const std::vector<int>& cores, int num_local_ranks, int local_rank);

}  // namespace zerotrain::detail
