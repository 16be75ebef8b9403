// The byte corpus and the batcher: [micro_step][rank][j] layout equivalence across world sizes, determinism, the
// target shift, bounds (train windows never reach the eval tail), the epoch permutation, and corpus lookup.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <unistd.h>

#include "data/window_permutation.h"
#include "zerotrain/data.h"

namespace zerotrain {
namespace {

namespace fs = std::filesystem;

const ByteCorpus& bundled() {
  static const ByteCorpus corpus(ZEROTRAIN_SOURCE_DIR "/data/corpus");
  return corpus;
}

// Rank r's rows of one micro-step, for every rank, concatenated along the batch.
Batch all_ranks(const ByteCorpus& c, int64_t step, int micro, const BatchGeometry& g) {
  std::vector<at::Tensor> tokens, targets;
  for (int r = 0; r < g.world_size; ++r) {
    Batch b = c.sample_batch(step, micro, r, g);
    tokens.push_back(b.tokens);
    targets.push_back(b.targets);
  }
  return {at::cat(tokens), at::cat(targets)};
}

TEST(ByteCorpusTest, LoadsTheBundledLicensesWithAHeldOutTail) {
  const ByteCorpus& c = bundled();
  EXPECT_EQ(c.size(), 153'120);  // data/corpus/README.md lists the files
  EXPECT_EQ(c.train_size(), c.size() - c.size() / 10);
  EXPECT_NE(c.bytes().substr(0, 60).find("Apache License"), std::string_view::npos);  // Apache-2.0.txt is first
}

TEST(BatcherTest, WorldRanksTogetherEqualOneProcessWithTheirCombinedMicroBatch) {
  const ByteCorpus& c = bundled();
  const BatchGeometry dist{.seq = 32, .micro_batch = 3, .grad_accum = 2, .world_size = 4, .seed = 7};
  BatchGeometry wide = dist;  // one process, micro_batch * world_size rows per micro-step
  wide.micro_batch = dist.micro_batch * dist.world_size;
  wide.world_size = 1;
  BatchGeometry deep = dist;  // one process, grad_accum * world_size micro-steps of micro_batch rows
  deep.grad_accum = dist.grad_accum * dist.world_size;
  deep.world_size = 1;
  for (int64_t step = 0; step < 5; ++step) {
    for (int m = 0; m < dist.grad_accum; ++m) {
      const Batch union_of_ranks = all_ranks(c, step, m, dist);
      const Batch reference = c.sample_batch(step, m, 0, wide);
      EXPECT_TRUE(at::equal(union_of_ranks.tokens, reference.tokens)) << step << " " << m;
      EXPECT_TRUE(at::equal(union_of_ranks.targets, reference.targets));
      for (int r = 0; r < dist.world_size; ++r) {
        const Batch rank = c.sample_batch(step, m, r, dist);
        const Batch micro = c.sample_batch(step, m * static_cast<int>(dist.world_size) + r, 0, deep);
        EXPECT_TRUE(at::equal(rank.tokens, micro.tokens)) << step << " " << m << " " << r;
      }
    }
  }
  // Different ranks get different data.
  EXPECT_FALSE(at::equal(c.sample_batch(0, 0, 0, dist).tokens, c.sample_batch(0, 0, 1, dist).tokens));
}

TEST(BatcherTest, GlobalSampleIndexFormula) {
  const BatchGeometry g{.seq = 8, .micro_batch = 3, .grad_accum = 2, .world_size = 4, .seed = 0};
  // t * (2 * 4 * 3) + (m * 4 + r) * 3 + j
  EXPECT_EQ(global_sample_index(0, 0, 0, 0, g), 0);
  EXPECT_EQ(global_sample_index(0, 0, 1, 0, g), 3);
  EXPECT_EQ(global_sample_index(0, 1, 0, 0, g), 12);
  EXPECT_EQ(global_sample_index(2, 1, 3, 2, g), 2 * 24 + 7 * 3 + 2);
  EXPECT_THROW(global_sample_index(0, 2, 0, 0, g), std::invalid_argument);  // micro_step >= grad_accum
  EXPECT_THROW(global_sample_index(0, 0, 4, 0, g), std::invalid_argument);  // rank >= world_size
  EXPECT_THROW(global_sample_index(-1, 0, 0, 0, g), std::invalid_argument);
  EXPECT_THROW(bundled().sample_batch(0, 0, 0, BatchGeometry{.seq = 8, .micro_batch = 0}), std::invalid_argument);
  try {
    bundled().sample_batch(0, 0, 9, g);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("rank: got 9"), std::string::npos) << e.what();
  }
}

TEST(BatcherTest, DeterministicAndSeedDependent) {
  const ByteCorpus& c = bundled();
  const BatchGeometry g{.seq = 64, .micro_batch = 4, .grad_accum = 1, .world_size = 2, .seed = 1};
  BatchGeometry other = g;
  other.seed = 2;
  EXPECT_TRUE(at::equal(c.sample_batch(3, 0, 1, g).tokens, c.sample_batch(3, 0, 1, g).tokens));
  const ByteCorpus reloaded(ZEROTRAIN_SOURCE_DIR "/data/corpus");
  EXPECT_TRUE(at::equal(c.sample_batch(3, 0, 1, g).tokens, reloaded.sample_batch(3, 0, 1, g).tokens));
  EXPECT_FALSE(at::equal(c.sample_batch(3, 0, 1, g).tokens, c.sample_batch(3, 0, 1, other).tokens));
  EXPECT_FALSE(at::equal(c.sample_batch(3, 0, 1, g).tokens, c.sample_batch(4, 0, 1, g).tokens));
}

TEST(BatcherTest, RowsAreCorpusWindowsWithTargetsShiftedByOne) {
  const ByteCorpus& c = bundled();
  const BatchGeometry g{.seq = 50, .micro_batch = 5, .grad_accum = 3, .world_size = 2, .seed = 3};
  const Batch b = c.sample_batch(6, 2, 1, g);
  ASSERT_EQ(b.tokens.sizes().vec(), (std::vector<int64_t>{5, 50}));
  ASSERT_EQ(b.targets.sizes().vec(), (std::vector<int64_t>{5, 50}));
  EXPECT_EQ(b.tokens.scalar_type(), at::kLong);
  EXPECT_EQ(b.targets.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(b.tokens.narrow(1, 1, 49), b.targets.narrow(1, 0, 49)));
  for (int64_t j = 0; j < 5; ++j) {
    const int64_t offset = c.sample_offset(global_sample_index(6, 2, 1, j, g), g.seq, g.seed);
    ASSERT_GE(offset, 0);
    ASSERT_LE(offset + g.seq + 1, c.train_size());  // the last target is still a train byte
    const auto tokens = b.tokens[j];
    for (int64_t s = 0; s < g.seq; ++s) {
      ASSERT_EQ(tokens[s].item<int64_t>(), static_cast<unsigned char>(c.bytes()[offset + s]));
    }
    EXPECT_EQ(b.targets[j][g.seq - 1].item<int64_t>(), static_cast<unsigned char>(c.bytes()[offset + g.seq]));
  }
}

// Each epoch visits every train window exactly once, within bounds, and epochs differ in order and shift.
TEST(BatcherTest, EpochsArePermutationsOfInBoundsWindows) {
  const ByteCorpus c = ByteCorpus::from_bytes(std::string(10'000, 'x'), 0.2);
  ASSERT_EQ(c.train_size(), 8000);
  const int64_t seq = 37;
  const int64_t windows = c.num_train_windows(seq);
  EXPECT_EQ(windows, (8000 - 2 * seq) / seq + 1);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::set<int64_t> offsets;
    const int64_t shift = c.sample_offset(epoch * windows, seq, 5) % seq;
    for (int64_t p = 0; p < windows; ++p) {
      const int64_t offset = c.sample_offset(epoch * windows + p, seq, 5);
      ASSERT_EQ(offset % seq, shift);  // one stride grid per epoch
      ASSERT_LE(offset + seq + 1, c.train_size());
      offsets.insert(offset);
    }
    EXPECT_EQ(static_cast<int64_t>(offsets.size()), windows);
  }
  EXPECT_NE(c.sample_offset(0, seq, 5), c.sample_offset(windows, seq, 5));
  EXPECT_THROW(c.num_train_windows(4001), std::invalid_argument);  // train part must hold 2 seq bytes
}

TEST(WindowPermutationTest, IsABijectionForEverySize) {
  for (int64_t n : {1, 2, 3, 5, 16, 17, 1000, 4097}) {
    std::vector<bool> seen(static_cast<size_t>(n), false);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t y = detail::permute_index(i, n, 42);
      ASSERT_GE(y, 0);
      ASSERT_LT(y, n);
      ASSERT_FALSE(seen[static_cast<size_t>(y)]) << "n " << n << " collision at " << i;
      seen[static_cast<size_t>(y)] = true;
    }
  }
  // Not the identity: a shuffle moves most indices.
  int fixed = 0;
  for (int64_t i = 0; i < 1000; ++i) fixed += detail::permute_index(i, 1000, 42) == i;
  EXPECT_LT(fixed, 20);
}

TEST(EvalTest, EvalWindowsComeFromTheHeldOutTail) {
  const ByteCorpus& c = bundled();
  const int64_t seq = 64;
  const int64_t windows = c.num_eval_windows(seq);
  EXPECT_EQ(windows, (c.size() - c.train_size() - 1) / seq);
  const Batch b = c.eval_batch(1, 4, seq);
  EXPECT_TRUE(at::equal(b.tokens.narrow(1, 1, seq - 1), b.targets.narrow(1, 0, seq - 1)));
  for (int64_t j = 0; j < 4; ++j) {
    const int64_t offset = c.train_size() + (4 + j) * seq;
    EXPECT_EQ(b.tokens[j][0].item<int64_t>(), static_cast<unsigned char>(c.bytes()[offset]));
    EXPECT_EQ(b.targets[j][seq - 1].item<int64_t>(), static_cast<unsigned char>(c.bytes()[offset + seq]));
  }
  // Batches wrap around the tail.
  EXPECT_TRUE(at::equal(c.eval_batch(0, 1, seq).tokens, c.eval_batch(windows, 1, seq).tokens));
  EXPECT_THROW(ByteCorpus::from_bytes("abcdef", 0.0).eval_batch(0, 1, 2), std::invalid_argument);
}

TEST(ByteCorpusTest, BadInputsNameTheArgument) {
  EXPECT_THROW(ByteCorpus("/nonexistent/corpus"), std::invalid_argument);
  EXPECT_THROW(ByteCorpus::from_bytes(""), std::invalid_argument);
  try {
    ByteCorpus::from_bytes("abc", 1.0);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("eval_fraction: got 1"), std::string::npos) << e.what();
  }
}

TEST(ByteCorpusTest, ReadsAFileOrTheSortedTxtFilesOfADirectory) {
  const fs::path dir = fs::temp_directory_path() / ("zerotrain_data_test_" + std::to_string(::getpid()));
  fs::create_directories(dir / "corpus");
  std::ofstream(dir / "corpus" / "b.txt") << "second ";
  std::ofstream(dir / "corpus" / "a.txt") << "first ";
  std::ofstream(dir / "corpus" / "notes.md") << "not corpus";
  EXPECT_EQ(ByteCorpus(dir / "corpus").bytes(), "first second ");
  EXPECT_EQ(ByteCorpus(dir / "corpus" / "b.txt").bytes(), "second ");

  // default_corpus_path: ZEROTRAIN_DATA_DIR wins, and a wrong one is an error rather than a silent fallback.
  ::setenv("ZEROTRAIN_DATA_DIR", dir.c_str(), 1);
  EXPECT_EQ(default_corpus_path(), dir / "corpus");
  ::setenv("ZEROTRAIN_DATA_DIR", (dir / "missing").c_str(), 1);
  EXPECT_THROW(default_corpus_path(), std::runtime_error);
  ::unsetenv("ZEROTRAIN_DATA_DIR");
  // Not fs::remove_all: the torch wheel's libtorch.so exports its own copy, which crashes (pytorch#133437).
  for (const char* f : {"a.txt", "b.txt", "notes.md"}) fs::remove(dir / "corpus" / f);
  fs::remove(dir / "corpus");
  fs::remove(dir);
  // Without it, the build tree (inside the source tree) leads to the bundled corpus.
  EXPECT_EQ(fs::canonical(default_corpus_path()), fs::canonical(ZEROTRAIN_SOURCE_DIR "/data/corpus"));
}

}  // namespace
}  // namespace zerotrain
