// The state behind zerotrain::Config, and the steps that build it.
#pragma once

#include <string>
#include <vector>

#include "config/diagnostics.h"
#include "config/json_reader.h"
#include "zerotrain/config.h"

namespace zerotrain {

struct Config::Data {
  RunInfo run;
  BatchConfig batch;
  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  Precision precision = Precision::kFp32;
  Fp16Config fp16;
  Bf16Config bf16;
  ZeroConfig zero;
  AioConfig aio;
  GradientConfig gradients;
  LoggingConfig logging;
  AutotuningConfig autotuning;
  MonitorConfig monitor;
  std::vector<std::string> unsupported;
  std::vector<std::string> warnings;
  std::vector<EffectiveValue> effective;
  detail::Json effective_json;  // the effective config as nested DeepSpeed JSON
};

namespace detail {

// Fills data.effective / data.effective_json: every key's value from the file, "auto" resolved from the run,
// or DeepSpeed's default; then the batch triple and the stage-dependent defaults. Records errors in diag.
void resolve_effective(const JsonDocument& doc, Config::Data& data, Diagnostics& diag);

// Fills the typed structs from data.effective_json and checks the rules that span several keys
// (fp16 with bf16, NVMe without nvme_path, ...).
void build_typed(const JsonDocument& doc, Config::Data& data, Diagnostics& diag);

// Fills data.unsupported: the features this config turns on that zerotrain does not implement yet.
void find_unsupported_features(const JsonDocument& doc, Config::Data& data);

// Reads the value at a dotted path of a nested object; nullptr when absent.
const Json* find_path(const Json& root, std::string_view dotted);

}  // namespace detail
}  // namespace zerotrain
