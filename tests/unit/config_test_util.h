// Helpers for the config tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "zerotrain/config.h"

namespace zerotrain::testing {

// Parses `json`; fails the test on a ConfigError.
inline Config parse_ok(std::string_view json, RunInfo run = {}) {
  try {
    return Config::from_string(json, run, "test.json");
  } catch (const ConfigError& e) {
    ADD_FAILURE() << "unexpected ConfigError:\n" << e.what();
    throw;
  }
}

// Parses `json`, expects a ConfigError, and returns its full message.
inline std::string parse_error(std::string_view json, RunInfo run = {}) {
  try {
    Config::from_string(json, run, "test.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError for: " << json;
  return {};
}

// Asserts that `message` contains every one of `parts`.
inline void expect_contains(const std::string& message, const std::vector<std::string>& parts) {
  for (const auto& p : parts) EXPECT_NE(message.find(p), std::string::npos) << "missing \"" << p << "\" in:\n" << message;
}

// The effective value of `path` as JSON text, or "<absent>".
inline std::string effective(const Config& cfg, std::string_view path) {
  for (const auto& v : cfg.effective_values()) {
    if (v.path == path) return v.value_json;
  }
  return "<absent>";
}

inline const EffectiveValue* effective_entry(const Config& cfg, std::string_view path) {
  for (const auto& v : cfg.effective_values()) {
    if (v.path == path) return &v;
  }
  return nullptr;
}

}  // namespace zerotrain::testing
