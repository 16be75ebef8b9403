// The DeepSpeed config schema: one KeySpec per key DeepSpeed reads, with DeepSpeed's code default.
// This table is the only place DeepSpeed key strings appear (with alias.cc and the struct builders in
// src/config/). Validation, defaults, "where did this value come from" and the "not supported yet" list are
// all derived from it.
#pragma once

#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace zerotrain::detail {

// The JSON type a key accepts.
enum class KeyType : unsigned char {
  kBool,    // true / false
  kInt,     // an integer; an integral float such as 5e8 is accepted, as pydantic does
  kNumber,  // any finite number
  kString,  // a string; Rule::choices restricts it
  kList,    // a JSON array; Rule::elem gives the element type (kAny = unchecked)
  kObject,  // a JSON object whose children are declared by other KeySpecs ("parent.child")
  kMap,     // a JSON object with user-chosen keys (e.g. compression groups); children with path "parent.*"
            // are checked when declared, otherwise values are not checked
  kAny,     // any JSON value (only for free-form pass-through such as autotuning.arg_mappings values)
};

inline constexpr double kNoLimit = std::numeric_limits<double>::infinity();

// Constraints beyond the type. Defaults mean "no constraint".
struct Rule {
  double min = -kNoLimit;           // inclusive lower bound for kInt / kNumber
  double max = kNoLimit;            // inclusive upper bound
  bool min_exclusive = false;       // true: value must be > min
  std::string_view choices = {};    // kString: allowed values separated by '|', e.g. "cpu|nvme|none"
  bool choices_ignore_case = false; // compare choices case-insensitively (DeepSpeed lower()s these)
  KeyType elem = KeyType::kAny;     // kList: element type
  bool nullable = false;            // JSON null is accepted (DeepSpeed's Optional[...] = None)
  bool allow_auto = false;          // the string "auto" is accepted and resolved at run time
  KeyType alt = KeyType::kAny;      // a second accepted type (e.g. a key that takes a bool or an object);
                                    // kAny = none
};

// One key DeepSpeed reads.
struct KeySpec {
  std::string_view path;     // dotted path from the top level, e.g. "zero_optimization.offload_param.device"
  KeyType type;
  std::string_view def;      // DeepSpeed's code default as JSON text ("5e8", "true", "\"cpu\""); empty = none
  std::string_view doc;      // one line: what it does
  Rule rule = {};
  std::string_view feature = {};  // non-empty: the DeepSpeed feature this key belongs to, which zerotrain does
                                  // not implement yet (see feature.cc); empty: zerotrain honours the key
};

// Every key, top-level and nested, in a stable order (top-level sections in DeepSpeed's order).
std::span<const KeySpec> all_key_specs();

// The spec for `path` ("a.b.c"; map children match "a.*"), or nullptr.
const KeySpec* find_key_spec(std::string_view path);

// A section whose children depend on a sibling's value: optimizer.params on optimizer.type, scheduler.params
// on scheduler.type.
struct DependentSection {
  std::string_view path;      // "optimizer.params"
  std::string_view selector;  // "optimizer.type"
  // The children's specs for a selector value (paths are full: "optimizer.params.lr"), or nullopt when the
  // value names something whose parameters zerotrain does not model (then the children are not checked).
  std::optional<std::vector<KeySpec>> (*children)(std::string_view selector_value);
};
std::span<const DependentSection> dependent_sections();

// Section tables, one per file schema_<section>.cc. all_key_specs() concatenates them.
std::vector<KeySpec> schema_top_level();     // batch triple, scalars (gradient_clipping, steps_per_print, ...)
std::vector<KeySpec> schema_optimizer();     // optimizer, scheduler
std::vector<KeySpec> schema_precision();     // fp16, bf16, amp, torch_autocast, data_types
std::vector<KeySpec> schema_zero();          // zero_optimization and its offload sub-sections
std::vector<KeySpec> schema_io();            // aio, checkpoint, nebula, datastates
std::vector<KeySpec> schema_monitoring();    // flops_profiler, tensorboard, csv_monitor, wandb, comet,
                                             // comms_logger, timers, activation_checkpointing
std::vector<KeySpec> schema_features();
std::vector<KeySpec> schema_compression();   // compression_training      // autotuning, elasticity, pipeline, tensor_parallel,
                                             // compression_training, sparse_attention, data_efficiency,
                                             // curriculum_learning, progressive_layer_drop, eigenvalue,
                                             // hybrid_engine, compile, weight_quantization, ...

}  // namespace zerotrain::detail
