// The autotuner's search (src/autotune/) over a synthetic program: a runner that answers each experiment from a
// formula (throughput by stage, micro-batch and knobs; out of memory above a per-stage micro-batch) instead of
// launching it. The real runner is exercised end to end by tests/cli/test_autotune.py.
#include "autotune/autotuner.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "autotune/experiment.h"
#include "autotune/search_space.h"
#include "launch/error.h"
#include "zerotrain/config.h"

namespace zerotrain::detail {
namespace {

std::string temp_dir() {
  std::string tmpl = ::testing::TempDir() + "autotune_XXXXXX";
  char* made = ::mkdtemp(tmpl.data());
  EXPECT_NE(made, nullptr);
  return tmpl;
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Answers experiments from formulas. `fits(stage, mbs)` says whether a run fits in memory; `throughput(config)` is
// its samples/s.
class SyntheticRunner : public ExperimentRunner {
 public:
  std::string dir = temp_dir();
  std::function<bool(int, int64_t)> fits = [](int, int64_t) { return true; };
  std::function<double(const Json&)> throughput = [](const Json& c) {
    return 10.0 * c.at("train_micro_batch_size_per_gpu").get<double>();
  };
  std::function<double(const Json&)> latency;  // unset: a step of train_batch_size samples at `throughput`
  Json model_info = {{"num_params", 1000000}, {"activation_mem_per_gpu", 1 << 20}, {"device_memory_bytes", int64_t{1} << 34},
                     {"device", "cpu"}};
  std::vector<std::string> ran;
  std::vector<Json> configs;

  RunOutcome run(const std::string& name, const Json& config, const std::string& output_file) override {
    ran.push_back(name);
    configs.push_back(config);
    RunOutcome out;
    out.dir = result_dir(name);
    ::mkdir(out.dir.c_str(), 0755);
    const Json& at = config.at("autotuning");
    if (at.value("model_info", Json::object()).value("profile", false)) {
      write(output_file, model_info.dump());
      out.ok = true;
      return out;
    }
    const int stage = config.at("zero_optimization").at("stage").get<int>();
    const int64_t mbs = config.at("train_micro_batch_size_per_gpu").get<int64_t>();
    if (!fits(stage, mbs)) {
      out.error = "exit status 1: torch.OutOfMemoryError: CUDA out of memory";
      return out;
    }
    const double t = throughput(config);
    const double latency = this->latency ? this->latency(config) : 1000.0 * config.at("train_batch_size").get<double>() / t;
    write(output_file, Json({{"throughput", t}, {"latency", latency}, {"peak_memory_bytes", mbs << 20}}).dump());
    out.ok = true;
    return out;
  }
  std::vector<std::string> command_for(const std::string& config_path) const override {
    return {"zerotrain", "launch", "train.py", "--deepspeed", config_path};
  }
  std::string result_dir(const std::string& name) const override { return dir + "/" + name; }
};

Json parse(const std::string& text) { return Json::parse(text); }

TEST(Autotuner, ListedStagesAndMicroBatchSizesRunEachAndTheBestIsWritten) {
  SyntheticRunner runner;
  // Stage 1 is faster than stage 3 at the same micro-batch; larger micro-batches are faster.
  runner.throughput = [](const Json& c) {
    return c.at("train_micro_batch_size_per_gpu").get<double>() * (c.at("zero_optimization").at("stage") == 1 ? 10 : 7);
  };
  std::ostringstream log;
  Autotuner tuner(parse(R"({"train_micro_batch_size_per_gpu": [1, 2, 4], "gradient_accumulation_steps": 1,
      "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "zero_optimization": {"stage": [3, 1]},
      "autotuning": {"enabled": true}})"), "cfg.json", 2, runner, log);
  const auto best = tuner.tune();
  ASSERT_TRUE(best.has_value()) << log.str();
  EXPECT_EQ(best->name, "z1_gas1_tmbspg4");
  // The profiling run first, then stage 1 before stage 3; gradient accumulation keeps 4 samples a rank.
  const std::vector<std::string> expected{"profile_model_info", "z1_gas4_tmbspg1", "z1_gas2_tmbspg2",
                                          "z1_gas1_tmbspg4",    "z3_gas4_tmbspg1", "z3_gas2_tmbspg2",
                                          "z3_gas1_tmbspg4"};
  EXPECT_EQ(runner.ran, expected);
  const Json& sent = runner.configs[1];
  EXPECT_EQ(sent.at("train_batch_size"), 8);  // 1 x 4 x 2 ranks
  EXPECT_EQ(sent.at("autotuning").at("metric_path"), runner.dir + "/z1_gas4_tmbspg1/metrics.json");
  EXPECT_EQ(sent.at("autotuning").at("start_profile_step"), 3);
  EXPECT_EQ(sent.at("optimizer").at("type"), "AdamW");

  const std::string optimal = tuner.write_results(runner.dir);
  ASSERT_EQ(optimal, runner.dir + "/ds_config_optimal.json");
  const Json best_config = Json::parse(read(optimal));
  EXPECT_FALSE(best_config.contains("autotuning"));
  EXPECT_EQ(best_config.at("zero_optimization").at("stage"), 1);
  EXPECT_EQ(best_config.at("train_micro_batch_size_per_gpu"), 4);
  EXPECT_EQ(read(runner.dir + "/cmd_optimal.txt"), "zerotrain launch train.py --deepspeed " + optimal + "\n");
  const std::string summary = read(runner.dir + "/summary.txt");
  EXPECT_NE(summary.find("| global | 6 | 40 | z1_gas1_tmbspg4 |"), std::string::npos) << summary;
  EXPECT_NE(summary.find("| z3 | 3 | 28 | z3_gas1_tmbspg4 |"), std::string::npos) << summary;
}

TEST(Autotuner, SearchFindsTheLargestMicroBatchThatFitsAndTunesBelowIt) {
  SyntheticRunner runner;
  runner.fits = [](int, int64_t mbs) { return mbs <= 36; };
  std::ostringstream log;
  Autotuner tuner(parse(R"({"optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "zero_optimization": {"stage": 2},
      "autotuning": {"max_train_micro_batch_size_per_gpu": 64}})"), "cfg.json", 1, runner, log);
  const auto best = tuner.tune();
  ASSERT_TRUE(best.has_value()) << log.str();
  EXPECT_EQ(best->micro_batch, 36) << log.str();
  // The memory estimate allows 64: 64 (1.05x capped), then 60 (0.95x) fail; the binary search climbs to 36.
  EXPECT_NE(std::find(runner.ran.begin(), runner.ran.end(), "z2_gas1_tmbspg64"), runner.ran.end());
  EXPECT_NE(std::find(runner.ran.begin(), runner.ran.end(), "z2_gas1_tmbspg60"), runner.ran.end());
  int failures = 0;
  for (const auto& r : tuner.records()) {
    if (!r.metric) {
      ++failures;
      EXPECT_GT(r.micro_batch, 36);
      EXPECT_NE(r.error.find("out of memory"), std::string::npos);
    }
  }
  EXPECT_GE(failures, 2);
  // Then sizes from half the largest up that divide its batch (18 and 36; 19-35 would train another batch), all at
  // the largest's global batch.
  bool tuned_half = false;
  for (const auto& r : tuner.records()) {
    if (r.micro_batch == 18 && r.gas == 2) tuned_half = true;
    if (r.at_target) EXPECT_EQ(r.config.at("train_batch_size"), 36) << r.name;
    if (r.micro_batch > 18 && r.micro_batch < 36) EXPECT_FALSE(r.at_target) << r.name;  // only the search's runs
  }
  EXPECT_TRUE(tuned_half) << log.str();
}

TEST(Autotuner, MemoryEstimateSkipsAStageThatCannotHoldTheModel) {
  SyntheticRunner runner;
  // 1e9 parameters: stage 0's 16 bytes each do not fit in 8 GiB; stage 3 over 8 ranks does.
  runner.model_info = {{"num_params", 1000000000}, {"activation_mem_per_gpu", 1 << 26},
                       {"device_memory_bytes", int64_t{8} << 30}};
  std::ostringstream log;
  Autotuner tuner(parse(R"({"train_micro_batch_size_per_gpu": [1], "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
      "zero_optimization": {"stage": [0, 3]}})"), "cfg.json", 8, runner, log);
  const auto best = tuner.tune();
  ASSERT_TRUE(best.has_value()) << log.str();
  EXPECT_EQ(best->stage, 3);
  for (const auto& name : runner.ran) EXPECT_NE(name.rfind("z0", 0), 0u) << name;
  EXPECT_NE(log.str().find("stage 0: not run"), std::string::npos) << log.str();
}

TEST(Autotuner, UnlistedStagesStopWhenAStageIsNoBetterThanTheOneBelow) {
  for (const std::string zero : {"", R"(, "zero_optimization": {"stage": "all"})"}) {
    SyntheticRunner runner;
    runner.throughput = [](const Json& c) { return 100.0 - 10.0 * c.at("zero_optimization").at("stage").get<int>(); };
    std::ostringstream log;
    Autotuner tuner(parse(R"({"train_micro_batch_size_per_gpu": [2], "optimizer": {"type": "SGD", "params": {"lr": 0.1}})" +
                          zero + "}"),
                    "cfg.json", 2, runner, log);
    const auto best = tuner.tune();
    ASSERT_TRUE(best.has_value());
    EXPECT_EQ(best->stage, 0);
    EXPECT_EQ(runner.ran, (std::vector<std::string>{"profile_model_info", "z0_gas1_tmbspg2", "z1_gas1_tmbspg2"})) << zero;
  }
}

TEST(Autotuner, LatencyComparesOnlyStepsOfTheTargetBatch) {
  SyntheticRunner runner;
  // Throughput saturates with the micro-batch: a step of one sample is the shortest, but it trains 1/8 of the batch.
  runner.throughput = [](const Json& c) {
    const double m = c.at("train_micro_batch_size_per_gpu").get<double>();
    return 10.0 * m / (1.0 + 0.1 * m);
  };
  std::ostringstream log;
  Autotuner tuner(parse(R"({"optimizer": {"type": "SGD", "params": {"lr": 0.1}}, "zero_optimization": {"stage": 1},
      "autotuning": {"metric": "latency", "max_train_micro_batch_size_per_gpu": 8}})"), "cfg.json", 1, runner, log);
  const auto best = tuner.tune();
  ASSERT_TRUE(best.has_value()) << log.str();
  // The search ran micro-batch 1 (110 ms a step of 1 sample); the ranked runs train 8 samples: 4 x 2 (280 ms) and
  // 8 x 1 (180 ms).
  EXPECT_EQ(best->name, "z1_gas1_tmbspg8") << log.str();
  EXPECT_EQ(best->config.at("train_batch_size"), 8);
  tuner.write_results(runner.dir);
  EXPECT_NE(read(runner.dir + "/summary.txt").find("| global | 3 | 180 | z1_gas1_tmbspg8 |"), std::string::npos)
      << read(runner.dir + "/summary.txt");
}

TEST(Autotuner, TheFlopsMetricWithoutAFlopCountEndsTheSearchAtTheFirstExperiment) {
  SyntheticRunner runner;  // writes throughput and latency only, as a program without FLOPs per sample
  std::ostringstream log;
  Autotuner tuner(parse(R"({"train_micro_batch_size_per_gpu": [1, 2], "optimizer": {"type": "SGD", "params": {"lr": 0.1}},
      "zero_optimization": {"stage": [1, 2]}, "autotuning": {"metric": "FLOPS"}})"), "cfg.json", 1, runner, log);
  try {
    tuner.tune();
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("autotuning.metric \"flops\": experiment z1_gas2_tmbspg1 reported no FLOPS_per_gpu"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(runner.ran.size(), 2u);  // the profiling run and one experiment
}

TEST(Autotuner, LatencyRanksTheShortestStepFirst) {
  SyntheticRunner runner;
  runner.latency = [](const Json& c) { return 100.0 + c.at("train_micro_batch_size_per_gpu").get<double>(); };
  std::ostringstream log;
  // Throughput prefers micro-batch 4; the latency metric (lower is better) micro-batch 1.
  Autotuner tuner(parse(R"({"train_micro_batch_size_per_gpu": [1, 2, 4], "gradient_accumulation_steps": 1,
      "optimizer": {"type": "SGD", "params": {"lr": 0.1}}, "zero_optimization": {"stage": 1},
      "autotuning": {"metric": "LATENCY", "max_train_batch_size": 4}})"), "cfg.json", 1, runner, log);
  const auto best = tuner.tune();
  ASSERT_TRUE(best.has_value());
  EXPECT_EQ(best->name, "z1_gas4_tmbspg1");  // max_train_batch_size 4 on one rank: 4 micro-steps of 1
  EXPECT_DOUBLE_EQ(*best->metric, 101.0);
}

TEST(Autotuner, FullModeTunesZeroKnobsAndStopsEarly) {
  SyntheticRunner runner;
  // Only reduce_bucket_size matters: 5e8 is best.
  runner.throughput = [](const Json& c) {
    const double rbs = c.at("zero_optimization").value("reduce_bucket_size", 5e8);
    return 100.0 - std::abs(std::log10(rbs) - std::log10(5e8));
  };
  std::ostringstream log;
  Autotuner tuner(parse(R"({"train_micro_batch_size_per_gpu": [4], "optimizer": {"type": "SGD", "params": {"lr": 0.1}},
      "zero_optimization": {"stage": 2, "reduce_bucket_size": [1e7, 5e8, 2e9], "overlap_comm": [true, false],
                            "allgather_bucket_size": 5e8},
      "autotuning": {"fast": false, "tuner_early_stopping": 2}})"), "cfg.json", 2, runner, log);
  const auto best = tuner.tune();
  ASSERT_TRUE(best.has_value()) << log.str();
  EXPECT_EQ(best->config.at("zero_optimization").at("reduce_bucket_size"), 5e8);
  // Knobs: overlap_comm (2 values) x reduce_bucket_size (the config's 3); allgather_bucket_size fixed by the config.
  // Grid order: oc true with 1e7 (no gain over the micro-batch run, which used the first values), 5e8 (better),
  // 2e9, then oc false with 1e7: two without a gain after the best end the search.
  std::vector<std::string> knob_runs;
  for (const auto& n : runner.ran) {
    if (n.find("_oc") != std::string::npos) knob_runs.push_back(n);
  }
  EXPECT_EQ(knob_runs, (std::vector<std::string>{"z2_octrue_rbs1e7_gas1_tmbspg4", "z2_octrue_rbs5e8_gas1_tmbspg4",
                                                 "z2_octrue_rbs2e9_gas1_tmbspg4", "z2_ocfalse_rbs1e7_gas1_tmbspg4"}))
      << log.str();
  for (const auto& c : runner.configs) {
    if (c.contains("zero_optimization") && c.at("zero_optimization").contains("allgather_bucket_size")) {
      EXPECT_EQ(c.at("zero_optimization").at("allgather_bucket_size"), 5e8);
    }
  }
}

TEST(Autotuner, ModelBasedTunerFindsTheBestInFewerTrialsThanTheGrid) {
  auto landscape = [](const Json& c) {
    const auto& z = c.at("zero_optimization");
    const double rbs = std::log10(z.value("reduce_bucket_size", 5e8));
    const double pbs = std::log10(z.value("stage3_prefetch_bucket_size", 5e7));
    return 100.0 + 3.0 * rbs + 2.0 * pbs;  // largest buckets best
  };
  const std::string cfg = R"({"train_micro_batch_size_per_gpu": [2], "optimizer": {"type": "SGD", "params": {"lr": 0.1}},
      "zero_optimization": {"stage": 3, "reduce_bucket_size": [1e6, 1e7, 1e8, 1e9],
                            "stage3_prefetch_bucket_size": [1e6, 1e7, 1e8, 1e9], "overlap_comm": true},
      "autotuning": {"fast": false, "tuner_type": "model_based", "tuner_early_stopping": 3}})";
  SyntheticRunner runner;
  runner.throughput = landscape;
  std::ostringstream log;
  Autotuner tuner(parse(cfg), "cfg.json", 2, runner, log);
  const auto best = tuner.tune();
  ASSERT_TRUE(best.has_value()) << log.str();
  EXPECT_EQ(best->config.at("zero_optimization").at("reduce_bucket_size"), 1e9) << log.str();
  EXPECT_EQ(best->config.at("zero_optimization").at("stage3_prefetch_bucket_size"), 1e9) << log.str();
  // 16 combinations; the fitted model reaches the corner well before the grid would (which runs it last).
  EXPECT_LT(runner.ran.size(), 2u + 12u) << log.str();
}

TEST(Autotuner, AFailedProfilingRunEndsTheSearchWithItsReason) {
  class FailingRunner : public SyntheticRunner {
    RunOutcome run(const std::string& name, const Json&, const std::string&) override {
      RunOutcome o;
      o.dir = result_dir(name);
      o.error = "exit status 1: ModuleNotFoundError: No module named 'transformers'";
      return o;
    }
  } runner;
  std::ostringstream log;
  Autotuner tuner(parse(R"({"optimizer": {"type": "SGD", "params": {"lr": 0.1}}})"), "cfg.json", 1, runner, log);
  EXPECT_FALSE(tuner.tune().has_value());
  EXPECT_NE(log.str().find("profiling run (ZeRO stage 3, micro-batch 1) failed: exit status 1: ModuleNotFoundError"),
            std::string::npos)
      << log.str();
  EXPECT_EQ(tuner.write_results(runner.dir), "");
}

TEST(Autotuner, ConfigErrorsOfAnExperimentAreRecordedWithoutRunningIt) {
  SyntheticRunner runner;
  std::ostringstream log;
  // Offload at stage 0 is a config error: that experiment is recorded as failed and not started.
  Autotuner tuner(parse(R"({"train_micro_batch_size_per_gpu": [1], "optimizer": {"type": "SGD", "params": {"lr": 0.1}},
      "zero_optimization": {"stage": [0, 2], "offload_optimizer": {"device": "cpu"}}})"), "cfg.json", 1, runner, log);
  const auto best = tuner.tune();
  ASSERT_TRUE(best.has_value()) << log.str();
  EXPECT_EQ(best->stage, 2);
  EXPECT_EQ(std::count(runner.ran.begin(), runner.ran.end(), "z0_gas1_tmbspg1"), 0);
  EXPECT_NE(log.str().find("z0_gas1_tmbspg1: failed: config error"), std::string::npos) << log.str();
}

TEST(Autotuner, BadSearchSettingsAreErrorsNamingTheKey) {
  SyntheticRunner runner;
  std::ostringstream log;
  auto error_of = [&](const std::string& cfg) -> std::string {
    try {
      Autotuner(parse(cfg), "cfg.json", 1, runner, log);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of(R"({"zero_optimization": {"stage": [1, 5]}})").find("zero_optimization.stage: 5"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"gradient_accumulation_steps": [1, 2]})").find("gradient_accumulation_steps: [1,2]"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"train_micro_batch_size_per_gpu": [0, 2]})").find("train_micro_batch_size_per_gpu: 0"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"autotuning": {"mp_size": 2}})").find("autotuning.mp_size: 2"), std::string::npos);
  EXPECT_EQ(error_of(R"({"autotuning": {"tuner_type": "bayes"}})"), "");  // DeepSpeed falls back to gridsearch too
  EXPECT_NE(error_of(R"({"autotuning": {"start_profile_step": 6, "end_profile_step": 4}})").find(
                "autotuning.end_profile_step"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"autotuning": {"metric": "speed"}})").find("autotuning.metric"), std::string::npos);
}

TEST(AutotuneArguments, TheConfigArgumentIsFoundAndReplaced) {
  const ProgramArgs a = find_config_argument({"--model_name_or_path", "gpt2", "--deepspeed", "ds.json", "--fp16"});
  EXPECT_EQ(a.config_index, 3u);
  EXPECT_EQ(experiment_arguments(a, "/r/x.json", Json::object(), {})[3], "/r/x.json");
  const ProgramArgs joined = find_config_argument({"--config=ds.json"});
  EXPECT_EQ(experiment_arguments(joined, "/r/x.json", Json::object(), {})[0], "--config=/r/x.json");
  EXPECT_THROW(find_config_argument({"--lr", "3"}), LaunchError);
}

TEST(AutotuneArguments, ArgMappingsReplaceOrAppendTheScriptsArguments) {
  const ProgramArgs a = find_config_argument({"--deepspeed", "ds.json", "--per_device_train_batch_size", "8"});
  const Json config = {{"train_micro_batch_size_per_gpu", 16}, {"gradient_accumulation_steps", 2}};
  const auto args = experiment_arguments(a, "/r/x.json", config,
                                         {{"train_micro_batch_size_per_gpu", "--per_device_train_batch_size"},
                                          {"gradient_accumulation_steps", "--gradient_accumulation_steps"}});
  EXPECT_EQ(args, (std::vector<std::string>{"--deepspeed", "/r/x.json", "--per_device_train_batch_size", "16",
                                            "--gradient_accumulation_steps", "2"}));
}

TEST(AutotuneSearchSpace, ListsBecomeKnobsAndTheBaseTakesTheFirstValues) {
  const UserSpace s = read_user_space(parse(R"({"train_micro_batch_size_per_gpu": [4, 1, 4],
      "zero_optimization": {"stage": "all", "reduce_bucket_size": [5e7, 5e8], "overlap_comm": true},
      "optimizer": {"type": "Adam", "params": {"betas": [0.9, 0.95]}}})"), "cfg.json");
  EXPECT_EQ(s.stages, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(*s.micro_batch_sizes, (std::vector<int64_t>{1, 4}));
  ASSERT_EQ(s.zero_knobs.size(), 1u);
  EXPECT_EQ(s.zero_knobs[0].key, "zero_optimization.reduce_bucket_size");
  EXPECT_EQ(s.base.at("zero_optimization").at("reduce_bucket_size"), 5e7);
  EXPECT_EQ(s.base.at("optimizer").at("params").at("betas").size(), 2u);  // a list DeepSpeed takes as a list
  EXPECT_EQ(value_name(Json(500000000)), "5e8");
  EXPECT_EQ(value_name(Json(5e7)), "5e7");
  EXPECT_EQ(key_abbreviation("zero_optimization.stage3_prefetch_bucket_size"), "spbs");
  EXPECT_EQ(value_name(Json::parse(R"({"device": "nvme", "nvme_path": "/nvme"})")), "--device---nvme---nvme_path----nvme--");
  EXPECT_EQ(value_name(Json("a/b c")), "a-b-c");
}

}  // namespace
}  // namespace zerotrain::detail

namespace zerotrain::detail {
namespace {

TEST(AutotuneSettings, TheDocumentedStepNamesAndUnknownTunersReadAsDeepSpeedMeansThem) {
  // DeepSpeed's AUTOTUNING_FORMAT and the seed's example write start_step / end_step; its code reads
  // start_profile_step / end_profile_step, and falls back to gridsearch for a tuner it does not know.
  const AutotuningConfig at = autotuning_settings(
      Json::parse(R"({"autotuning": {"enabled": true, "start_step": 2, "end_step": 7, "tuner_type": "xgboost",
                     "model_info": {"max_seq_length": 1024, "hidden_width": 768}}})"),
      "cfg.json");
  EXPECT_EQ(at.start_profile_step, 2);
  EXPECT_EQ(at.end_profile_step, 7);
  EXPECT_EQ(at.tuner_type, "gridsearch");
  const Config c = Config::from_string(R"({"train_batch_size": 1, "autotuning": {"start_step": 2, "tuner_type": "x"}})");
  std::string warnings;
  for (const auto& w : c.warnings()) warnings += w + "\n";
  EXPECT_NE(warnings.find("autotuning.start_step"), std::string::npos) << warnings;
  EXPECT_NE(warnings.find("autotuning.tuner_type"), std::string::npos) << warnings;
}

}  // namespace
}  // namespace zerotrain::detail
