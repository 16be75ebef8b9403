// The LR schedules against DeepSpeed's formulas: tests/golden/lr_schedules.json holds, for each case, the lr (and
// beta1) DeepSpeed leaves in the optimizer after construction and after every scheduler.step(), computed by
// tests/golden/make_schedule_golden.py. Every step must agree within 1e-12 relative.
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lr/lr_schedule.h"
#include "zerotrain/config.h"

namespace zerotrain::detail {
namespace {

using Json = nlohmann::json;

constexpr double kRelTol = 1e-12;

const Json& golden() {
  static const Json cases = [] {
    const std::string path = ZEROTRAIN_SOURCE_DIR "/tests/golden/lr_schedules.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return Json::parse(in).at("cases");
  }();
  return cases;
}

SchedulerKind kind_of(const std::string& type) {
  if (type == "WarmupLR") return SchedulerKind::kWarmupLR;
  if (type == "WarmupDecayLR") return SchedulerKind::kWarmupDecayLR;
  if (type == "WarmupCosineLR") return SchedulerKind::kWarmupCosineLR;
  if (type == "OneCycle") return SchedulerKind::kOneCycle;
  if (type == "LRRangeTest") return SchedulerKind::kLRRangeTest;
  throw std::runtime_error("golden file names an unknown schedule " + type);
}

// The SchedulerConfig a DeepSpeed "scheduler.params" object describes, built without the config parser so that
// values outside zerotrain's schema (but accepted by DeepSpeed) can be tested too.
SchedulerConfig config_from_params(const std::string& type, const Json& params) {
  SchedulerConfig c;
  c.kind = kind_of(type);
  c.type = type;
  for (const auto& [key, v] : params.items()) {
    if (key == "warmup_min_lr") c.warmup_min_lr = v.get<double>();
    else if (key == "warmup_max_lr") c.warmup_max_lr = v.get<double>();
    else if (key == "warmup_num_steps") c.warmup_num_steps = v.get<int64_t>();
    else if (key == "warmup_type") c.warmup_type = v.get<std::string>() == "linear" ? WarmupType::kLinear : WarmupType::kLog;
    else if (key == "total_num_steps") c.total_num_steps = v.get<int64_t>();
    else if (key == "warmup_min_ratio") c.warmup_min_ratio = v.get<double>();
    else if (key == "cos_min_ratio") c.cos_min_ratio = v.get<double>();
    else if (key == "cycle_min_lr") c.cycle_min_lr = v.get<double>();
    else if (key == "cycle_max_lr") c.cycle_max_lr = v.get<double>();
    else if (key == "decay_lr_rate") c.decay_lr_rate = v.get<double>();
    else if (key == "cycle_first_step_size") c.cycle_first_step_size = v.get<int64_t>();
    else if (key == "cycle_second_step_size") c.cycle_second_step_size = v.get<int64_t>();
    else if (key == "cycle_first_stair_count") c.cycle_first_stair_count = v.get<int64_t>();
    else if (key == "cycle_second_stair_count") c.cycle_second_stair_count = v.get<int64_t>();
    else if (key == "decay_step_size") c.decay_step_size = v.get<int64_t>();
    else if (key == "cycle_momentum") c.cycle_momentum = v.get<bool>();
    else if (key == "cycle_min_mom") c.cycle_min_mom = v.get<double>();
    else if (key == "cycle_max_mom") c.cycle_max_mom = v.get<double>();
    else if (key == "decay_mom_rate") c.decay_mom_rate = v.get<double>();
    else if (key == "lr_range_test_min_lr") c.lr_range_test_min_lr = v.get<double>();
    else if (key == "lr_range_test_step_size") c.lr_range_test_step_size = v.get<int64_t>();
    else if (key == "lr_range_test_step_rate") c.lr_range_test_step_rate = v.get<double>();
    else if (key == "lr_range_test_staircase") c.lr_range_test_staircase = v.get<bool>();
    else if (key == "last_batch_iteration") c.last_batch_iteration = v.get<int64_t>();
    else throw std::runtime_error("golden file uses a parameter this test does not map: " + key);
  }
  return c;
}

std::string describe(const Json& c) { return c.at("type").get<std::string>() + " " + c.at("params").dump(); }

bool close(double expected, double actual) {
  if (expected == 0.0) return actual == 0.0;
  return std::abs(actual - expected) <= kRelTol * std::abs(expected);
}

// Compares the whole sequence and reports the first step that differs (one failure per case, not hundreds).
::testing::AssertionResult matches_golden(const LrSchedule& s, const Json& c) {
  const Json& lrs = c.at("lr");
  const Json& moms = c.at("momentum");
  const bool check_momentum = c.at("optimizer_has_betas").get<bool>();
  for (size_t k = 0; k < lrs.size(); ++k) {
    const auto steps = static_cast<int64_t>(k);
    const double want = lrs[k].get<double>();
    const double got = s.lr(steps);
    if (!close(want, got)) {
      return ::testing::AssertionFailure() << "lr after " << k << " steps: got " << got << ", DeepSpeed " << want
                                           << " (rel diff " << std::abs(got - want) / std::abs(want) << ")";
    }
    if (!check_momentum) continue;
    const std::optional<double> mom = s.momentum(steps);
    if (moms[k].is_null() != !mom.has_value()) {
      return ::testing::AssertionFailure() << "momentum after " << k << " steps: got "
                                           << (mom ? std::to_string(*mom) : "untouched") << ", DeepSpeed "
                                           << moms[k].dump();
    }
    if (mom && !close(moms[k].get<double>(), *mom)) {
      return ::testing::AssertionFailure() << "momentum after " << k << " steps: got " << *mom << ", DeepSpeed "
                                           << moms[k].get<double>();
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(LrScheduleGolden, EveryScheduleAndOptionMatchesDeepSpeedEveryStep) {
  ASSERT_GE(golden().size(), 30u);
  for (const Json& c : golden()) {
    SCOPED_TRACE(describe(c));
    const SchedulerConfig cfg = config_from_params(c.at("type"), c.at("params"));
    const auto schedule = make_lr_schedule(cfg, c.at("base_lr").get<double>());
    ASSERT_NE(schedule, nullptr);
    EXPECT_GE(c.at("lr").size(), 61u);
    EXPECT_TRUE(matches_golden(*schedule, c));
  }
}

// The same cases read the way users write them: a DeepSpeed JSON config through zerotrain's config parser, the
// optimizer's lr as base_lr. Catches defaults that differ between the parser and the schedules.
TEST(LrScheduleGolden, DeepSpeedJsonConfigsGiveTheSameSequences) {
  int checked = 0;
  for (const Json& c : golden()) {
    if (!c.value("through_config", true)) continue;
    SCOPED_TRACE(describe(c));
    const Json ds = {{"train_batch_size", 1},
                     {"optimizer", {{"type", "Adam"}, {"params", {{"lr", c.at("base_lr")}}}}},
                     {"scheduler", {{"type", c.at("type")}, {"params", c.at("params")}}}};
    const Config cfg = Config::from_string(ds.dump());
    const auto schedule = make_lr_schedule(cfg.scheduler(), cfg.optimizer().lr);
    ASSERT_NE(schedule, nullptr);
    EXPECT_TRUE(matches_golden(*schedule, c));
    ++checked;
  }
  EXPECT_GE(checked, 30);
}

TEST(LrScheduleGolden, OneCycleSetsBeta2AsDeepSpeedDoes) {
  int with_momentum = 0;
  for (const Json& c : golden()) {
    if (!c.contains("beta2")) continue;
    EXPECT_EQ(c.at("beta2").get<double>(), kOneCycleBeta2) << describe(c);
    ++with_momentum;
  }
  EXPECT_GE(with_momentum, 5);
}

// An optimizer without betas (SGD): DeepSpeed never touches momentum; the schedule still reports the cycle, which
// the engine must ignore for such optimizers (lr_schedule.h). Guards the golden case's premise.
TEST(LrScheduleGolden, OptimizerWithoutBetasKeepsItsMomentum) {
  int found = 0;
  for (const Json& c : golden()) {
    if (c.at("optimizer_has_betas").get<bool>()) continue;
    ++found;
    for (const Json& m : c.at("momentum")) EXPECT_TRUE(m.is_null()) << describe(c);
  }
  EXPECT_EQ(found, 1);
}

// Resuming with last_batch_iteration = L continues the fresh schedule's sequence from its step L + 1, and leaves the
// optimizer's own lr in place until the first step.
TEST(LrSchedule, ResumedScheduleContinuesTheFreshOne) {
  for (const Json& c : golden()) {
    SchedulerConfig fresh_cfg = config_from_params(c.at("type"), c.at("params"));
    if (fresh_cfg.last_batch_iteration != -1) continue;
    SCOPED_TRACE(describe(c));
    const double base_lr = 0.0123;  // distinct from every schedule value, so lr(0) must be the optimizer's
    const auto fresh = make_lr_schedule(fresh_cfg, base_lr);
    for (int64_t resume_at : {1, 37, 150}) {
      SchedulerConfig resumed_cfg = fresh_cfg;
      resumed_cfg.last_batch_iteration = resume_at - 1;
      const auto resumed = make_lr_schedule(resumed_cfg, base_lr);
      EXPECT_EQ(resumed->lr(0), base_lr);
      EXPECT_EQ(resumed->momentum(0), std::nullopt);
      for (int64_t k = 1; k < 100; ++k) {
        ASSERT_EQ(resumed->lr(k), fresh->lr(resume_at + k)) << "resume_at " << resume_at << " step " << k;
        ASSERT_EQ(resumed->momentum(k), fresh->momentum(resume_at + k)) << "resume_at " << resume_at << " step " << k;
      }
    }
  }
}

TEST(LrSchedule, NoScheduleMeansConstantLr) {
  EXPECT_EQ(make_lr_schedule(SchedulerConfig{}, 1e-3), nullptr);
}

TEST(LrSchedule, WarmupLrDefaultsToTheOptimizerLrAndDecayTo0001) {
  SchedulerConfig warmup;
  warmup.kind = SchedulerKind::kWarmupLR;
  warmup.warmup_num_steps = 10;
  EXPECT_DOUBLE_EQ(make_lr_schedule(warmup, 0.05)->lr(500), 0.05);
  SchedulerConfig decay = warmup;
  decay.kind = SchedulerKind::kWarmupDecayLR;
  decay.total_num_steps = 1000;
  // After warmup, gamma is (1000 - 10) / (1000 - 10) = 1 at the first post-warmup index.
  EXPECT_DOUBLE_EQ(make_lr_schedule(decay, 0.05)->lr(11), 0.001);
}

// Every check names the key, the value and what is allowed.
void expect_config_error(const SchedulerConfig& cfg, const std::string& key, const std::string& value) {
  try {
    make_lr_schedule(cfg, 1e-3);
    ADD_FAILURE() << "no ConfigError for " << key << " = " << value;
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("scheduler.params." + key), std::string::npos) << what;
    EXPECT_NE(what.find(value), std::string::npos) << what;
    EXPECT_NE(what.find("allowed"), std::string::npos) << what;
  }
}

TEST(LrSchedule, RejectsWhatDeepSpeedRejects) {
  SchedulerConfig warmup;
  warmup.kind = SchedulerKind::kWarmupLR;
  warmup.warmup_num_steps = 0;
  expect_config_error(warmup, "warmup_num_steps", "0");

  SchedulerConfig cosine;
  cosine.kind = SchedulerKind::kWarmupCosineLR;
  cosine.warmup_num_steps = -3;
  cosine.total_num_steps = 100;
  expect_config_error(cosine, "warmup_num_steps", "-3");

  SchedulerConfig decay;
  decay.kind = SchedulerKind::kWarmupDecayLR;
  try {
    make_lr_schedule(decay, 1e-3);
    ADD_FAILURE() << "no ConfigError for a missing total_num_steps";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("scheduler.params.total_num_steps: missing"), std::string::npos) << e.what();
  }

  SchedulerConfig one_cycle;
  one_cycle.kind = SchedulerKind::kOneCycle;
  one_cycle.cycle_first_step_size = 0;
  expect_config_error(one_cycle, "cycle_first_step_size", "0");
  one_cycle.cycle_first_step_size = 10;
  one_cycle.cycle_second_step_size = -1;
  expect_config_error(one_cycle, "cycle_second_step_size", "-1");

  SchedulerConfig range;
  range.kind = SchedulerKind::kLRRangeTest;
  range.lr_range_test_step_size = 0;
  expect_config_error(range, "lr_range_test_step_size", "0");
  range.lr_range_test_step_size = 10;
  range.last_batch_iteration = -2;
  expect_config_error(range, "last_batch_iteration", "-2");
}

TEST(LrSchedule, TorchSchedulersAreNotSupportedYet) {
  SchedulerConfig other;
  other.kind = SchedulerKind::kOther;
  other.type = "StepLR";
  try {
    make_lr_schedule(other, 1e-3);
    ADD_FAILURE() << "no ConfigError for StepLR";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("scheduler.type"), std::string::npos) << what;
    EXPECT_NE(what.find("StepLR"), std::string::npos) << what;
    EXPECT_NE(what.find("WarmupCosineLR"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace zerotrain::detail
