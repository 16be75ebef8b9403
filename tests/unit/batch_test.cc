// DeepSpeed's batch rules, branch by branch (runtime/config.py _set_batch_related_parameters).
#include <gtest/gtest.h>

#include "config_test_util.h"
#include "zerotrain/config.h"

namespace zerotrain {
namespace {

using testing::expect_contains;

std::string batch_error(std::optional<int64_t> t, std::optional<int64_t> m, std::optional<int64_t> g, int ws) {
  try {
    resolve_batch(t, m, g, ws);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return {};
}

TEST(Batch, AllThreeGiven) {
  const auto b = resolve_batch(64, 4, 2, 8);
  EXPECT_EQ(b.train_batch_size, 64);
  EXPECT_EQ(b.micro_batch_per_gpu, 4);
  EXPECT_EQ(b.gradient_accumulation_steps, 2);
}

TEST(Batch, TrainAndMicroGiveGasByFloorDivision) {
  EXPECT_EQ(resolve_batch(64, 4, std::nullopt, 4).gradient_accumulation_steps, 4);
  // DeepSpeed: gas = 60 // 4 // 4 = 3, then 60 != 4*3*4 is an error.
  expect_contains(batch_error(60, 4, std::nullopt, 4), {"train_batch_size 60", "!= train_micro_batch_size_per_gpu 4",
                                                        "gradient_accumulation_steps 3", "world_size 4", "(= 48)"});
}

TEST(Batch, TrainAndGasGiveMicro) {
  const auto b = resolve_batch(64, std::nullopt, 2, 8);
  EXPECT_EQ(b.micro_batch_per_gpu, 4);
}

TEST(Batch, MicroAndGasGiveTrain) {
  EXPECT_EQ(resolve_batch(std::nullopt, 3, 5, 7).train_batch_size, 105);
}

TEST(Batch, TrainAloneSetsGasOne) {
  const auto b = resolve_batch(32, std::nullopt, std::nullopt, 4);
  EXPECT_EQ(b.micro_batch_per_gpu, 8);
  EXPECT_EQ(b.gradient_accumulation_steps, 1);
}

TEST(Batch, MicroAloneSetsGasOne) {
  const auto b = resolve_batch(std::nullopt, 2, std::nullopt, 3);
  EXPECT_EQ(b.train_batch_size, 6);
  EXPECT_EQ(b.gradient_accumulation_steps, 1);
}

TEST(Batch, NoneOrGasAloneIsAnError) {
  expect_contains(batch_error(std::nullopt, std::nullopt, std::nullopt, 1),
                  {"train_batch_size or train_micro_batch_size_per_gpu must be given"});
  expect_contains(batch_error(std::nullopt, std::nullopt, 4, 1), {"gradient_accumulation_steps=4"});
}

TEST(Batch, ResolvingToZeroIsAnError) {
  expect_contains(batch_error(4, std::nullopt, std::nullopt, 8), {"train_micro_batch_size_per_gpu resolves to 0"});
  expect_contains(batch_error(4, 2, std::nullopt, 4), {"gradient_accumulation_steps resolves to 0"});
}

TEST(Batch, InconsistentTriplePrintsAllFourNumbers) {
  expect_contains(batch_error(100, 4, 2, 8),
                  {"train_batch_size 100", "micro_batch_size_per_gpu 4", "accumulation_steps 2", "world_size 8", "(= 64)"});
}

TEST(Batch, BadWorldSize) { expect_contains(batch_error(8, 1, 1, 0), {"world size 0 is invalid"}); }

}  // namespace
}  // namespace zerotrain
