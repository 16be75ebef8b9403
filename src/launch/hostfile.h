// Hostfiles: the resource pool of a multi-node job, in DeepSpeed's (MPI-style) format.
//
//   # comment
//   worker-0 slots=8
//   worker-1 slots=8     # a trailing comment
//
// Order matters: node ranks follow the order of the lines.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zerotrain::detail {

// DeepSpeed's default hostfile (DLTS_HOSTFILE). When it does not exist the job runs on this machine only.
inline constexpr std::string_view kDefaultHostfile = "/job/hostfile";

// One hostfile line: a host and how many accelerators (ranks) it offers.
struct HostSlots {
  std::string host;
  int num_slots = 0;
  bool operator==(const HostSlots&) const = default;
};

// Hosts in hostfile order.
using ResourcePool = std::vector<HostSlots>;

// Parses hostfile text; `path` names the file in errors ("hostfile PATH:LINE: 'TEXT': ..."). Blank lines and
// '#' comments (whole-line or trailing) are skipped; every other line is `HOST slots=N` with N >= 1 (OpenMPI's
// `max_slots=M` is accepted and ignored). A host listed twice, or a file without hosts, is an error.
ResourcePool parse_hostfile(std::string_view text, std::string_view path);

// Reads and parses the hostfile at `path`; nullopt when no such file exists.
std::optional<ResourcePool> read_hostfile(const std::string& path);

}  // namespace zerotrain::detail
