// The autotuner's search space, read from the user's DeepSpeed config as DeepSpeed's autotuner reads it: a list in
// place of a value makes that key a knob to tune ("zero_optimization": {"stage": [2, 3], "reduce_bucket_size":
// [5e7, 5e8]}, "train_micro_batch_size_per_gpu": [1, 4, 16]); everything else is used as written.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/json_reader.h"

namespace zerotrain::detail {

// One knob: a dotted config key and the values to try.
struct Knob {
  std::string key;          // "zero_optimization.reduce_bucket_size"
  std::vector<Json> values;
};

// What the user's config asks the autotuner to search.
struct UserSpace {
  Json base;                                   // the config with every list replaced by its first value
  std::vector<int> stages;                     // ZeRO stages to explore, ascending
  std::optional<std::vector<int64_t>> micro_batch_sizes;  // a list in train_micro_batch_size_per_gpu
  std::optional<int64_t> micro_batch;          // an integer train_micro_batch_size_per_gpu
  int64_t gradient_accumulation_steps = 1;     // an integer in the config, else 1
  std::vector<Knob> zero_knobs;                // zero_optimization keys given as lists (stage excluded)
  std::vector<std::string> fixed_zero_keys;    // zero_optimization keys given one value: never tuned
};

// Reads the search from a user config. `source` names the config in errors. Throws ConfigError naming the key
// for values the autotuner cannot use (a stage outside 0-3, a non-integer micro-batch size, a list of
// gradient_accumulation_steps).
UserSpace read_user_space(const Json& config, const std::string& source);

// zerotrain's default knobs for a stage when autotuning.fast is false (DeepSpeed's DEFAULT_TUNING_SPACE_ZERO_N,
// less the keys that change nothing in zerotrain; docs/autotuning.md), with the user's lists in their place and
// without the keys the user fixed to one value.
std::vector<Knob> stage_knobs(int stage, const UserSpace& space);

// Every combination of the knobs' values (the first knob varies slowest), as (key, value) assignments.
std::vector<std::vector<std::pair<std::string, Json>>> combinations(const std::vector<Knob>& knobs);

// Sets a dotted key in a JSON object, creating objects on the way.
void set_path(Json& root, const std::string& dotted, Json value);

// A short name of a value for experiment names: 500000000 -> "5e8", true -> "true", 4 -> "4".
std::string value_name(const Json& v);

// An abbreviation of a key for experiment names, DeepSpeed's style: "zero_optimization.reduce_bucket_size" -> "rbs".
std::string key_abbreviation(const std::string& dotted);

}  // namespace zerotrain::detail
