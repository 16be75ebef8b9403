// Rendering of an Estimate for `zerotrain estimate`: a text table and a JSON document.
#pragma once

#include <string>
#include <string_view>

#include "zerotrain/estimate.h"

namespace zerotrain::detail {

// Human-readable report: inputs, activation breakdown, one row per (stage, offload), recommendation, notes.
// model_name labels the model (a preset name), empty when the shape or count came from flags.
std::string render_estimate_text(const Estimate& estimate, std::string_view model_name);

// JSON report (2-space indent, stable key order); every byte count is an integer number of bytes.
std::string render_estimate_json(const Estimate& estimate, std::string_view model_name);

}  // namespace zerotrain::detail
