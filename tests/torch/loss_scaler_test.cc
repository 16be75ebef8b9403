// The loss scaler against DeepSpeed's update rules: tests/golden/loss_scaler.json holds overflow patterns and the
// scale, hysteresis and last-overflow index DeepSpeed has after each update (DynamicLossScaler for ZeRO,
// FP16_Optimizer._update_scale otherwise), and the update where DeepSpeed raises at the minimum scale, computed by
// tests/golden/make_schedule_golden.py. The scale arithmetic is exact (halving, doubling, max with the floor), so
// the scales must be equal, not just close.
#include <fstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "precision/loss_scaler.h"
#include "zerotrain/config.h"

namespace zerotrain::detail {
namespace {

using Json = nlohmann::json;

const Json& golden() {
  static const Json cases = [] {
    const std::string path = ZEROTRAIN_SOURCE_DIR "/tests/golden/loss_scaler.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return Json::parse(in).at("cases");
  }();
  return cases;
}

Fp16Config config_from_fp16(const Json& fp16) {
  Fp16Config c;
  for (const auto& [key, v] : fp16.items()) {
    if (key == "enabled") c.enabled = v.get<bool>();
    else if (key == "loss_scale") c.loss_scale = v.get<double>();
    else if (key == "initial_scale_power") c.initial_scale_power = v.get<int>();
    else if (key == "loss_scale_window") c.loss_scale_window = v.get<int64_t>();
    else if (key == "hysteresis") c.hysteresis = v.get<int>();
    else if (key == "consecutive_hysteresis") c.consecutive_hysteresis = v.get<bool>();
    else if (key == "min_loss_scale") c.min_loss_scale = v.get<double>();
    else throw std::runtime_error("golden file uses an fp16 key this test does not map: " + key);
    if (key != "enabled") c.dynamic_args_given = true;
  }
  return c;
}

bool is_dynamic(const Json& c) {
  return c.at("fp16").value("enabled", false) && c.at("fp16").value("loss_scale", 0.0) == 0.0;
}

// Feeds updates [from, end) of case `c` into `s` (which has already seen [0, from)) and compares after each.
::testing::AssertionResult replay(LossScaler& s, const Json& c, size_t from) {
  const Json& overflow = c.at("overflow");
  const Json& raises_at = c.at("raises_at");
  const bool zero_dynamic = c.at("zero_optimizer").get<bool>() && is_dynamic(c);
  for (size_t i = from; i < overflow.size(); ++i) {
    const bool o = overflow[i].get<int>() != 0;
    if (!raises_at.is_null() && raises_at.get<size_t>() == i) {
      const LossScaler::State before = s.state();
      try {
        s.update(o);
        return ::testing::AssertionFailure() << "update " << i << " did not throw; DeepSpeed raises there";
      } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        // The message says what happened (step, scale) and what to try.
        for (const std::string& part : {"optimizer step " + std::to_string(i + 1), std::string("fp16.min_loss_scale"),
                                        std::string("bf16"), std::string("learning rate"),
                                        std::string("gradient_clipping"), std::string("inf/NaN")}) {
          if (what.find(part) == std::string::npos) {
            return ::testing::AssertionFailure() << "message lacks \"" << part << "\": " << what;
          }
        }
      }
      const LossScaler::State after = s.state();
      if (after.scale != before.scale || after.iteration != before.iteration ||
          after.hysteresis_left != before.hysteresis_left || after.skipped_steps != before.skipped_steps) {
        return ::testing::AssertionFailure() << "the throwing update " << i << " changed the state";
      }
      return ::testing::AssertionSuccess();
    }
    if (s.update(o) != o) return ::testing::AssertionFailure() << "update " << i << " returned !overflow";
    const double want = c.at("scale")[i].get<double>();
    if (s.scale() != want) {
      return ::testing::AssertionFailure() << "scale after update " << i << ": got " << s.scale() << ", DeepSpeed "
                                           << want;
    }
    const LossScaler::State st = s.state();
    if (st.iteration != static_cast<int64_t>(i + 1)) {
      return ::testing::AssertionFailure() << "iteration after update " << i << ": " << st.iteration;
    }
    if (is_dynamic(c) && st.last_overflow_iteration != c.at("last_overflow_iteration")[i].get<int64_t>()) {
      return ::testing::AssertionFailure() << "last_overflow_iteration after update " << i << ": got "
                                           << st.last_overflow_iteration << ", DeepSpeed "
                                           << c.at("last_overflow_iteration")[i];
    }
    if (zero_dynamic && st.hysteresis_left != c.at("hysteresis")[i].get<int>()) {
      return ::testing::AssertionFailure() << "hysteresis after update " << i << ": got " << st.hysteresis_left
                                           << ", DeepSpeed " << c.at("hysteresis")[i];
    }
    int64_t skipped = 0;
    for (size_t j = 0; j <= i; ++j) skipped += overflow[j].get<int>();
    if (s.skipped_steps() != skipped || st.skipped_steps != skipped) {
      return ::testing::AssertionFailure() << "skipped_steps after update " << i << ": " << s.skipped_steps();
    }
  }
  if (!raises_at.is_null()) return ::testing::AssertionFailure() << "sequence ended before the expected raise";
  return ::testing::AssertionSuccess();
}

TEST(LossScalerGolden, OverflowPatternsMatchDeepSpeed) {
  ASSERT_GE(golden().size(), 20u);
  for (const Json& c : golden()) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    LossScaler s(config_from_fp16(c.at("fp16")), c.at("zero_optimizer").get<bool>());
    EXPECT_EQ(s.scale(), c.at("initial_scale").get<double>());
    EXPECT_EQ(s.dynamic(), is_dynamic(c));
    EXPECT_TRUE(replay(s, c, 0));
  }
}

// Saving mid-sequence and restoring into a fresh scaler built from the same config continues exactly, including
// right before a window boundary and with hysteresis partly spent.
TEST(LossScalerGolden, StateRoundTripMidSequence) {
  for (const Json& c : golden()) {
    const size_t n = c.at("overflow").size();
    const Fp16Config cfg = config_from_fp16(c.at("fp16"));
    const bool zero = c.at("zero_optimizer").get<bool>();
    for (size_t cut : {size_t{1}, n / 3, n / 2, n - 1}) {
      if (cut == 0 || cut >= n) continue;
      SCOPED_TRACE(c.at("name").get<std::string>() + " cut at " + std::to_string(cut));
      LossScaler first(cfg, zero);
      for (size_t i = 0; i < cut; ++i) first.update(c.at("overflow")[i].get<int>() != 0);
      const LossScaler::State saved = first.state();
      EXPECT_EQ(saved.steps_since_overflow, saved.iteration - saved.last_overflow_iteration);
      LossScaler second(cfg, zero);
      second.load_state(saved);
      EXPECT_EQ(second.scale(), first.scale());
      EXPECT_TRUE(replay(second, c, cut));
    }
  }
}

TEST(LossScaler, ZeroPathStartsAtInitialScalePowerAsDeepSpeedDoesToday) {
  // No dynamic key in the config: DeepSpeed before PR #6976 started ZeRO at 2^32; today it is 2^16.
  const Config cfg = Config::from_string(R"({"train_batch_size": 1, "fp16": {"enabled": true},
                                             "zero_optimization": {"stage": 2}})");
  EXPECT_FALSE(cfg.fp16().dynamic_args_given);
  EXPECT_EQ(LossScaler(cfg.fp16(), /*zero_optimizer=*/true).scale(), 65536.0);
  EXPECT_EQ(LossScaler(cfg.fp16(), /*zero_optimizer=*/false).scale(), 65536.0);
  const Config powered = Config::from_string(R"({"train_batch_size": 1,
                                                 "fp16": {"enabled": true, "initial_scale_power": 12}})");
  EXPECT_EQ(LossScaler(powered.fp16(), true).scale(), 4096.0);
}

TEST(LossScaler, DisabledAndStaticScalesNeverMove) {
  LossScaler off(Fp16Config{}, true);
  EXPECT_FALSE(off.dynamic());
  EXPECT_EQ(off.scale(), 1.0);
  EXPECT_TRUE(off.update(true));  // a bf16/fp32 overflow still skips the step
  EXPECT_FALSE(off.update(false));
  EXPECT_EQ(off.scale(), 1.0);
  EXPECT_EQ(off.skipped_steps(), 1);

  Fp16Config fixed;
  fixed.enabled = true;
  fixed.loss_scale = 512;
  fixed.min_loss_scale = 1024;  // ignored by a static scale: no floor, no error
  LossScaler s(fixed, true);
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(s.update(true));
  EXPECT_EQ(s.scale(), 512.0);
}

void expect_config_error(const Fp16Config& cfg, bool zero, const std::string& key, const std::string& value) {
  try {
    LossScaler s(cfg, zero);
    ADD_FAILURE() << "no ConfigError for " << key << " = " << value;
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("fp16." + key + ": " + value), std::string::npos) << what;
    EXPECT_NE(what.find("allowed"), std::string::npos) << what;
  }
}

TEST(LossScaler, RejectsDynamicSettingsDeepSpeedCannotRunWith) {
  Fp16Config base;
  base.enabled = true;
  Fp16Config c = base;
  c.loss_scale_window = 0;
  expect_config_error(c, true, "loss_scale_window", "0");
  c = base;
  c.min_loss_scale = 0;
  expect_config_error(c, false, "min_loss_scale", "0");
  c = base;
  c.hysteresis = 0;
  expect_config_error(c, true, "hysteresis", "0");
  EXPECT_NO_THROW(LossScaler(c, /*zero_optimizer=*/false));  // the non-ZeRO optimizer has no hysteresis
  c = base;
  c.initial_scale_power = 2000;
  expect_config_error(c, true, "initial_scale_power", "2000");
  c = base;
  c.loss_scale = -1;
  expect_config_error(c, true, "loss_scale", "-1");
  // Static scaling ignores the dynamic settings, as DeepSpeed's validator does.
  c = base;
  c.loss_scale = 8;
  c.loss_scale_window = 0;
  c.hysteresis = 0;
  EXPECT_NO_THROW(LossScaler(c, true));
}

TEST(LossScaler, LoadStateRejectsImpossibleStates) {
  Fp16Config cfg;
  cfg.enabled = true;
  LossScaler s(cfg, true);
  const LossScaler::State good{.scale = 1024, .steps_since_overflow = 3, .iteration = 10,
                               .last_overflow_iteration = 7, .hysteresis_left = 1, .skipped_steps = 2};
  EXPECT_NO_THROW(s.load_state(good));
  EXPECT_EQ(s.scale(), 1024.0);
  auto expect_rejected = [&](LossScaler::State st, const std::string& what) {
    LossScaler fresh(cfg, true);
    EXPECT_THROW(fresh.load_state(st), std::invalid_argument) << what;
    EXPECT_EQ(fresh.scale(), 65536.0) << what;
  };
  LossScaler::State st = good;
  st.scale = 0;
  expect_rejected(st, "zero scale");
  st = good;
  st.steps_since_overflow = 4;
  expect_rejected(st, "inconsistent steps_since_overflow");
  st = good;
  st.last_overflow_iteration = 10;
  st.steps_since_overflow = 0;
  expect_rejected(st, "overflow in the future");
  st = good;
  st.hysteresis_left = 0;
  expect_rejected(st, "hysteresis spent below 1");
  st = good;
  st.skipped_steps = 11;
  expect_rejected(st, "more skips than steps");
}

}  // namespace
}  // namespace zerotrain::detail
