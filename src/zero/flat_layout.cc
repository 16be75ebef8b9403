#include "zero/flat_layout.h"

#include <algorithm>
#include <stdexcept>

namespace zerotrain::detail {

FlatLayout::FlatLayout(const std::vector<int64_t>& numels, int world_size, int rank, int64_t bucket_size)
    : world_(world_size), rank_(rank), slots_(numels.size()) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw std::invalid_argument("FlatLayout: rank " + std::to_string(rank) + " of world size " +
                                std::to_string(world_size));
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
  Bucket open;
  for (int i = static_cast<int>(numels.size()) - 1; i >= 0; --i) {
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
      if (a < e) out.push_back({p, bucket.shard_offset + (a - lo), e - a});
    }
  }
  return out;
}

}  // namespace zerotrain::detail
