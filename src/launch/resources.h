// Which accelerator slots of which hosts a job uses: DeepSpeed's --include/--exclude filter over the resource
// pool, then --num_nodes/--num_gpus.
//
// Filter syntax (DeepSpeed's): NODE_SPEC[@NODE_SPEC ...] with NODE_SPEC = HOST[:SLOT[,SLOT ...]]. A host
// without slots means all its slots. "worker-0@worker-1:0,2" uses all of worker-0 and slots 0 and 2 of
// worker-1; `-e worker-1:0` uses everything but slot 0 of worker-1. A host may appear more than once (the
// slots are merged). The result keeps hostfile order, whatever the order in the filter.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "launch/hostfile.h"

namespace zerotrain::detail {

// The slots (accelerator ids, ascending) one node runs ranks on.
struct NodeSlots {
  std::string host;
  std::vector<int> slots;
  bool operator==(const NodeSlots&) const = default;
};

// The nodes of a job in node-rank order; DeepSpeed calls this the world info.
using WorldInfo = std::vector<NodeSlots>;

// One parsed NODE_SPEC.
struct NodeSpec {
  std::string host;
  std::vector<int> slots;  // empty: the whole host
  bool operator==(const NodeSpec&) const = default;
};

// Parses a filter string; `flag` ("--include", "--exclude") names it in errors.
std::vector<NodeSpec> parse_node_specs(std::string_view filter, std::string_view flag);

// The pool with every host's slots 0..N-1, filtered by `include` or `exclude` (at most one may be non-empty).
// Unknown hosts and slots are errors, and so is a filter that leaves nothing to run on.
WorldInfo select_resources(const ResourcePool& pool, std::string_view include, std::string_view exclude);

// Keeps the first `num_nodes` nodes (when > 0) and gives every node slots 0..num_gpus-1 (when > 0). Asking for
// more nodes than there are, or more slots than a host has in `pool`, is an error.
WorldInfo limit_resources(WorldInfo world, const ResourcePool& pool, int num_nodes, int num_gpus);

// The number of ranks: the sum of the nodes' slot counts.
int world_size(const WorldInfo& world);

}  // namespace zerotrain::detail
