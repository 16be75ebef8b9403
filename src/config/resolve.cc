// The effective config: each key's value and where it came from.
#include <cmath>
#include <set>

#include "config/config_data.h"
#include "config/schema.h"
#include "config/validate.h"

namespace zerotrain::detail {
namespace {

struct Resolved {
  Json value;
  std::string note;
};

// "auto" values a run can resolve, as Hugging Face's DeepSpeed integration does (bucket sizes from the hidden
// size; lr and steps from the training arguments). Anything else keeps DeepSpeed's default: DeepSpeed itself
// drops "auto" values before reading a section.
std::optional<Resolved> resolve_auto(std::string_view path, const RunInfo& run) {
  auto from = [](std::optional<int64_t> v, const char* what) -> std::optional<Resolved> {
    if (!v) return std::nullopt;
    return Resolved{Json(*v), std::string("auto: ") + what};
  };
  auto from_d = [](std::optional<double> v, const char* what) -> std::optional<Resolved> {
    if (!v) return std::nullopt;
    return Resolved{Json(*v), std::string("auto: ") + what};
  };
  if (path == "train_micro_batch_size_per_gpu") return from(run.micro_batch_per_gpu, "the run's micro-batch");
  if (path == "gradient_accumulation_steps") return from(run.gradient_accumulation_steps, "the run's accumulation");
  if (path == "optimizer.params.lr" || path == "scheduler.params.warmup_max_lr") return from_d(run.lr, "the run's lr");
  if (path == "optimizer.params.weight_decay") return from_d(run.weight_decay, "the run's weight decay");
  if (path == "scheduler.params.total_num_steps") return from(run.total_num_steps, "the run's total steps");
  if (path == "scheduler.params.warmup_num_steps") return from(run.warmup_num_steps, "the run's warmup steps");
  if (run.hidden_size) {
    const int64_t h = *run.hidden_size;
    if (path == "zero_optimization.reduce_bucket_size") return Resolved{Json(h * h), "auto: hidden_size^2"};
    if (path == "zero_optimization.stage3_prefetch_bucket_size") {
      return Resolved{Json(static_cast<int64_t>(0.9 * static_cast<double>(h * h))), "auto: 0.9 * hidden_size^2"};
    }
    if (path == "zero_optimization.stage3_param_persistence_threshold") {
      return Resolved{Json(10 * h), "auto: 10 * hidden_size"};
    }
  }
  return std::nullopt;
}

// Sections always shown in the effective config (with their defaults) even when the file omits them.
const std::set<std::string, std::less<>> kCoreSections = {"fp16", "bf16", "zero_optimization", "aio", "data_types"};

std::string top_section(std::string_view path) {
  const size_t dot = path.find('.');
  return std::string(dot == std::string_view::npos ? path : path.substr(0, dot));
}

// True when an ancestor object of `path` is written as null in the file (DeepSpeed's Optional sections).
bool under_null_section(const Json& root, std::string_view path) {
  size_t dot = path.find('.');
  while (dot != std::string_view::npos) {
    const Json* v = find_path(root, path.substr(0, dot));
    if (v != nullptr && v->is_null()) return true;
    dot = path.find('.', dot + 1);
  }
  return false;
}

void set_path(Json& root, std::string_view dotted, Json value) {
  Json* cur = &root;
  size_t begin = 0;
  while (true) {
    const size_t end = dotted.find('.', begin);
    const std::string key(dotted.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin));
    if (end == std::string_view::npos) {
      (*cur)[key] = std::move(value);
      return;
    }
    Json& next = (*cur)[key];
    if (!next.is_object()) next = Json::object();
    cur = &next;
    begin = end + 1;
  }
}

EffectiveValue* find_entry(std::vector<EffectiveValue>& entries, std::string_view path) {
  for (auto& e : entries) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

void resolve_batch_triple(Config::Data& data, Diagnostics& diag) {
  auto given = [&](const char* path) -> std::optional<int64_t> {
    EffectiveValue* e = find_entry(data.effective, path);
    if (e == nullptr) return std::nullopt;
    const Json v = Json::parse(e->value_json);
    return as_integer(v);
  };
  const auto train = given("train_batch_size"), micro = given("train_micro_batch_size_per_gpu"),
             gas = given("gradient_accumulation_steps");
  try {
    data.batch = resolve_batch(train, micro, gas, data.run.world_size);
  } catch (const ConfigError& e) {
    for (const auto& msg : e.errors()) diag.errors.push_back("batch size: " + msg);
    return;
  }
  const std::pair<const char*, int64_t> triple[] = {{"train_batch_size", data.batch.train_batch_size},
                                                    {"train_micro_batch_size_per_gpu", data.batch.micro_batch_per_gpu},
                                                    {"gradient_accumulation_steps",
                                                     data.batch.gradient_accumulation_steps}};
  for (const auto& [path, value] : triple) {
    EffectiveValue* e = find_entry(data.effective, path);
    if (e->origin == ValueOrigin::kFile) continue;
    const bool was_auto = e->origin == ValueOrigin::kAuto;
    if (was_auto && given(path)) continue;  // resolved from the run
    e->value_json = Json(value).dump();
    e->origin = ValueOrigin::kDerived;
    e->note = std::string(was_auto ? "auto: " : "") + "train_batch_size = micro * gas * world_size (" +
              std::to_string(data.run.world_size) + " ranks)";
    set_path(data.effective_json, path, Json(value));
  }
}

}  // namespace

const Json* find_path(const Json& root, std::string_view dotted) {
  const Json* cur = &root;
  size_t begin = 0;
  while (begin <= dotted.size()) {
    size_t end = dotted.find('.', begin);
    if (end == std::string_view::npos) end = dotted.size();
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(std::string(dotted.substr(begin, end - begin)));
    if (it == cur->end()) return nullptr;
    cur = &*it;
    begin = end + 1;
  }
  return cur;
}

void resolve_effective(const JsonDocument& doc, Config::Data& data, Diagnostics& diag) {
  const Json& root = doc.root;
  std::set<std::string> sections_in_file;
  for (const auto& [key, value] : root.items()) sections_in_file.insert(key);

  std::vector<KeySpec> specs(all_key_specs().begin(), all_key_specs().end());
  for (const auto& dep : dependent_sections()) {
    const Json* selector = find_path(root, dep.selector);
    if (selector == nullptr || !selector->is_string()) continue;
    if (auto children = dep.children(selector->get<std::string>())) {
      specs.insert(specs.end(), children->begin(), children->end());
    }
  }

  data.effective_json = Json::object();
  for (const KeySpec& spec : specs) {
    if (spec.type == KeyType::kObject || spec.path.find('*') != std::string_view::npos) continue;
    // The sections zerotrain implements are always listed; others only when the file mentions them.
    const std::string top = top_section(spec.path);
    const bool top_level_key = top == spec.path;
    const bool core_section = top_level_key || kCoreSections.contains(top);
    if (core_section) {
      // Keys of features zerotrain lacks are shown only when written.
      if (!spec.feature.empty() && find_path(root, spec.path) == nullptr) continue;
    } else if (!sections_in_file.contains(top)) {
      continue;
    }
    const Json* in_file = under_null_section(root, spec.path) ? nullptr : find_path(root, spec.path);
    EffectiveValue entry{std::string(spec.path), "", ValueOrigin::kDefault, ""};
    Json value;
    if (in_file != nullptr && is_auto(*in_file) && spec.rule.allow_auto) {
      entry.origin = ValueOrigin::kAuto;
      if (auto r = resolve_auto(spec.path, data.run)) {
        value = r->value;
        entry.note = r->note;
      } else {
        value = spec.def.empty() ? Json(nullptr) : Json::parse(spec.def);
        entry.note = spec.def.empty() ? "auto: resolved at run time" : "auto: nothing in the run sets it, DeepSpeed's default applies";
      }
    } else if (in_file != nullptr) {
      entry.origin = ValueOrigin::kFile;
      value = *in_file;
    } else {
      value = spec.def.empty() ? Json(nullptr) : Json::parse(spec.def);
      if (spec.def.empty()) entry.note = "unset";
    }
    entry.value_json = value.dump(-1, ' ', false, Json::error_handler_t::replace);
    set_path(data.effective_json, spec.path, std::move(value));
    data.effective.push_back(std::move(entry));
  }

  resolve_batch_triple(data, diag);

  // overlap_comm: unset means true at stage 3 and false below (zero/config.py overlap_comm_valid).
  if (EffectiveValue* e = find_entry(data.effective, "zero_optimization.overlap_comm"); e && e->value_json == "null") {
    const Json* stage = find_path(data.effective_json, "zero_optimization.stage");
    const bool on = stage != nullptr && as_integer(*stage) == 3;
    e->value_json = on ? "true" : "false";
    e->origin = ValueOrigin::kDerived;
    e->note = "unset: true at stage 3, false below";
    set_path(data.effective_json, "zero_optimization.overlap_comm", Json(on));
  }
  // stage3_module_granularity_threshold: unset means stage 3 joins its units below an eighth of the smaller of the
  // prefetch bucket and the live-parameter limit (zero/stage3_plan.h, [Note: small units]).
  if (EffectiveValue* e = find_entry(data.effective, "zero_optimization.stage3_module_granularity_threshold");
      e && e->value_json == "null") {
    const Json* stage = find_path(data.effective_json, "zero_optimization.stage");
    const Json* prefetch = find_path(data.effective_json, "zero_optimization.stage3_prefetch_bucket_size");
    const Json* live = find_path(data.effective_json, "zero_optimization.stage3_max_live_parameters");
    if (stage != nullptr && as_integer(*stage) == 3 && prefetch != nullptr && live != nullptr &&
        as_integer(*prefetch) && as_integer(*live)) {
      const int64_t merge = default_module_granularity_threshold(*as_integer(*prefetch), *as_integer(*live));
      e->value_json = std::to_string(merge);
      e->origin = ValueOrigin::kDerived;
      e->note = "unset: stage 3 joins neighbouring units below min(stage3_prefetch_bucket_size, "
                "stage3_max_live_parameters) / 8";
      set_path(data.effective_json, "zero_optimization.stage3_module_granularity_threshold", Json(merge));
    }
  }

  // Rebuild in schema order; unset keys (no value, no default) are absent, as in DeepSpeed's own view.
  data.effective_json = Json::object();
  for (const auto& e : data.effective) {
    if (e.origin == ValueOrigin::kDefault && e.value_json == "null") continue;
    set_path(data.effective_json, e.path, Json::parse(e.value_json));
  }
}

}  // namespace zerotrain::detail
