// ShardOptimizer::step_and_copy: the step on grad * multiplier with the updated shard's copy ranges written, against
// the same work done in passes, and the multiplier given as a number or as a tensor the kernel reads (a clip factor
// left on the device: [Note: a step the host does not wait for] in src/zero/zero_optimizer.cc). CUDA Adam's one-pass
// kernel is checked against the passes in shard_optimizer_kernels_test.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "optim/shard_optimizer.h"

namespace zerotrain::detail {
namespace {

OptimizerConfig config(OptimizerKind kind, double lr) {
  OptimizerConfig c;
  c.kind = kind;
  c.lr = lr;
  if (kind == OptimizerKind::kLion) c.betas = {0.9, 0.99};
  return c;
}

// step_and_copy = grad * multiplier, step, then each copy range cast from the updated shard (the passes form every
// optimizer has on CPU; CUDA Adam's one-pass kernel is checked against it in shard_optimizer_kernels_test).
TEST(ShardOptimizerStepAndCopy, EqualsMultiplyStepCopyOnCpu) {
  for (OptimizerKind kind : {OptimizerKind::kAdamW, OptimizerKind::kSGD, OptimizerKind::kLion}) {
    const OptimizerConfig cfg = config(kind, 1e-2);
    at::manual_seed(11);
    at::Tensor p1 = at::randn({1000}), p2 = p1.clone();
    auto a = make_shard_optimizer(cfg, p1, {}, 1, nullptr), b = make_shard_optimizer(cfg, p2, {}, 1, nullptr);
    at::Tensor bf = at::zeros({300}, at::kBFloat16), f = at::zeros({100});
    for (int t = 1; t <= 2; ++t) {
      at::Tensor g1 = at::randn({1000}), g2 = g1.clone();
      a->step_and_copy(p1, g1, StepArgs{cfg.lr, t, {}}, 0.25, {{10, bf}, {900, f}});
      b->step(p2, g2.mul_(0.25), StepArgs{cfg.lr, t, {}});
    }
    EXPECT_TRUE(at::equal(p1, p2)) << static_cast<int>(kind);
    EXPECT_TRUE(at::equal(bf, p2.narrow(0, 10, 300).to(at::kBFloat16))) << static_cast<int>(kind);
    EXPECT_TRUE(at::equal(f, p2.narrow(0, 900, 100))) << static_cast<int>(kind);
  }
}

// A GradMultiplier's tensor (a clip factor left on the device) acts as the same factor given as a number, bit for bit:
// read by Adam's own kernel (reads_multiplier_tensor), multiplied in a pass by the others. Adam refuses a tensor that
// is not one fp32 element on the shard's device, naming what it got.
TEST(ShardOptimizerStepAndCopy, AMultiplierTensorEqualsTheSameNumber) {
  for (OptimizerKind kind : {OptimizerKind::kAdamW, OptimizerKind::kSGD, OptimizerKind::kLion}) {
    const OptimizerConfig cfg = config(kind, 1e-2);
    at::manual_seed(12);
    at::Tensor p1 = at::randn({1000}), p2 = p1.clone();
    auto a = make_shard_optimizer(cfg, p1, {}, 1, nullptr), b = make_shard_optimizer(cfg, p2, {}, 1, nullptr);
    EXPECT_EQ(a->reads_multiplier_tensor(), kind == OptimizerKind::kAdamW);
    at::Tensor bf1 = at::zeros({300}, at::kBFloat16), bf2 = bf1.clone();
    const float factor = 0.3f;  // not a power of two: a second rounding would show
    for (int t = 1; t <= 2; ++t) {
      at::Tensor g1 = at::randn({1000}), g2 = g1.clone();
      a->step_and_copy(p1, g1, StepArgs{cfg.lr, t, {}}, GradMultiplier(1.0, at::full({}, factor)), {{10, bf1}});
      b->step_and_copy(p2, g2, StepArgs{cfg.lr, t, {}}, double{factor}, {{10, bf2}});
    }
    EXPECT_TRUE(at::equal(p1, p2)) << static_cast<int>(kind);
    EXPECT_TRUE(at::equal(bf1, bf2)) << static_cast<int>(kind);
  }
  at::Tensor p = at::randn({100}), g = at::randn({100});
  auto adam = make_shard_optimizer(config(OptimizerKind::kAdamW, 1e-2), p, {}, 1, nullptr);
  for (const at::Tensor& wrong : {at::ones({2}), at::ones({}, at::kDouble)}) {
    try {
      adam->step_and_copy(p, g, StepArgs{1e-2, 1, {}}, GradMultiplier(1.0, wrong), {});
      ADD_FAILURE() << "accepted " << wrong.toString() << " " << wrong.sizes();
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("must be one fp32 element on cpu"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace zerotrain::detail
