// DeepSpeed's alternative and deprecated key names, rewritten to the canonical ones before validation.
#pragma once

#include "config/diagnostics.h"
#include "config/json_reader.h"

namespace zerotrain::detail {

// Rewrites doc.root in place: "bfloat16" -> "bf16"; the legacy boolean "zero_optimization"; zero's deprecated
// cpu_offload / cpu_offload_param / cpu_offload_use_pin_memory / stage3_gather_fp16_weights_on_model_save; and
// zero's pydantic field names (prefetch_bucket_size, ...) -> their stage3_* names. Deprecated keys warn; a key
// given under both names is an error.
void apply_aliases(JsonDocument& doc, Diagnostics& diag);

}  // namespace zerotrain::detail
