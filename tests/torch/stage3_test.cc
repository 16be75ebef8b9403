// ZeRO stage 3 on one rank: units gather on use and free after, prefetch follows the recorded order and survives
// a changed one, a unit used twice or checkpointed still gets the right gradients, persistent units stay, and the
// Engine partitions a built-in model, matches stage 0, and lets user code read and change full parameters.
// (Sharding over several ranks is checked by the parity grid, tests/distributed/parity_worker.cc.)
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <cmath>
#include <map>
#include <numeric>
#include <vector>

#include "checkpoint/safetensors.h"
#include "zero/flat_layout.h"
#include "zero/param_units.h"
#include "zero/stage3_plan.h"
#include "zerotrain/engine.h"
#include "zerotrain/models.h"
#include "zerotrain/segmented.h"

#include <torch/nn/modules/linear.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

namespace zerotrain {
namespace {

using detail::FlatLayout;
using detail::ParamUnits;
using detail::UnitSettings;

constexpr int kLayers = 4;
constexpr int64_t kWidth = 8;  // each layer's weight is kWidth x kWidth = 64 elements: one unit

bool has_data(const at::Tensor& p) { return p.storage().nbytes() > 0; }

// kLayers weights, one unit each (unit u holds weight u), segment s reads unit s.
struct Units {
  explicit Units(UnitSettings settings, std::vector<bool> persistent = std::vector<bool>(kLayers, false))
      : n(static_cast<int>(persistent.size())) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    std::vector<int64_t> numels;
    std::vector<std::vector<int>> groups;
    for (int i = 0; i < n; ++i) {
      weights.push_back((at::randn({kWidth, kWidth}, gen) * 0.3).set_requires_grad(true));
      reference.push_back(weights.back().detach().clone().set_requires_grad(true));
      numels.push_back(kWidth * kWidth);
      groups.push_back({i});
    }
    layout = std::make_unique<FlatLayout>(numels, groups, 1, 0, 1 << 20);
    units = std::make_unique<ParamUnits>(*layout, weights, persistent, make_single_comm(), settings,
                                         weights.front().options());
    std::vector<std::vector<int>> segments;
    for (int i = 0; i < n; ++i) segments.push_back({i});
    units->set_segments(segments);
  }

  // Runs the segments in `order` (checkpointed when asked), then backward of the sum; checks the loss and every
  // gradient against the same computation on plain tensors. `inside(s)` runs inside segment s's forward.
  void step(const std::vector<int>& order, bool checkpoint = false, const std::function<void(int)>& inside = {}) {
    at::Tensor x = at::randn({3, kWidth}, at::make_generator<at::CPUGeneratorImpl>(11));
    at::Tensor h = x, r = x;
    for (int s : order) {
      h = units->run_segment(
          s,
          [this, s, &inside](const at::Tensor& in) {
            EXPECT_TRUE(has_data(weights[s])) << "segment " << s << " runs without its parameters";
            if (inside) inside(s);
            return at::tanh(at::matmul(in, weights[s].t()));
          },
          h, checkpoint);
      r = at::tanh(at::matmul(r, reference[s].t()));
    }
    at::Tensor loss = h.sum();
    loss.backward();
    units->end_backward();
    r.sum().backward();
    EXPECT_NEAR(loss.item<double>(), r.sum().item<double>(), 1e-5);
    for (int i = 0; i < n; ++i) {
      const bool used = std::find(order.begin(), order.end(), i) != order.end();
      ASSERT_EQ(weights[i].grad().defined(), used) << "weight " << i;
      if (used) EXPECT_TRUE(at::allclose(weights[i].grad(), reference[i].grad(), 1e-5, 1e-6)) << "weight " << i;
      weights[i].mutable_grad().reset();
      reference[i].mutable_grad().reset();
    }
  }

  int n;  // layers
  std::vector<at::Tensor> weights, reference;
  std::unique_ptr<FlatLayout> layout;
  std::unique_ptr<ParamUnits> units;
};

TEST(ParamUnits, GatherOnUseFreeAfterAndTheSameResultAsPlainTensors) {
  Units u(UnitSettings{0, 1'000'000'000, 0});  // no prefetch, no reuse
  for (int i = 0; i < kLayers; ++i) EXPECT_FALSE(has_data(u.weights[i])) << "partitioned at construction";
  u.step({0, 1, 2, 3}, false, [&](int s) {
    for (int i = 0; i < kLayers; ++i) EXPECT_EQ(u.units->is_gathered(i), i == s) << "inside segment " << s;
  });
  for (int i = 0; i < kLayers; ++i) EXPECT_FALSE(has_data(u.weights[i])) << "freed after backward";
  EXPECT_EQ(u.units->live_numel(), 0);
  // Forward gathers each unit once, backward once more.
  EXPECT_EQ(u.units->gathers(), 2 * kLayers);
}

TEST(ParamUnits, PrefetchFollowsTheRecordedOrder) {
  Units u(UnitSettings{64, 1'000'000'000, 0});  // one 64-element unit ahead
  u.step({0, 1, 2, 3}, false, [&](int s) {
    if (s == 0) EXPECT_FALSE(u.units->is_gathered(1)) << "nothing recorded yet on the first step";
  });
  EXPECT_EQ(u.units->recorded_order(), (std::vector<int>{0, 1, 2, 3}));
  u.step({0, 1, 2, 3}, false, [&](int s) {
    if (s == 0) {
      EXPECT_TRUE(u.units->is_gathered(1)) << "the next unit is prefetched";
      EXPECT_FALSE(u.units->is_gathered(2)) << "only prefetch_bucket_size elements ahead";
    }
  });
}

// 32 units of 64 elements in order, a prefetch bucket of 8 units, reuse distance `reuse`: a first step records the
// order; the second checks, inside each segment, that the next unit is ahead (and `inside(s)`). Returns the second
// step's unit gathers and the collectives that carried them.
std::pair<int64_t, int64_t> prefetched_step(int64_t reuse, const std::function<void(Units&, int)>& inside = {}) {
  constexpr int kMany = 32;
  Units u(UnitSettings{8 * 64, 1'000'000'000, reuse}, std::vector<bool>(kMany, false));
  std::vector<int> order(kMany);
  std::iota(order.begin(), order.end(), 0);
  u.step(order);
  const int64_t units0 = u.units->gathers(), batches0 = u.units->gather_batches();
  u.step(order, false, [&](int s) {
    if (s + 1 < kMany) EXPECT_TRUE(u.units->is_gathered(s + 1)) << "the next unit is ahead in segment " << s;
    if (inside) inside(u, s);
  });
  return {u.units->gathers() - units0, u.units->gather_batches() - batches0};
}

TEST(ParamUnits, SmallUnitsArePrefetchedInBatches) {
  // Once the order is recorded, the window refills when half of it is used, 3 or more units to a collective on
  // average (one without batching), and the next unit is in flight or gathered before its segment runs.
  const auto [units, batches] = prefetched_step(0, [](Units& u, int s) {
    EXPECT_LE(u.units->live_numel(), 9 * 64) << "at most the bucket ahead plus the unit in use, segment " << s;
  });
  EXPECT_GE(units, 2 * 32 - 1) << "forward and backward gather every unit (the last one may stay gathered)";
  EXPECT_LE(batches * 3, units) << units << " units in " << batches << " collectives";
}

TEST(ParamUnits, UnitsKeptForBackwardDoNotStopTheForwardPrefetch) {
  // DeepSpeed's default reuse distance keeps every unit of this forward gathered for its backward. Those kept units
  // are not prefetch already done: the forward still gathers 3 or more units to a collective (before session 8 the
  // window counted them as ahead, stopped refilling after its first bucket and gathered the rest one at a time).
  const auto [units, batches] = prefetched_step(1'000'000'000);
  EXPECT_EQ(units, 32) << "backward reuses what forward gathered";
  EXPECT_LE(batches * 3, units) << units << " units in " << batches << " collectives";
}

TEST(ParamUnits, AChangedOrderStaysCorrectAndIsRecordedForTheNextStep) {
  Units u(UnitSettings{64, 1'000'000'000, 0});
  u.step({0, 1, 2, 3});
  u.step({0, 2, 1, 3});  // prefetched unit 1 after 0 for nothing: still right
  EXPECT_EQ(u.units->recorded_order(), (std::vector<int>{0, 2, 1, 3}));
  u.step({0, 2, 1, 3}, false, [&](int s) {
    if (s == 0) EXPECT_TRUE(u.units->is_gathered(2)) << "prefetch follows the new order";
  });
  u.step({3, 0}, false);  // fewer segments, one unused weight left out
  EXPECT_EQ(u.units->live_numel(), 0);
}

TEST(ParamUnits, ASegmentRunTwiceInOneForwardGetsBothGradients) {
  Units u(UnitSettings{64, 1'000'000'000, 0});
  u.step({0, 1, 1, 2});
  u.step({0, 1, 1, 2});
}

TEST(ParamUnits, CheckpointedSegmentsRecomputeWithTheirUnitsGathered) {
  Units u(UnitSettings{64, 1'000'000'000, 0});
  u.step({0, 1, 2, 3}, /*checkpoint=*/true);
  u.step({0, 1, 2, 3}, /*checkpoint=*/true);
  u.step({0, 1, 1, 3}, /*checkpoint=*/true);
  EXPECT_EQ(u.units->live_numel(), 0);
}

TEST(ParamUnits, MaxLiveParametersBoundsPrefetch) {
  Units u(UnitSettings{1 << 20, 64, 0});  // room for one gathered unit only
  u.step({0, 1, 2, 3});
  u.step({0, 1, 2, 3}, false, [&](int s) {
    EXPECT_EQ(u.units->live_numel(), 64) << "inside segment " << s;
  });
}

TEST(ParamUnits, MaxReuseDistanceKeepsAUnitThatComesBackSoon) {
  for (int64_t distance : {int64_t{0}, int64_t{1000}}) {
    SCOPED_TRACE(distance);
    Units u(UnitSettings{0, 1'000'000'000, distance});
    u.step({0, 1, 0});
    u.step({0, 1, 0}, false, [&](int s) {
      if (s == 1) EXPECT_EQ(u.units->is_gathered(0), distance > 0);
    });
  }
}

TEST(ParamUnits, MaxReuseDistanceCountsTheElementsInBetweenBothWays) {
  // Order {0, 1, 0} of 64-element units, no prefetch. Unit 0 comes back after 64 elements of unit 1 in forward and
  // again in backward; unit 1 after 128 (the rest of the forward, then unit 0's backward). Gathers per step:
  // distance 0 keeps only what is used next (the last forward use of unit 0 into its backward): 5; 100 keeps unit 0
  // both ways but not unit 1: 3; 1000 keeps both: 2.
  for (const auto& [distance, gathers] : std::vector<std::pair<int64_t, int64_t>>{{0, 5}, {100, 3}, {1000, 2}}) {
    SCOPED_TRACE(distance);
    Units u(UnitSettings{0, 1'000'000'000, distance});
    u.step({0, 1, 0});
    const int64_t before = u.units->gathers();
    u.step({0, 1, 0});
    EXPECT_EQ(u.units->gathers() - before, gathers);
    EXPECT_EQ(u.units->live_numel(), 0);
  }
}

TEST(ParamUnits, PersistentUnitsStayGathered) {
  Units u(UnitSettings{0, 1'000'000'000, 0}, {true, false, false, false});
  EXPECT_TRUE(has_data(u.weights[0]));
  EXPECT_FALSE(has_data(u.weights[1]));
  u.step({0, 1, 2, 3});
  EXPECT_TRUE(has_data(u.weights[0]));
  EXPECT_EQ(u.units->live_numel(), 64);
}

// [Note: segment chains]: kLayers weights in one unit, segment s reads weight s (every segment reads unit 0).
struct OneUnit {
  explicit OneUnit(UnitSettings settings) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    std::vector<int64_t> numels;
    std::vector<int> all;
    for (int i = 0; i < kLayers; ++i) {
      weights.push_back((at::randn({kWidth, kWidth}, gen) * 0.3).set_requires_grad(true));
      reference.push_back(weights.back().detach().clone().set_requires_grad(true));
      numels.push_back(kWidth * kWidth);
      all.push_back(i);
    }
    layout = std::make_unique<FlatLayout>(numels, std::vector<std::vector<int>>{all}, 1, 0, 1 << 20);
    units = std::make_unique<ParamUnits>(*layout, weights, std::vector<bool>{false}, make_single_comm(), settings,
                                         weights.front().options());
    units->set_segments(std::vector<std::vector<int>>(kLayers, {0}));
  }
  at::Tensor layer(int s, const at::Tensor& in, bool ref) const {
    return at::tanh(at::matmul(in, (ref ? reference : weights)[s].t()));
  }
  // Segments 0..kLayers-1, each on the previous output unless `detour[s]`: then segment s takes that output plus
  // zero (another tensor: no chain). `skip`: segment 1's output also goes straight to the loss (a gradient that
  // reaches the middle of a chain from outside it). Checks loss and gradients against plain tensors.
  void step(std::vector<bool> detour = std::vector<bool>(kLayers, false), bool skip = false) {
    const at::Tensor x = at::randn({3, kWidth}, at::make_generator<at::CPUGeneratorImpl>(11)).requires_grad_(true);
    at::Tensor h = x, r = x, side, side_ref;
    for (int s = 0; s < kLayers; ++s) {
      if (detour[s]) h = h + 0.0;
      h = units->run_segment(s, [this, s](const at::Tensor& in) {
            EXPECT_TRUE(has_data(weights[s])) << "segment " << s << " runs without its parameters";
            return layer(s, in, false);
          }, h, false);
      r = layer(s, r, true);
      if (skip && s == 1) {
        side = h;
        side_ref = r;
      }
    }
    at::Tensor loss = h.sum() + (skip ? (side * 2).sum() : at::zeros({}));
    at::Tensor want = r.sum() + (skip ? (side_ref * 2).sum() : at::zeros({}));
    loss.backward();
    units->end_backward();
    want.backward();
    EXPECT_NEAR(loss.item<double>(), want.item<double>(), 1e-5);
    for (int i = 0; i < kLayers; ++i) {
      ASSERT_TRUE(weights[i].grad().defined()) << "weight " << i;
      EXPECT_TRUE(at::allclose(weights[i].grad(), reference[i].grad(), 1e-5, 1e-6)) << "weight " << i;
      weights[i].mutable_grad().reset();
      reference[i].mutable_grad().reset();
    }
    EXPECT_EQ(units->live_numel(), 0) << "the unit is freed after its backward";
  }
  std::vector<at::Tensor> weights, reference;
  std::unique_ptr<FlatLayout> layout;
  std::unique_ptr<ParamUnits> units;
};

TEST(ParamUnits, SegmentsOnOneUnitFormAChainWithOneBackwardGatherAndFree) {
  // No prefetch, never kept (reuse distance -1): the unit is gathered for each forward segment and once for the
  // whole chain's backward (each segment's own hooks would gather it for every segment's backward: 2 x kLayers).
  OneUnit u(UnitSettings{0, 1'000'000'000, -1});
  for (int step = 0; step < 3; ++step) {
    const int64_t chained = u.units->chained(), gathers = u.units->gathers();
    u.step();
    EXPECT_EQ(u.units->chained() - chained, kLayers - 1) << "step " << step;
    EXPECT_EQ(u.units->gathers() - gathers, kLayers + 1) << "step " << step;
  }
}

TEST(ParamUnits, AChainEndsWhereTheNextSegmentTakesAnotherTensor) {
  // Segment 2 takes segment 1's output plus zero: chains {0, 1} and {2, 3}, each gathered once for backward.
  OneUnit u(UnitSettings{0, 1'000'000'000, -1});
  const int64_t gathers = u.units->gathers();
  u.step({false, false, true, false});
  EXPECT_EQ(u.units->chained(), kLayers - 2);
  EXPECT_EQ(u.units->gathers() - gathers, kLayers + 2);
}

TEST(ParamUnits, AGradientEnteringTheMiddleOfAChainWaitsForTheChain) {
  // Segment 1's output also feeds the loss directly: its hook may fire first or last; the unit stays gathered until
  // segment 0's input has its gradient either way, and the gradients are right. Also with DeepSpeed's reuse
  // distance (the unit stays gathered from forward to backward) and with prefetch.
  for (const UnitSettings& settings :
       {UnitSettings{0, 1'000'000'000, -1}, UnitSettings{64, 1'000'000'000, 1'000'000'000}}) {
    OneUnit u(settings);
    for (int step = 0; step < 2; ++step) u.step(std::vector<bool>(kLayers, false), /*skip=*/true);
    EXPECT_EQ(u.units->chained(), 2 * (kLayers - 1));
  }
}

EngineOptions single_rank() {
  EngineOptions o;
  o.comm = make_single_comm();
  o.device = c10::Device(c10::kCPU);
  return o;
}

// A unit per segment (stage3_module_granularity_threshold 0): these tests are about several units; unset, the
// default prefetch bucket would join a tiny model's blocks into one (join_units).
std::string config(int stage, const std::string& optimizer = R"({"type": "AdamW", "params": {"lr": 1e-2}})",
                   bool join_units = false) {
  return R"({"train_micro_batch_size_per_gpu": 2, "optimizer": )" + optimizer +
         R"(, "zero_optimization": {"stage": )" + std::to_string(stage) +
         (join_units ? "" : R"(, "stage3_module_granularity_threshold": 0)") +
         R"(, "stage3_param_persistence_threshold": 0}})";
}

std::vector<double> train(int stage, bool checkpoint, int steps, bool join_units = false) {
  torch::manual_seed(0);
  auto model = make_model(model_spec("llama-tiny"));
  EngineOptions o = single_rank();
  o.activation_checkpointing = checkpoint;
  auto engine = initialize(model, config(stage, R"({"type": "AdamW", "params": {"lr": 1e-2}})", join_units), o);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    at::Tensor x = at::randint(256, {2, 17}, gen, at::kLong);
    at::Tensor loss = model->loss(x.narrow(1, 0, 16), x.narrow(1, 1, 16));
    engine.backward(loss);
    engine.step();
    losses.push_back(loss.item<double>());
  }
  return losses;
}

TEST(Stage3Engine, MatchesStage0OnOneRankWithAndWithoutCheckpointing) {
  const auto want = train(0, false, 4);
  for (bool checkpoint : {false, true}) {
    for (bool join : {false, true}) {  // a unit per block; all blocks joined into one (unset threshold)
      const auto got = train(3, checkpoint, 4, join);
      for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_NEAR(got[i], want[i], 1e-5 * want[i]) << "checkpoint " << checkpoint << " joined " << join << " step " << i;
      }
    }
  }
  const auto ckpt0 = train(0, true, 4);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(ckpt0[i], want[i], 1e-5 * want[i]) << "step " << i;
}

TEST(Stage3Engine, ParametersHoldNoDataBetweenUsesAndFullDataInGatheredParameters) {
  torch::manual_seed(0);
  auto model = make_model(model_spec("llama-tiny"));
  std::map<std::string, at::Tensor> initial;
  for (const auto& item : model->named_parameters()) initial[item.key()] = item.value().detach().clone();
  auto engine = initialize(model, config(3, R"({"type": "SGD", "params": {"lr": 0.0}})"), single_rank());
  for (const auto& p : model->parameters()) EXPECT_FALSE(has_data(p));
  at::Tensor x = at::randint(256, {2, 9}, at::kLong);
  engine.backward(model->loss(x.narrow(1, 0, 8), x.narrow(1, 1, 8)));
  engine.step();
  for (const auto& p : model->parameters()) EXPECT_FALSE(has_data(p)) << "gathered after a step";
  {
    GatheredParameters full(engine);
    for (const auto& item : model->named_parameters()) {
      ASSERT_TRUE(has_data(item.value())) << item.key();
      EXPECT_TRUE(at::equal(item.value(), initial[item.key()])) << item.key() << " (lr 0 changes nothing)";
    }
  }
  for (const auto& p : model->parameters()) EXPECT_FALSE(has_data(p)) << "freed after the scope";
}

TEST(Stage3Engine, GatheredParametersWithAModifierRankChangesWhatTrains) {
  for (int stage : {0, 2, 3}) {
    SCOPED_TRACE(stage);
    torch::manual_seed(0);
    auto model = make_model(model_spec("llama-tiny"));
    auto engine = initialize(model, config(stage, R"({"type": "SGD", "params": {"lr": 0.0}})"), single_rank());
    at::Tensor& w = model->blocks()[0]->named_parameters()["mlp.up_proj.weight"];
    {
      GatheredParameters full(engine, /*modifier_rank=*/0);
      at::NoGradGuard no_grad;
      w.fill_(0.5);
    }
    at::Tensor x = at::randint(256, {2, 9}, at::kLong);
    engine.backward(model->loss(x.narrow(1, 0, 8), x.narrow(1, 1, 8)));
    engine.step();  // lr 0: the parameters are the master weights, which must hold the change
    GatheredParameters full(engine);
    EXPECT_TRUE(at::all(w == 0.5).item<bool>());
  }
  torch::manual_seed(0);
  auto model = make_model(model_spec("llama-tiny"));
  auto engine = initialize(model, config(3), single_rank());
  EXPECT_THROW(GatheredParameters(engine, 1), std::invalid_argument);
}

std::string temp_dir(const std::string& name) {
  return ::testing::TempDir() + "zt_" + name + "_" + std::to_string(::getpid());
}

TEST(Stage3Engine, Save16BitModelGathersUnitByUnitWhenAsked) {
  torch::manual_seed(0);
  auto model = make_model(model_spec("gpt2-tiny"));  // tied head: saved once
  const std::string cfg = R"({"train_micro_batch_size_per_gpu": 1, "bf16": {"enabled": true},
      "optimizer": {"type": "AdamW", "params": {"lr": 1e-2}},
      "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0,
                            "stage3_gather_16bit_weights_on_model_save": true}})";
  auto engine = initialize(model, cfg, single_rank());
  at::Tensor x = at::randint(256, {1, 9}, at::kLong);
  engine.backward(model->loss(x.narrow(1, 0, 8), x.narrow(1, 1, 8)));
  engine.step();
  const std::string dir = temp_dir("save16");
  ASSERT_TRUE(engine.save_16bit_model(dir, "model.safetensors"));
  std::map<std::string, std::string> meta;
  const auto saved = detail::read_safetensors(dir + "/model.safetensors", &meta);
  EXPECT_EQ(meta["format"], "pt");
  GatheredParameters full(engine);
  const auto params = model->named_parameters();
  EXPECT_EQ(saved.size(), params.size());
  for (const auto& item : params) {
    ASSERT_TRUE(saved.count(item.key())) << item.key();
    EXPECT_EQ(saved.at(item.key()).scalar_type(), at::kBFloat16) << item.key();
    EXPECT_TRUE(at::equal(saved.at(item.key()), item.value())) << item.key();
  }
  EXPECT_TRUE(saved.count("transformer.wte.weight"));
  EXPECT_FALSE(saved.count("lm_head.weight"));
  for (const auto& p : model->parameters()) EXPECT_TRUE(has_data(p));  // the scope above still holds them
}

TEST(Stage3Engine, Save16BitModelAtStage3WithoutTheGatherFlagWritesNothing) {
  torch::manual_seed(0);
  auto model = make_model(model_spec("llama-tiny"));
  auto engine = initialize(model, config(3), single_rank());
  const std::string dir = temp_dir("nosave");
  EXPECT_FALSE(engine.save_16bit_model(dir));
  EXPECT_FALSE(std::ifstream(dir + "/pytorch_model.bin").good());
}

TEST(Stage3Engine, Save16BitModelWritesATorchLoadablePickleByDefault) {
  torch::manual_seed(0);
  auto model = make_model(model_spec("llama-tiny"));
  auto engine = initialize(model, config(2), single_rank());
  const std::string dir = temp_dir("save16bin");
  ASSERT_TRUE(engine.save_16bit_model(dir));
  std::ifstream in(dir + "/pytorch_model.bin", std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto dict = torch::pickle_load(bytes).toGenericDict();
  EXPECT_EQ(dict.size(), model->named_parameters().size());
  for (const auto& item : model->named_parameters()) {
    EXPECT_TRUE(at::equal(dict.at(item.key()).toTensor(), item.value())) << item.key();
  }
}

TEST(Safetensors, BadFilesAreErrorsNamingTheFile) {
  const std::string dir = temp_dir("bad");
  std::filesystem::create_directories(dir);
  const std::string good = dir + "/good.safetensors";
  detail::write_safetensors(good, {{"a", at::arange(6, at::kFloat).view({2, 3})}});
  EXPECT_TRUE(at::equal(detail::read_safetensors(good).at("a"), at::arange(6, at::kFloat).view({2, 3})));
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto expect_error = [&](const std::string& content, const std::string& what) {
    const std::string path = dir + "/bad.safetensors";
    std::ofstream(path, std::ios::binary) << content;
    try {
      detail::read_safetensors(path);
      ADD_FAILURE() << "no error for " << what;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(bytes.substr(0, bytes.size() - 4), "tensor \"a\"");  // truncated data
  expect_error(bytes.substr(0, 5), "truncated");
  expect_error(std::string("\x10\0\0\0\0\0\0\0{not json}      ", 24), "malformed safetensors header");
  EXPECT_THROW(detail::read_safetensors(dir + "/missing.safetensors"), std::runtime_error);
  EXPECT_THROW(detail::write_safetensors(good, {{"a", at::zeros({1})}, {"a", at::zeros({1})}}), std::invalid_argument);
}

TEST(Stage3Engine, ADeferredModelIsMaterializedUnitByUnitAndTrains) {
  torch::manual_seed(0);
  auto model = make_model_deferred(model_spec("llama-tiny"));
  for (const auto& p : model->parameters()) EXPECT_FALSE(has_data(p)) << "built without data";
  auto engine = initialize(model, config(3), single_rank());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  std::vector<double> losses;
  for (int s = 0; s < 8; ++s) {
    at::Tensor x = at::randint(16, {2, 17}, gen, at::kLong);  // a small alphabet: learnable in a few steps
    at::Tensor loss = model->loss(x.narrow(1, 0, 16), x.narrow(1, 1, 16));
    engine.backward(loss);
    engine.step();
    losses.push_back(loss.item<double>());
  }
  EXPECT_NEAR(losses.front(), std::log(256.0), 0.5) << "initialized like make_model: near-uniform predictions";
  EXPECT_LT(losses.back(), losses.front() - 0.5);
  torch::manual_seed(0);
  auto reference = make_model(model_spec("llama-tiny"));
  const auto want = reference->named_parameters();
  GatheredParameters full(engine);
  EXPECT_TRUE(at::all(model->named_parameters()["model.norm.weight"] != 0).item<bool>());
  // Before training the distributions matched make_model's: compare the embedding's spread loosely (8 steps moved it
  // by about 8 lr = 0.08 at most per element).
  const double std_got = model->named_parameters()["model.embed_tokens.weight"].std().item<double>();
  const double std_want = want["model.embed_tokens.weight"].std().item<double>();
  EXPECT_NEAR(std_got, std_want, 0.5 * std_want + 0.08);
}

TEST(Stage3Engine, ADeferredModelBelowStage3IsAnErrorNamingTheParameterAndStage) {
  auto model = make_model_deferred(model_spec("llama-tiny"));
  try {
    initialize(model, config(2), single_rank());
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("model.embed_tokens.weight holds no data"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("zero_optimization.stage is 2"), std::string::npos) << e.what();
  }
}

// A user's C++ module that declares its segments: `layers` layers of width x width, one segment each, run in
// `order` (a layer may run twice: shared), tanh after each.
struct LayerStack : torch::nn::Module, Segmented {
  LayerStack(int layers, int64_t width, std::vector<int64_t> order) : order(std::move(order)) {
    for (int i = 0; i < layers; ++i) {
      this->layers.push_back(register_module("l" + std::to_string(i), torch::nn::Linear(width, width)));
    }
  }
  at::Tensor run(at::Tensor h) {
    for (int64_t s : order) {
      torch::nn::LinearImpl* layer = layers[s].get();
      h = run_segment(s, [layer](const at::Tensor& in) { return at::tanh(layer->forward(in)); }, h);
    }
    return h;
  }
  std::vector<std::vector<at::Tensor>> segment_parameters() const override {
    std::vector<std::vector<at::Tensor>> out;
    for (const auto& l : layers) out.push_back(l->parameters());
    return out;
  }
  std::vector<int64_t> order;
  std::vector<torch::nn::Linear> layers;
};

// Three layers, the last one reused after the first (shared).
struct MlpStack : LayerStack {
  MlpStack() : LayerStack(3, 16, {0, 2, 1, 2}) {}
  at::Tensor forward(const at::Tensor& x, const at::Tensor& y) { return (run(x) - y).pow(2).mean(); }
};

// join_units: stage3_module_granularity_threshold unset (its three layers of 272 elements join into one unit);
// otherwise 0 (a unit per segment).
std::vector<double> train_mlp(int stage, bool checkpoint, bool join_units = false) {
  torch::manual_seed(0);
  auto model = std::make_shared<MlpStack>();
  EngineOptions o = single_rank();
  o.activation_checkpointing = checkpoint;
  auto engine = initialize(model, config(stage, R"({"type": "AdamW", "params": {"lr": 1e-2}})", join_units), o);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  std::vector<double> losses;
  for (int s = 0; s < 4; ++s) {
    at::Tensor loss = engine.forward(at::randn({4, 16}, gen), at::randn({4, 16}, gen));
    if (stage == 3 && s == 0) {
      for (const auto& p : model->parameters()) EXPECT_FALSE(has_data(p)) << "freed after use (first step)";
    }
    engine.backward(loss);
    engine.step();
    losses.push_back(loss.item<double>());
  }
  return losses;
}

TEST(Stage3Engine, SegmentedUserModulesGetAUnitPerSegment) {
  const auto want = train_mlp(0, false);
  for (auto [stage, checkpoint] : {std::pair{3, false}, std::pair{3, true}, std::pair{0, true}}) {
    for (bool join : {false, true}) {
      const auto got = train_mlp(stage, checkpoint, join);
      for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_NEAR(got[i], want[i], 1e-5 * want[i])
            << "stage " << stage << " checkpoint " << checkpoint << " joined units " << join << " step " << i;
      }
    }
  }
}

// A single-rank communicator that counts the collectives stage 3 issues.
class CountingComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void all_reduce(at::Tensor& t, ReduceOp op) override { inner_->all_reduce(t, op); }
  std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor& out, const at::Tensor& in, ReduceOp op) override {
    ++reduce_scatters;
    ++reduced_tensors;
    return inner_->reduce_scatter_async(out, in, op);
  }
  std::unique_ptr<CommWork> reduce_scatter_coalesced_async(std::vector<at::Tensor>& outs,
                                                           const std::vector<at::Tensor>& ins, ReduceOp op) override {
    ++reduce_scatters;
    reduced_tensors += static_cast<int>(ins.size());
    return inner_->reduce_scatter_coalesced_async(outs, ins, op);
  }
  std::unique_ptr<CommWork> all_gather_async(at::Tensor& out, const at::Tensor& in) override {
    ++all_gathers;
    return inner_->all_gather_async(out, in);
  }
  std::unique_ptr<CommWork> all_gather_coalesced_async(std::vector<at::Tensor>& outs,
                                                       const std::vector<at::Tensor>& ins) override {
    ++all_gathers;
    return inner_->all_gather_coalesced_async(outs, ins);
  }
  std::unique_ptr<CommWork> all_reduce_async(at::Tensor& t, ReduceOp op) override {
    return inner_->all_reduce_async(t, op);
  }
  void broadcast(at::Tensor& t, int root) override { inner_->broadcast(t, root); }
  void barrier() override { inner_->barrier(); }
  int reduce_scatters = 0, all_gathers = 0, gathered_tensors = 0, reduced_tensors = 0;

 private:
  std::shared_ptr<Comm> inner_ = make_single_comm();
};

// One rank's coalesced collectives are copies: one multi-tensor copy for every pair not already in place.
TEST(SingleComm, CoalescedCollectivesCopyWhatIsNotInPlace) {
  auto comm = make_single_comm();
  at::Tensor a = at::arange(6, at::kFloat), b = at::arange(4, at::kFloat) + 10, c = at::arange(8, at::kFloat) + 20;
  at::Tensor b_out = at::zeros({4}), c_out = at::zeros({2, 4});
  std::vector<at::Tensor> outs{a, b_out, c_out}, ins{a, b, c};
  comm->all_gather_coalesced_async(outs, ins)->wait();
  EXPECT_TRUE(at::equal(a, at::arange(6, at::kFloat)));
  EXPECT_TRUE(at::equal(b_out, b));
  EXPECT_TRUE(at::equal(c_out.view({-1}), c));
  b_out.zero_();
  std::vector<at::Tensor> outs1{b_out}, ins1{b};
  comm->reduce_scatter_coalesced_async(outs1, ins1, ReduceOp::kSum)->wait();
  EXPECT_TRUE(at::equal(b_out, b));
  std::vector<at::Tensor> bad_outs{at::zeros({3})}, bad_ins{b};
  try {
    comm->reduce_scatter_coalesced_async(bad_outs, bad_ins, ReduceOp::kSum);
    ADD_FAILURE() << "a size mismatch must throw";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("reduce_scatter_coalesced: output 0 has 3 elements, input 4"),
              std::string::npos)
        << e.what();
  }
}

// 32 segments of one small layer each.
std::vector<int64_t> first_n(int n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}
struct ManyUnits : LayerStack {
  ManyUnits() : LayerStack(32, 8, first_n(32)) {}
  at::Tensor forward(const at::Tensor& x) { return run(x).pow(2).mean(); }
};

// ManyUnits trained by AdamW (no clipping) at `stage` with the given extra zero_optimization keys, its collectives
// counted by `comm`.
Engine many_units_engine(const std::shared_ptr<ManyUnits>& model, const std::shared_ptr<CountingComm>& comm, int stage,
                         const std::string& zero_keys) {
  EngineOptions o;
  o.comm = comm;
  o.device = c10::Device(c10::kCPU);
  return initialize(model, R"({"train_micro_batch_size_per_gpu": 2, "gradient_clipping": 0,
      "optimizer": {"type": "AdamW", "params": {"lr": 1e-2}}, "zero_optimization": {"stage": )" +
      std::to_string(stage) + R"(, "stage3_param_persistence_threshold": 0, )" + zero_keys + "}}", o);
}

TEST(Stage3Engine, SmallUnitsShareTheirCollectives) {
  // 32 units of 72 elements (96 in the layout), prefetch bucket 8 units: after the first step (no recorded order),
  // gathers and reductions go 3 or more units to a collective on average (one each without batching); losses equal
  // stage 0's.
  std::vector<double> losses[2];
  int gathers = 0, reductions = 0;
  for (int stage : {0, 3}) {
    torch::manual_seed(0);
    auto model = std::make_shared<ManyUnits>();
    auto comm = std::make_shared<CountingComm>();
    auto engine = many_units_engine(model, comm, stage,
                                    R"("stage3_prefetch_bucket_size": 768, "stage3_max_reuse_distance": 0)");
    auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
    for (int step = 0; step < 3; ++step) {
      if (step == 2) comm->all_gathers = comm->reduce_scatters = 0;
      at::Tensor loss = engine.forward(at::randn({4, 8}, gen));
      engine.backward(loss);
      engine.step();
      losses[stage == 3].push_back(loss.item<double>());
    }
    if (stage == 3) gathers = comm->all_gathers, reductions = comm->reduce_scatters;
  }
  for (size_t i = 0; i < losses[0].size(); ++i) EXPECT_NEAR(losses[1][i], losses[0][i], 1e-6) << "step " << i;
  EXPECT_LE(3 * gathers, 2 * 32) << gathers << " gather collectives for 2 x 32 unit gathers";
  EXPECT_LE(3 * reductions, 32) << reductions << " reduce-scatters for 32 units";
}

TEST(Stage3Engine, SmallNeighbouringUnitsAreGatheredAsOne) {
  // ManyUnits' 32 layers of 72 elements: with stage3_module_granularity_threshold 0 each is a unit (32 gradient
  // buckets reduced a step: a unit is one bucket); explicitly 160, 2 layers join (16: 144 elements, 160 as the
  // layout pads them); unset, with a prefetch bucket of 2304 elements, up to 2304 / 8 = 288 (4 layers: 8). The
  // losses stay stage 0's; between steps nothing stays
  // gathered. Without prefetch and with stage3_max_reuse_distance 0 a joined unit is freed once its last layer is
  // done: after forward only the last unit is gathered (backward starts with it; 2 layers: 160 elements padded).
  std::vector<double> want;
  for (const char* threshold : {"", "0", "160", "unset"}) {
    const int stage = *threshold == 0 ? 0 : 3;
    const bool unset = std::string(threshold) == "unset";
    torch::manual_seed(0);
    auto model = std::make_shared<ManyUnits>();
    auto comm = std::make_shared<CountingComm>();
    const std::string key = unset || stage == 0
                                ? ""
                                : std::string(R"("stage3_module_granularity_threshold": )") + threshold + ", ";
    auto engine = many_units_engine(model, comm, stage,
                                    key + R"("stage3_prefetch_bucket_size": )" + (unset ? "2304" : "0") +
                                        R"(, "stage3_max_reuse_distance": 0)");
    auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
    std::vector<double> losses;
    for (int step = 0; step < 3; ++step) {
      comm->reduced_tensors = 0;
      at::Tensor loss = engine.forward(at::randn({4, 8}, gen));
      if (stage == 3 && !unset) {
        EXPECT_LE(engine.gathered_numel(), 160) << "threshold " << threshold << ": after forward, step " << step;
      }
      engine.backward(loss);
      engine.step();
      losses.push_back(loss.item<double>());
      if (stage == 3) EXPECT_EQ(engine.gathered_numel(), 0) << "threshold " << threshold << ": between steps";
    }
    if (stage == 0) {
      want = losses;
      continue;
    }
    const int per_unit = std::string(threshold) == "0" ? 1 : std::string(threshold) == "160" ? 2 : 4;
    EXPECT_EQ(comm->reduced_tensors, 32 / per_unit) << "threshold " << threshold;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(losses[i], want[i], 1e-6) << "threshold " << threshold;
  }
}

TEST(Stage3Plan, NeighbouringSmallUnitsJoinUpToTheThreshold) {
  // Segments 0-5 read parameters of 10, 10, 10, 50, 10 and 10 elements (one each); segment 6 reads segment 0's
  // again; one parameter of 4 elements is persistent, one of 20 no segment reads. Units are laid out last segment
  // first; with a threshold of 30: {5, 4} (20), {3} (50: not small), {2, 1, 0} (30), then the unread one, then the
  // persistent one.
  std::vector<at::Tensor> params;
  for (int64_t n : {10, 10, 10, 50, 10, 10, 4, 20}) params.push_back(at::zeros({n}));
  std::vector<std::vector<at::Tensor>> segments;
  for (int s = 0; s < 6; ++s) segments.push_back({params[s]});
  segments.push_back({params[0], params[6]});
  const detail::Stage3Plan plan = detail::plan_stage3(params, segments, {/*persistence*/ 5, INT64_MAX, /*merge*/ 30});
  using Groups = std::vector<std::vector<int>>;
  EXPECT_EQ(plan.groups, (Groups{{5, 4}, {3}, {2, 1, 0}, {7}, {6}}));
  EXPECT_EQ(plan.persistent, (std::vector<bool>{false, false, false, true, true}));
  EXPECT_EQ(plan.segment_units, (Groups{{2}, {2}, {2}, {1}, {0}, {0}, {2, 4}}));
  // 0: a unit per segment
  const detail::Stage3Plan apart = detail::plan_stage3(params, segments, {5, INT64_MAX, 0});
  EXPECT_EQ(apart.groups, (Groups{{5}, {4}, {3}, {2}, {1}, {0}, {7}, {6}}));
  EXPECT_EQ(apart.segment_units, (Groups{{5}, {4}, {3}, {2}, {1}, {0}, {5, 7}}));
  // a joined unit never exceeds the threshold: at 25 two segments of 10 join and a third starts a new unit
  EXPECT_EQ(detail::plan_stage3(params, segments, {5, INT64_MAX, 25}).groups,
            (Groups{{5, 4}, {3}, {2, 1}, {0}, {7}, {6}}));
  // sizes as the layout pads them (here to multiples of 8): 10 -> 16, 20 -> 24, 30 -> 32 > 30
  EXPECT_EQ(detail::plan_stage3(params, segments, {5, INT64_MAX, 30, /*pad*/ 8}).groups,
            (Groups{{5, 4}, {3}, {2, 1}, {0}, {7}, {6}}));
  // the config's threshold: stage3_module_granularity_threshold when set, else min(prefetch, live) / 8
  EXPECT_EQ(detail::merge_numel_for(-1, 50'000'000, 1'000'000'000), 6'250'000);
  EXPECT_EQ(detail::merge_numel_for(-1, 50'000'000, 8'000'000), 1'000'000);
  EXPECT_EQ(detail::merge_numel_for(-1, 0, 1'000'000'000), 0) << "no prefetch: no joining";
  EXPECT_EQ(detail::merge_numel_for(0, 50'000'000, 1'000'000'000), 0);
  EXPECT_EQ(detail::merge_numel_for(1000, 50'000'000, 1'000'000'000), 1000);
}

}  // namespace
}  // namespace zerotrain
