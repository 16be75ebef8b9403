#include "config/suggest.h"

#include <algorithm>
#include <cctype>

namespace zerotrain::detail {

int edit_distance(std::string_view a, std::string_view b) {
  auto eq = [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  };
  const size_t n = a.size(), m = b.size();
  // Optimal string alignment distance, three rolling rows.
  std::vector<int> prev2(m + 1), prev(m + 1), cur(m + 1);
  for (size_t j = 0; j <= m; ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= m; ++j) {
      const int cost = eq(a[i - 1], b[j - 1]) ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && eq(a[i - 1], b[j - 2]) && eq(a[i - 2], b[j - 1])) {
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
      }
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[m];
}

std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  int best_distance = 0;
  for (const auto& c : candidates) {
    const int d = edit_distance(word, c);
    if (!best || d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  // Plausible typo: at most a third of the word's letters wrong (at least 1, at most 4).
  const int limit = std::clamp(static_cast<int>(word.size()) / 3, 1, 4);
  if (best && best_distance <= limit) return best;
  // A key that differs only by a prefix/suffix such as "stage3_" is also a likely intent.
  for (const auto& c : candidates) {
    if (c.size() > word.size() + 1 && (c.ends_with(word) || c.starts_with(word))) return c;
  }
  return std::nullopt;
}

}  // namespace zerotrain::detail
