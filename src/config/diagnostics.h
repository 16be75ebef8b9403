// Errors and warnings collected while reading a config, each pointing at the JSON path (and the line and
// column where the value was written).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/json_reader.h"

namespace zerotrain::detail {

struct Diagnostics {
  const JsonDocument* doc = nullptr;  // for line/column lookups; may be null
  std::vector<std::string> errors;
  std::vector<std::string> warnings;

  // "zero_optimization.stage (line 4, column 14)"; the position is omitted when unknown.
  std::string where(std::string_view path) const;
  void error(std::string_view path, std::string_view message) { errors.push_back(where(path) + ": " + std::string(message)); }
  void warn(std::string_view path, std::string_view message) { warnings.push_back(where(path) + ": " + std::string(message)); }
};

// A JSON value as a user wrote it, shortened for messages: 4, "two", [0.9, 0.999], {...}.
std::string show_value(const Json& value);

}  // namespace zerotrain::detail
