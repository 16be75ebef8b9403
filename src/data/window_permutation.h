// Keyed bijections of [0, n) that cost O(1) memory and time per index: the batcher's epoch shuffle
// ([Note: sample layout] in zerotrain/data.h). A stored shuffled array would need n entries per epoch and a cache
// shared between threads; a Feistel network computes any position's image directly.
#pragma once

#include <cstdint>

namespace zerotrain::detail {

// splitmix64's finalizer: a bijective 64-bit mix whose outputs look independent for adjacent inputs.
uint64_t mix64(uint64_t x);

// The image of `index` (0 <= index < n) under the permutation of [0, n) selected by `key`: a 6-round balanced Feistel
// network over [0, 4^k), the smallest such power >= n, with cycle walking back into [0, n) (under 4 rounds of
// the network on average, since 4^k < 4 n).
int64_t permute_index(int64_t index, int64_t n, uint64_t key);

}  // namespace zerotrain::detail
