// Schema validation of a parsed config: unknown keys (with "did you mean"), types, ranges and choices.
#pragma once

#include "config/diagnostics.h"
#include "config/json_reader.h"
#include "config/schema.h"

namespace zerotrain::detail {

// Checks every key of doc.root against the schema and records each problem in diag.errors.
void validate_document(const JsonDocument& doc, Diagnostics& diag);

// Checks one value against its spec; returns "" when it conforms, else the problem and what is allowed:
// "4 is out of range; allowed: an integer from 0 to 3".
std::string check_value(const KeySpec& spec, const Json& value);

// What a spec allows, in words: "an integer from 0 to 3, or \"auto\"".
std::string describe_allowed(const KeySpec& spec);

// True when `value` is "auto".
bool is_auto(const Json& value);

// An integral JSON number (5e8 counts) as int64; nullopt otherwise.
std::optional<int64_t> as_integer(const Json& value);

}  // namespace zerotrain::detail
