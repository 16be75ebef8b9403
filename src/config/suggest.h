// "Did you mean" for unknown keys and names.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zerotrain::detail {

// Edit distance (insert, delete, substitute, transpose adjacent) between a and b, case-insensitive.
int edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word` if it is close enough to be a plausible typo, else nullopt.
std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace zerotrain::detail
