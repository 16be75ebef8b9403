// zerotrain's version.
#pragma once

#include <string_view>

namespace zerotrain {

inline constexpr std::string_view kVersion = "0.1.0";  // semantic version of this build

// The version string of the library actually linked (may differ from kVersion in a stale build).
std::string_view version();

}  // namespace zerotrain
