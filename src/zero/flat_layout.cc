#include "zero/flat_layout.h"

#include <algorithm>
#include <stdexcept>

namespace zerotrain::detail {

namespace {

std::vector<std::vector<int>> one_reversed_group(size_t n) {
  std::vector<int> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = static_cast<int>(n - 1 - i);
  return {all};
}

}  // namespace

FlatLayout::FlatLayout(const std::vector<int64_t>& numels, int world_size, int rank, int64_t bucket_size)
    : FlatLayout(numels, one_reversed_group(numels.size()), world_size, rank, bucket_size) {}

FlatLayout::FlatLayout(const std::vector<int64_t>& numels, const std::vector<std::vector<int>>& groups,
                       int world_size, int rank, int64_t bucket_size)
    : world_(world_size), rank_(rank), slots_(numels.size()) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw std::invalid_argument("FlatLayout: rank " + std::to_string(rank) + " of world size " +
                                std::to_string(world_size));
  }
  std::vector<int> placed(numels.size(), 0);
  for (const auto& g : groups) {
    for (int p : g) {
      if (p < 0 || p >= static_cast<int>(numels.size()) || placed[p]++) {
        throw std::invalid_argument("FlatLayout: parameter index " + std::to_string(p) +
                                    " is out of range or in two groups");
      }
    }
  }
  for (size_t i = 0; i < placed.size(); ++i) {
    if (!placed[i]) throw std::invalid_argument("FlatLayout: parameter " + std::to_string(i) + " is in no group");
  }
  // A bucket size of 0 would make a bucket per parameter; DeepSpeed treats it the same way.
  const int64_t limit = std::max<int64_t>(bucket_size, 1);
  const int64_t align = static_cast<int64_t>(world_size) * kChunkAlign;
  auto close = [&](Bucket& b) {
    b.numel = (b.numel + align - 1) / align * align;
    b.chunk = b.numel / world_size;
    b.shard_offset = shard_;
    shard_ += b.chunk;
    total_ = b.begin + b.numel;
    buckets_.push_back(std::move(b));
  };
  for (const auto& g : groups) {
    Group group{static_cast<int>(buckets_.size()), 0, total_, 0};
    Bucket open;
    open.begin = total_;
    for (int i : g) {
      const int64_t n = numels[i];
      if (!open.params.empty() && open.numel + n > limit) {
        close(open);
        open = Bucket{};
        open.begin = total_;
      }
      slots_[i] = {open.begin + open.numel, n, static_cast<int>(buckets_.size())};
      open.params.push_back(i);
      open.numel += n;
    }
    if (!open.params.empty()) close(open);
    group.end_bucket = static_cast<int>(buckets_.size());
    group.numel = total_ - group.begin;
    groups_.push_back(group);
  }
}

std::vector<ShardSegment> FlatLayout::shard_segments() const {
  std::vector<ShardSegment> out;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const Bucket& bucket = buckets_[b];
    const int64_t lo = chunk_begin(static_cast<int>(b)), hi = lo + bucket.chunk;
    // Parameters in a bucket are in reverse registration order, ascending offsets.
    for (int p : bucket.params) {
      const ParamSlot& s = slots_[p];
      const int64_t a = std::max(lo, s.offset), e = std::min(hi, s.offset + s.numel);
      if (a < e) out.push_back({p, bucket.shard_offset + (a - lo), e - a, a - s.offset});
    }
  }
  return out;
}

}  // namespace zerotrain::detail
