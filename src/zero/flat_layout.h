// Where every trainable parameter lives in the flat buffers, which buckets group them, and which part of each
// bucket this rank owns.
//
// [Note: flat layout and sharding]
// Parameters are laid out in REVERSE registration order (backward produces gradients roughly last layer first),
// packed into buckets of about reduce_bucket_size elements; a parameter never straddles two buckets. Each bucket
// is padded to a multiple of world_size * kChunkAlign elements and split into world_size equal chunks: rank r owns
// chunk r of EVERY bucket (as FSDP shards each unit). A rank's shard - its fp32 master weights, optimizer state
// and gradient partition - is the concatenation of its chunks, bucket by bucket. So one reduce-scatter of a bucket
// lands exactly on the owner's chunk, and one all-gather of a bucket's chunks restores the bucket: no copies.
//
// Stage 3 lays parameters out in groups (its units): each group is a contiguous range of whole buckets, so a unit's
// full parameters are one contiguous range of the flat layout and its gradients never share a bucket with another
// unit's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "optim/shard_optimizer.h"

namespace zerotrain::detail {

inline constexpr int64_t kChunkAlign = 32;  // chunk sizes are multiples of this (128 B of fp32, 64 B of bf16)

struct ParamSlot {
  int64_t offset = 0;  // first element in the flat buffer
  int64_t numel = 0;
  int bucket = 0;      // the bucket that holds it
};

struct Bucket {
  int64_t begin = 0;         // first element in the flat buffer
  int64_t numel = 0;         // padded: a multiple of world_size * kChunkAlign
  int64_t chunk = 0;         // numel / world_size: what each rank owns
  int64_t shard_offset = 0;  // where this rank's chunk starts in its shard
  std::vector<int> params;   // indices (registration order) of the parameters in it
};

// A group of parameters laid out together: buckets [first_bucket, end_bucket), flat range [begin, begin + numel).
struct Group {
  int first_bucket = 0;
  int end_bucket = 0;
  int64_t begin = 0;
  int64_t numel = 0;
};

class FlatLayout {
 public:
  // `numels`: element counts of the trainable parameters in registration order. One group: every parameter, in
  // reverse registration order.
  FlatLayout(const std::vector<int64_t>& numels, int world_size, int rank, int64_t bucket_size);
  // `groups`: parameter indices, group by group in layout order; every parameter in exactly one group (throws
  // std::invalid_argument otherwise). Buckets never span groups.
  FlatLayout(const std::vector<int64_t>& numels, const std::vector<std::vector<int>>& groups, int world_size,
             int rank, int64_t bucket_size);

  int64_t total_numel() const { return total_; }    // padded flat buffer size
  int64_t shard_numel() const { return shard_; }    // this rank's shard size
  int world_size() const { return world_; }
  int rank() const { return rank_; }
  const std::vector<ParamSlot>& slots() const { return slots_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  const std::vector<Group>& groups() const { return groups_; }

  // The flat-buffer range of this rank's chunk of bucket b: [begin + rank * chunk, + chunk).
  int64_t chunk_begin(int b) const { return buckets_[b].begin + rank_ * buckets_[b].chunk; }

  // The pieces of parameters in this rank's shard (for optimizers with per-parameter norms).
  std::vector<ShardSegment> shard_segments() const;

 private:
  int world_;
  int rank_;
  int64_t total_ = 0;
  int64_t shard_ = 0;
  std::vector<ParamSlot> slots_;
  std::vector<Bucket> buckets_;
  std::vector<Group> groups_;
};

}  // namespace zerotrain::detail
