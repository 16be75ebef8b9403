#include "data/window_permutation.h"

namespace zerotrain::detail {
namespace {

constexpr int kRounds = 6;  // 4 make a pseudorandom permutation (Luby-Rackoff); 2 more for small domains
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

// One pass of the Feistel network over [0, 2^(2 half)); a bijection, since each round is invertible.
uint64_t feistel(uint64_t x, int half, uint64_t key) {
  const uint64_t mask = (uint64_t{1} << half) - 1;
  uint64_t left = x >> half;
  uint64_t right = x & mask;
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t f = mix64(key ^ mix64(right + kGolden * static_cast<uint64_t>(round + 1))) & mask;
    const uint64_t next = left ^ f;
    left = right;
    right = next;
  }
  return (left << half) | right;
}

}  // namespace

uint64_t mix64(uint64_t x) {
  x += kGolden;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

int64_t permute_index(int64_t index, int64_t n, uint64_t key) {
  if (n <= 1) return 0;
  int half = 1;
  while ((uint64_t{1} << (2 * half)) < static_cast<uint64_t>(n)) ++half;
  // Cycle walking: the network permutes the larger domain, so following it from a point in [0, n) returns to
  // [0, n) before it repeats, and the first return defines a bijection of [0, n).
  uint64_t y = static_cast<uint64_t>(index);
  do {
    y = feistel(y, half, key);
  } while (y >= static_cast<uint64_t>(n));
  return static_cast<int64_t>(y);
}

}  // namespace zerotrain::detail
