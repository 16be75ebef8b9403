// The flat layout: buckets, padding, chunk ownership and shard segments (see [Note: flat layout and sharding]).
#include "zero/flat_layout.h"

#include <gtest/gtest.h>

#include <map>

namespace zerotrain::detail {
namespace {

TEST(FlatLayout, ReverseOrderBucketsWithoutSplittingParameters) {
  // Parameters 0..3 of 100, 2000, 50, 30 elements; bucket size 150.
  const FlatLayout layout({100, 2000, 50, 30}, /*world=*/2, /*rank=*/1, /*bucket_size=*/150);
  const auto& b = layout.buckets();
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].params, (std::vector<int>{3, 2}));  // last parameters first
  EXPECT_EQ(b[1].params, (std::vector<int>{1}));     // larger than a bucket: alone
  EXPECT_EQ(b[2].params, (std::vector<int>{0}));
  for (const auto& bucket : b) {
    EXPECT_EQ(bucket.numel % (2 * kChunkAlign), 0);
    EXPECT_EQ(bucket.chunk * 2, bucket.numel);
  }
  EXPECT_EQ(layout.slots()[3].offset, 0);
  EXPECT_EQ(layout.slots()[2].offset, 30);
  EXPECT_EQ(layout.slots()[1].offset, b[1].begin);
  EXPECT_EQ(b[1].begin, b[0].numel);
  EXPECT_EQ(layout.total_numel(), b[2].begin + b[2].numel);
  EXPECT_EQ(layout.shard_numel(), b[0].chunk + b[1].chunk + b[2].chunk);
  EXPECT_EQ(b[2].shard_offset, b[0].chunk + b[1].chunk);
}

TEST(FlatLayout, ShardSegmentsCoverEveryElementExactlyOnceAcrossRanks) {
  const std::vector<int64_t> numels{7, 300, 41, 5, 999, 64};
  const int world = 3;
  std::map<int64_t, int64_t> covered;  // param -> elements seen over all ranks
  for (int r = 0; r < world; ++r) {
    const FlatLayout layout(numels, world, r, 256);
    int64_t shard_elems = 0;
    for (const auto& s : layout.shard_segments()) {
      covered[s.param_index] += s.numel;
      EXPECT_GE(s.offset, 0);
      EXPECT_LE(s.offset + s.numel, layout.shard_numel());
      shard_elems += s.numel;
    }
    EXPECT_LE(shard_elems, layout.shard_numel());  // padding is not a segment
  }
  for (size_t i = 0; i < numels.size(); ++i) EXPECT_EQ(covered[static_cast<int64_t>(i)], numels[i]) << "param " << i;
}

TEST(FlatLayout, SingleRankOwnsEverything) {
  const FlatLayout layout({10, 20}, 1, 0, 1 << 20);
  ASSERT_EQ(layout.buckets().size(), 1u);
  EXPECT_EQ(layout.shard_numel(), layout.total_numel());
  EXPECT_EQ(layout.chunk_begin(0), 0);
}

TEST(FlatLayout, GroupsAreContiguousRangesOfWholeBuckets) {
  // Groups {2, 0} and {1, 3}; bucket size 150 splits the first group (100 + 60 > 150).
  const FlatLayout layout({100, 2000, 60, 30}, {{2, 0}, {1, 3}}, /*world=*/2, /*rank=*/0, /*bucket_size=*/150);
  const auto& g = layout.groups();
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].first_bucket, 0);
  EXPECT_EQ(g[0].end_bucket, 2);  // {2} then {0}: 60 + 100 > 150
  EXPECT_EQ(g[1].first_bucket, 2);
  EXPECT_EQ(g[1].end_bucket, 4);  // {1} (larger than a bucket: alone) then {3}
  EXPECT_EQ(g[0].begin, 0);
  EXPECT_EQ(g[1].begin, g[0].numel);
  EXPECT_EQ(g[1].begin + g[1].numel, layout.total_numel());
  EXPECT_EQ(layout.slots()[2].offset, 0);  // the group's order, not reverse registration order
  for (int p = 0; p < 4; ++p) {
    const auto& s = layout.slots()[p];
    const int group = p == 0 || p == 2 ? 0 : 1;
    EXPECT_GE(s.offset, g[group].begin);
    EXPECT_LE(s.offset + s.numel, g[group].begin + g[group].numel);
  }
}

TEST(FlatLayout, GroupsMustCoverEveryParameterOnce) {
  EXPECT_THROW(FlatLayout({10, 20}, {{0}}, 1, 0, 100), std::invalid_argument);          // 1 missing
  EXPECT_THROW(FlatLayout({10, 20}, {{0, 1}, {1}}, 1, 0, 100), std::invalid_argument);  // 1 twice
  EXPECT_THROW(FlatLayout({10, 20}, {{0, 1, 2}}, 1, 0, 100), std::invalid_argument);    // 2 out of range
}

TEST(FlatLayout, BadRankIsAnError) {
  EXPECT_THROW(FlatLayout({10}, 2, 2, 100), std::invalid_argument);
  EXPECT_THROW(FlatLayout({10}, 0, 0, 100), std::invalid_argument);
}

}  // namespace
}  // namespace zerotrain::detail
