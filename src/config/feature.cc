// Valid DeepSpeed settings that zerotrain does not implement yet. They are accepted by `config check`, listed
// under "not supported yet", and refused by the engine at startup (Config::require_supported): never silently
// ignored. A key belongs to such a feature when its schema entry carries a `feature` name; a few features are
// selected by a value rather than a key, and are listed here.
#include <map>

#include "config/config_data.h"
#include "config/schema.h"
#include "config/validate.h"

namespace zerotrain::detail {
namespace {

// Features chosen by a value of a key zerotrain otherwise honours. Remove an entry when the feature lands.
struct ValueFeature {
  std::string_view feature;
  std::string_view path;
  bool (*selected)(const Config::Data&);
};

const ValueFeature kValueFeatures[] = {
    // Offload to the CPU and to NVMe at stages 1-3 is implemented (zero_optimizer.h, swap_file.h); stage 0 is a
    // config error (build.cc).
    // DeepSpeed's ZeRO-3 partial offload (ZeRO Twin-Flow: part of the master and state stays on the device).
    {"partial optimizer offload", "zero_optimization.offload_optimizer.ratio",
     [](const Config::Data& d) {
       return d.zero.offload_optimizer.device != OffloadDevice::kNone && d.zero.offload_optimizer.ratio < 1.0;
     }},
    // ZeRO++ hierarchical partitioning over groups smaller than the world (a secondary copy per node); a group of the
    // whole world is ZeRO-3's own partitioning (build.cc says so).
    {"ZeRO++ hierarchical partitioning (hpZ)", "zero_optimization.zero_hpz_partition_size",
     [](const Config::Data& d) {
       return d.zero.stage == 3 && d.zero.hpz_partition_size > 1 && d.zero.hpz_partition_size < d.run.world_size;
     }},
    // Parameter offload to the CPU and to NVMe is implemented (param_units.h; without the optimizer's offload it has
    // nothing to move: build.cc warns).
};

// True when an ancestor section of `path` has an "enabled" key that is false: the section's other keys then
// configure nothing.
bool section_disabled(const Json& effective, std::string_view path) {
  size_t dot = path.rfind('.');
  while (dot != std::string_view::npos) {
    const std::string_view parent = path.substr(0, dot);
    if (const Json* enabled = find_path(effective, std::string(parent) + ".enabled");
        enabled != nullptr && enabled->is_boolean() && !enabled->get<bool>() && path != std::string(parent) + ".enabled") {
      return true;
    }
    dot = parent.rfind('.');
  }
  return false;
}

}  // namespace

void find_unsupported_features(const JsonDocument& doc, Config::Data& data) {
  std::map<std::string, std::string> used;  // feature -> the first key that turns it on
  auto add = [&](std::string_view feature, const std::string& why) {
    used.emplace(std::string(feature), why);
  };
  for (const auto& entry : data.effective) {
    if (entry.origin == ValueOrigin::kDefault || entry.origin == ValueOrigin::kDerived) continue;
    const KeySpec* spec = find_key_spec(entry.path);
    if (spec == nullptr || spec->feature.empty()) continue;
    const Json value = Json::parse(entry.value_json);
    if (!spec->def.empty() && value == Json::parse(spec->def)) continue;
    if (spec->def.empty() && value.is_null()) continue;
    if (section_disabled(data.effective_json, entry.path)) continue;
    add(spec->feature, entry.path + " = " + show_value(value));
  }
  // Sections with a feature that are turned on by their presence (zenflow: {} enables ZenFlow), unless their
  // "enabled" is false.
  for (const auto& spec : all_key_specs()) {
    if (spec.feature.empty() || (spec.type != KeyType::kObject && spec.type != KeyType::kMap)) continue;
    const Json* v = find_path(doc.root, spec.path);
    if (v == nullptr || v->is_null() || (spec.type == KeyType::kMap && v->empty())) continue;
    if (const Json* enabled = v->is_object() ? find_path(*v, "enabled") : nullptr;
        enabled != nullptr && enabled->is_boolean() && !enabled->get<bool>()) {
      continue;
    }
    add(spec.feature, std::string(spec.path));
  }
  for (const auto& vf : kValueFeatures) {
    if (vf.selected(data)) add(vf.feature, std::string(vf.path) + " = " + find_path(data.effective_json, vf.path)->dump());
  }
  if (data.optimizer.kind == OptimizerKind::kOther) add("optimizer " + data.optimizer.type, "optimizer.type");
  if (data.scheduler.kind == SchedulerKind::kOther) add("LR schedule " + data.scheduler.type, "scheduler.type");
  for (const auto& [feature, why] : used) data.unsupported.push_back(feature + " (" + why + ")");
}

}  // namespace zerotrain::detail
