// Helpers for the launcher tests.
#pragma once

#include <string>

#include "launch/error.h"

namespace zerotrain::detail {

// The message of the LaunchError `fn` throws ("" when it throws none).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const LaunchError& e) {
    return e.what();
  }
  return "";
}

}  // namespace zerotrain::detail
