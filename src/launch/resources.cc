#include "launch/resources.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>
#include <map>
#include <set>

#include "launch/error.h"

namespace zerotrain::detail {
namespace {

std::string host_list(const ResourcePool& pool) {
  std::vector<std::string> names;
  for (const auto& h : pool) names.push_back(h.host);
  return fmt::format("{}", fmt::join(names, ", "));
}

const HostSlots* find_host(const ResourcePool& pool, std::string_view host) {
  for (const auto& h : pool) {
    if (h.host == host) return &h;
  }
  return nullptr;
}

}  // namespace

std::vector<NodeSpec> parse_node_specs(std::string_view filter, std::string_view flag) {
  const auto bad = [&](std::string_view why) {
    return LaunchError(fmt::format("{} '{}': {}; the syntax is HOST[:SLOT[,SLOT...]][@HOST[:SLOT...]...], "
                                   "e.g. worker-0@worker-1:0,2",
                                   flag, filter, why));
  };
  std::vector<NodeSpec> specs;
  size_t start = 0;
  while (true) {
    size_t end = filter.find('@', start);
    if (end == std::string_view::npos) end = filter.size();
    const std::string_view spec = filter.substr(start, end - start);
    if (spec.empty()) throw bad("empty node spec");
    NodeSpec node;
    const size_t colon = spec.find(':');
    node.host = std::string(spec.substr(0, colon));
    if (node.host.empty()) throw bad(fmt::format("'{}' has no host name", spec));
    if (colon != std::string_view::npos) {
      const std::string_view list = spec.substr(colon + 1);
      if (list.find(':') != std::string_view::npos) throw bad(fmt::format("'{}' has more than one ':'", spec));
      size_t s = 0;
      while (true) {
        size_t e = list.find(',', s);
        if (e == std::string_view::npos) e = list.size();
        const std::string_view item = list.substr(s, e - s);
        int slot = -1;
        const auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), slot);
        if (item.empty() || ec != std::errc() || p != item.data() + item.size() || slot < 0) {
          throw bad(fmt::format("slot '{}' of {} is not a non-negative integer", item, node.host));
        }
        node.slots.push_back(slot);
        if (e == list.size()) break;
        s = e + 1;
      }
    }
    specs.push_back(std::move(node));
    if (end == filter.size()) break;
    start = end + 1;
  }
  return specs;
}

WorldInfo select_resources(const ResourcePool& pool, std::string_view include, std::string_view exclude) {
  if (!include.empty() && !exclude.empty()) {
    throw LaunchError(fmt::format("--include '{}' and --exclude '{}': give at most one of them", include, exclude));
  }
  // host -> chosen slots (include) or removed slots (exclude); an entry with all slots means the whole host.
  std::map<std::string, std::set<int>> picked;
  const bool including = !include.empty();
  const std::string_view filter = including ? include : exclude;
  const std::string_view flag = including ? "--include" : "--exclude";
  if (!filter.empty()) {
    for (const auto& spec : parse_node_specs(filter, flag)) {
      const HostSlots* host = find_host(pool, spec.host);
      if (!host) {
        throw LaunchError(fmt::format("{} '{}': host '{}' is not in the hostfile (hosts: {})", flag, filter,
                                      spec.host, host_list(pool)));
      }
      auto& set = picked[spec.host];
      if (spec.slots.empty()) {
        for (int s = 0; s < host->num_slots; ++s) set.insert(s);
      }
      for (int s : spec.slots) {
        if (s >= host->num_slots) {
          throw LaunchError(fmt::format("{} '{}': {} has no slot {}; its slots are 0-{} (slots={})", flag, filter,
                                        spec.host, s, host->num_slots - 1, host->num_slots));
        }
        set.insert(s);
      }
    }
  }
  WorldInfo world;
  for (const auto& host : pool) {
    NodeSlots node{host.host, {}};
    const auto it = picked.find(host.host);
    for (int s = 0; s < host.num_slots; ++s) {
      const bool listed = it != picked.end() && it->second.count(s) > 0;
      if (filter.empty() || listed == including) node.slots.push_back(s);
    }
    if (!node.slots.empty()) world.push_back(std::move(node));
  }
  if (world.empty()) throw LaunchError(fmt::format("{} '{}': leaves no slots to run on", flag, filter));
  return world;
}

WorldInfo limit_resources(WorldInfo world, const ResourcePool& pool, int num_nodes, int num_gpus) {
  if (num_nodes > 0) {
    if (num_nodes > static_cast<int>(world.size())) {
      throw LaunchError(fmt::format("--num_nodes {}: only {} node{} available ({})", num_nodes, world.size(),
                                    world.size() == 1 ? " is" : "s are", host_list(pool)));
    }
    world.resize(static_cast<size_t>(num_nodes));
  }
  if (num_gpus > 0) {
    for (auto& node : world) {
      const HostSlots* host = find_host(pool, node.host);
      if (host && num_gpus > host->num_slots) {
        throw LaunchError(fmt::format("--num_gpus {}: host {} has only {} slot{}", num_gpus, node.host,
                                      host->num_slots, host->num_slots == 1 ? "" : "s"));
      }
      node.slots.clear();
      for (int s = 0; s < num_gpus; ++s) node.slots.push_back(s);
    }
  }
  return world;
}

int world_size(const WorldInfo& world) {
  int n = 0;
  for (const auto& node : world) n += static_cast<int>(node.slots.size());
  return n;
}

}  // namespace zerotrain::detail
