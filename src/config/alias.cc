#include "config/alias.h"

#include <string>

namespace zerotrain::detail {
namespace {

// Moves obj[from] to obj[to]. Both given is an error (DeepSpeed silently prefers one of them).
void rename_key(JsonDocument& doc, Json& obj, const std::string& parent, const std::string& from,
                const std::string& to, bool deprecated, Diagnostics& diag) {
  if (!obj.contains(from)) return;
  const std::string from_path = join_path(parent, from), to_path = join_path(parent, to);
  if (obj.contains(to)) {
    diag.error(from_path, "\"" + from + "\" and \"" + to + "\" name the same setting; give only \"" + to + "\"");
    return;
  }
  if (deprecated) diag.warn(from_path, "\"" + from + "\" is deprecated; read as \"" + to + "\"");
  obj[to] = std::move(obj[from]);
  obj.erase(from);
  // Keep positions pointing at what the user wrote, under the new name.
  std::vector<std::pair<std::string, TextPos>> moved;
  for (const auto& [p, pos] : doc.positions) {
    if (p == from_path || p.starts_with(from_path + ".") || p.starts_with(from_path + "[")) {
      moved.emplace_back(to_path + p.substr(from_path.size()), pos);
    }
  }
  for (auto& [p, pos] : moved) doc.positions[p] = pos;
}

// cpu_offload / cpu_offload_param: a boolean that becomes an offload section with device "cpu".
void bool_to_offload(JsonDocument& doc, Json& zero, const std::string& from, const std::string& to,
                     Diagnostics& diag) {
  if (!zero.contains(from)) return;
  const std::string from_path = "zero_optimization." + from;
  Json value = zero[from];
  if (!value.is_boolean() && !value.is_null()) {
    diag.error(from_path, show_value(value) + " is not a boolean; allowed: true, false or null (deprecated key: use \"" +
                              to + "\": {\"device\": \"cpu\"})");
    return;
  }
  if (zero.contains(to) && !zero[to].is_null()) {
    diag.error(from_path, "\"" + from + "\" and \"" + to + "\" both given; give only \"" + to + "\"");
    return;
  }
  diag.warn(from_path, "\"" + from + "\" is deprecated; read as \"" + to + "\": {\"device\": \"" +
                           (value == true ? "cpu" : "none") + "\"}");
  if (value == true) {
    zero[to] = Json{{"device", "cpu"}};
    doc.positions["zero_optimization." + to] = doc.positions[from_path];
    doc.positions["zero_optimization." + to + ".device"] = doc.positions[from_path];
  }
  zero.erase(from);
}

}  // namespace

void apply_aliases(JsonDocument& doc, Diagnostics& diag) {
  Json& root = doc.root;
  if (!root.is_object()) return;
  rename_key(doc, root, "", "bfloat16", "bf16", /*deprecated=*/true, diag);

  // Legacy form "zero_optimization": true|false (stage 1 or 0, bucket from the top-level "allgather_size").
  if (root.contains("zero_optimization") && root["zero_optimization"].is_boolean()) {
    const bool on = root["zero_optimization"].get<bool>();
    diag.warn("zero_optimization", std::string("a boolean zero_optimization is deprecated; read as {\"stage\": ") +
                                       (on ? "1" : "0") + "}");
    Json zero = Json{{"stage", on ? 1 : 0}};
    if (root.contains("allgather_size")) {
      if (on) zero["allgather_bucket_size"] = root["allgather_size"];
      doc.positions["zero_optimization.allgather_bucket_size"] = doc.positions["allgather_size"];
      root.erase("allgather_size");
    }
    root["zero_optimization"] = std::move(zero);
    doc.positions["zero_optimization.stage"] = doc.positions["zero_optimization"];
  }

  // aio.thread_count: the old name of intra_op_parallelism (still in DeepSpeed's docs; its code ignores it).
  if (root.contains("aio") && root["aio"].is_object()) {
    rename_key(doc, root["aio"], "aio", "thread_count", "intra_op_parallelism", /*deprecated=*/true, diag);
  }
  // tensor_parallel: pydantic accepts both the field names and their aliases.
  if (root.contains("tensor_parallel") && root["tensor_parallel"].is_object()) {
    rename_key(doc, root["tensor_parallel"], "tensor_parallel", "tensor_parallel", "tp", /*deprecated=*/false, diag);
    rename_key(doc, root["tensor_parallel"], "tensor_parallel", "kernel_inject", "replace_with_kernel_inject",
               /*deprecated=*/false, diag);
  }

  // autotuning.start_step / end_step: DeepSpeed's AUTOTUNING_FORMAT text (and the seed's example) name them, its code
  // reads start_profile_step / end_profile_step (and silently ignores these): read under the names the code reads.
  if (root.contains("autotuning") && root["autotuning"].is_object()) {
    for (const char* name : {"start", "end"}) {
      const std::string from = std::string(name) + "_step";
      if (root["autotuning"].contains(from)) {
        diag.warn("autotuning." + from, "\"" + from + "\" is the name in DeepSpeed's documentation, which its code "
                                        "ignores; read as \"" + name + "_profile_step\"");
      }
      rename_key(doc, root["autotuning"], "autotuning", from, std::string(name) + "_profile_step",
                 /*deprecated=*/false, diag);
    }
  }

  if (!root.contains("zero_optimization") || !root["zero_optimization"].is_object()) return;
  Json& zero = root["zero_optimization"];
  const std::string zp = "zero_optimization";
  bool_to_offload(doc, zero, "cpu_offload", "offload_optimizer", diag);
  bool_to_offload(doc, zero, "cpu_offload_param", "offload_param", diag);
  if (zero.contains("cpu_offload_use_pin_memory")) {
    // DeepSpeed marks it deprecated without a replacement value: it has no effect there either.
    diag.warn(zp + ".cpu_offload_use_pin_memory",
              "\"cpu_offload_use_pin_memory\" is deprecated and has no effect; set \"pin_memory\" in "
              "\"offload_optimizer\" / \"offload_param\" (default true)");
    zero.erase("cpu_offload_use_pin_memory");
  }
  rename_key(doc, zero, zp, "stage3_gather_fp16_weights_on_model_save", "stage3_gather_16bit_weights_on_model_save",
             /*deprecated=*/true, diag);
  // DeepSpeed's pydantic field names, equally valid there: read under the documented stage3_* names.
  for (const char* name : {"prefetch_bucket_size", "param_persistence_threshold", "model_persistence_threshold",
                           "max_live_parameters", "max_reuse_distance", "gather_16bit_weights_on_model_save",
                           "module_granularity_threshold", "use_all_reduce_for_fetch_params",
                           "allgather_sequential"}) {
    rename_key(doc, zero, zp, name, std::string("stage3_") + name, /*deprecated=*/false, diag);
  }
}

}  // namespace zerotrain::detail
