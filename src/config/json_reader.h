// Reading DeepSpeed JSON text. DeepSpeed reads config files with hjson; zerotrain accepts strict JSON plus the
// two hjson habits seen in real configs: comments (// ... , /* ... */ and # ...) and trailing commas.
// Unlike nlohmann's parser this one rejects duplicate keys, records the line and column of every value so that
// validation errors can point at it, and bounds nesting depth (the reader is fuzzed: tests/fuzz).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <unordered_map>

namespace zerotrain::detail {

using Json = nlohmann::ordered_json;  // keeps the file's key order for reports

struct TextPos {
  int line = 0;    // 1-based
  int column = 0;  // 1-based, in bytes
};

struct JsonDocument {
  Json root;
  // Position of each value by path: "zero_optimization.stage", "optimizer.params.betas[1]"; "" is the root.
  std::unordered_map<std::string, TextPos> positions;
};

inline constexpr int kMaxJsonDepth = 128;

// Parses `text`. Throws ConfigError("<source>:<line>:<col>: <what>") on invalid JSON, a duplicate key or
// nesting deeper than kMaxJsonDepth.
JsonDocument read_json(std::string_view text, std::string_view source);

// Joins a path and a key: ("a.b", "c") -> "a.b.c"; ("", "c") -> "c".
std::string join_path(std::string_view parent, std::string_view key);

}  // namespace zerotrain::detail
