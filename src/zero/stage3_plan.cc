#include "zero/stage3_plan.h"

#include <algorithm>
#include <unordered_map>

#include "zerotrain/config.h"

namespace zerotrain::detail {

Stage3Plan plan_stage3(const std::vector<at::Tensor>& params, const std::vector<std::vector<at::Tensor>>& segments,
                       const Stage3PlanOptions& options) {
  const int n = static_cast<int>(params.size());
  std::unordered_map<const void*, int> index;
  for (int i = 0; i < n; ++i) index[params[i].unsafeGetTensorImpl()] = i;
  std::vector<char> persistent(n, 0);
  int64_t persistent_total = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t numel = params[i].numel();
    if (numel <= options.persistence_threshold && persistent_total + numel <= options.model_persistence_threshold) {
      persistent[i] = 1;
      persistent_total += numel;
    }
  }
  const int num_segments = static_cast<int>(segments.size());
  std::vector<int> owner(n, -1);
  for (int s = 0; s < num_segments; ++s) {
    for (const auto& p : segments[s]) {
      auto it = index.find(p.unsafeGetTensorImpl());
      if (it != index.end() && owner[it->second] < 0) owner[it->second] = s;
    }
  }
  Stage3Plan plan;
  std::vector<int> unit_of(n, -1);
  auto add_unit = [&](std::vector<int> members, bool keep) {
    if (members.empty()) return;
    for (int p : members) unit_of[p] = static_cast<int>(plan.groups.size());
    plan.groups.push_back(std::move(members));
    plan.persistent.push_back(keep);
  };
  // Last segment first: backward finishes the head's gradients first and the embedding's last. Small neighbours
  // join (see [Note: small units]): `open` collects them while the joined unit stays within merge_numel.
  std::vector<int> open;
  int64_t open_numel = 0;
  const int64_t pad = std::max<int64_t>(1, options.pad);
  const auto padded = [pad](int64_t numel) { return (numel + pad - 1) / pad * pad; };
  for (int s = num_segments - 1; s >= 0; --s) {
    std::vector<int> members;
    int64_t numel = 0;
    for (int i = n - 1; i >= 0; --i) {
      if (owner[i] == s && !persistent[i]) {
        members.push_back(i);
        numel += params[i].numel();
      }
    }
    if (members.empty()) continue;
    const bool small = padded(numel) < options.merge_numel;
    if (!open.empty() && (!small || padded(open_numel + numel) > options.merge_numel)) {
      add_unit(std::move(open), false);
      open.clear();
      open_numel = 0;
    }
    if (!small) {
      add_unit(std::move(members), false);
      continue;
    }
    open.insert(open.end(), members.begin(), members.end());
    open_numel += numel;
  }
  add_unit(std::move(open), false);
  std::vector<int> rest, kept;
  for (int i = n - 1; i >= 0; --i) {
    if (persistent[i]) {
      kept.push_back(i);
    } else if (owner[i] < 0) {
      rest.push_back(i);
    }
  }
  // Without segments the module is one unit; with them, parameters no segment reads are kept gathered.
  add_unit(std::move(rest), num_segments > 0);
  add_unit(std::move(kept), true);
  for (int s = 0; s < num_segments; ++s) {
    std::vector<int> units;
    for (const auto& p : segments[s]) {
      auto it = index.find(p.unsafeGetTensorImpl());
      if (it != index.end() && std::find(units.begin(), units.end(), unit_of[it->second]) == units.end()) {
        units.push_back(unit_of[it->second]);
      }
    }
    plan.segment_units.push_back(std::move(units));
  }
  return plan;
}

int64_t merge_numel_for(int64_t granularity_threshold, int64_t prefetch_bucket_size, int64_t max_live_parameters) {
  if (granularity_threshold >= 0) return granularity_threshold;
  return default_module_granularity_threshold(prefetch_bucket_size, max_live_parameters);
}

}  // namespace zerotrain::detail
