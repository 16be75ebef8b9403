// The autotuner: DeepSpeed's `--autotuning tune|run`, from zerotrain's launcher.
//
// [Note: autotuning]
// `zerotrain launch --autotuning tune [FLAGS] PROGRAM ARGS` runs PROGRAM (launched with FLAGS, as without
// --autotuning) once per candidate config, one experiment at a time, and ranks them by autotuning.metric:
//  1. A profiling run (stage 3, micro-batch 1) reports the parameter count, the activation memory of one sample and
//     the memory a rank has (src/engine/autotuning_probe.h); autotuning.model_info.num_params skips it.
//  2. For each ZeRO stage asked for (zero_optimization.stage: a number, a list, or "all"/absent = 0-3), ascending:
//     the model states' memory (zerotrain's estimator) plus one sample's activations must fit, else the stage is
//     skipped; so is a stage whose memory allows a smaller micro-batch than a lower stage already ran. Then the
//     micro-batch sizes: the config's list, or DeepSpeed's search (the smallest that runs, then the largest that runs
//     near the memory estimate, a binary search down to it that stops when the metric plateaus, then
//     num_tuning_micro_batch_sizes sizes up to it). Gradient accumulation keeps the global batch of the largest.
//  3. With autotuning.fast false, other zero_optimization knobs (search_space.h's stage_knobs, or the config's
//     lists) over those micro-batch sizes, in gridsearch, random or model_based order, ending after
//     tuner_num_trials experiments or tuner_early_stopping ones without a better metric.
//  4. With the stages not given, a stage no better than the one below ends the exploration (DeepSpeed's README).
// Results (DeepSpeed's layout): results_dir/summary.txt, ds_config_optimal.json (the best config, without its
// autotuning section), cmd_optimal.txt; each experiment's files (experiment.h). `run` then trains with the best.
// An experiment that fails (out of memory, a config error) scores nothing and is listed with its reason.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "autotune/experiment.h"
#include "autotune/search_space.h"
#include "zerotrain/config.h"

namespace zerotrain::detail {

// One finished experiment.
struct Record {
  std::string space;                // "z2" (micro-batch sizes), "z2_oc_rbs_agbs" (other knobs)
  std::string name;                 // "z2_gas1_tmbspg4"
  Json config;                      // what it ran, without the autotuning section
  int stage = 0;
  int64_t micro_batch = 0;
  int64_t gas = 1;
  std::optional<double> metric;     // the ranking metric; unset when it failed
  bool at_target = false;           // trained the stage's target global batch (latency ranks only these)
  Json metrics;                     // everything the experiment reported
  std::string error;                // why it failed
};

// Model facts the search starts from.
struct ModelInfo {
  int64_t num_params = 0;
  int64_t activation_bytes = 0;     // one sample's activations at stage 3 (0: unknown)
  int64_t device_memory_bytes = 0;  // what one rank may use (0: unknown)
};

// The autotuning section of a user config (lists elsewhere allowed), validated by the config reader: a ConfigError
// names a bad key; autotuning.mp_size other than 1 is one (zerotrain has no model parallelism).
AutotuningConfig autotuning_settings(const Json& user_config, const std::string& source);

class Autotuner {
 public:
  // `user_config`: the user's config (lists allowed). `world_size`: ranks of one experiment. Throws ConfigError for
  // an autotuning section or search space that cannot be used.
  Autotuner(const Json& user_config, const std::string& source, int world_size, ExperimentRunner& runner,
            std::ostream& log);

  // Runs the search. Returns the best record, or nullopt when no experiment produced a metric.
  std::optional<Record> tune();
  // Writes summary.txt, ds_config_optimal.json and cmd_optimal.txt into results_dir (the last two only with a best
  // record) and prints the summary. Returns the optimal config's path ("" without one).
  std::string write_results(const std::string& results_dir);

  const std::deque<Record>& records() const { return records_; }
  const AutotuningConfig& settings() const { return at_; }
  const std::optional<ModelInfo>& model_info() const { return model_; }

 private:
  bool better(double a, double b) const;  // a ranks above b
  std::optional<ModelInfo> profile_model();
  Record& run(const std::string& space, int stage, int64_t micro_batch, int64_t gas,
              const std::vector<std::pair<std::string, Json>>& knobs = {});
  // Whether a record takes part in the ranking: it has a metric, and under latency it trained the target batch (a
  // step's latency grows with its batch: only steps of one size compare).
  bool ranked(const Record& r) const;
  // Samples a rank trains per optimizer step in the ranked experiments of a stage whose largest micro-batch is hi:
  // max_train_batch_size over the ranks, else hi x the config's accumulation (under latency: the first stage's, so
  // that stages compare).
  int64_t target_batch_per_rank(int64_t hi);
  const Record* best_of(const std::string& space) const;
  const Record* best_overall() const;
  int64_t instantiation_bytes(int stage) const;
  // Tunes the micro-batch sizes of a stage; returns the sizes to carry into the knob search (empty: none ran) and
  // sets max_mbs to the largest that ran.
  std::vector<int64_t> tune_micro_batches(int stage, int64_t calculated_max, int64_t& max_mbs, int64_t& tbs_per_rank);
  std::pair<int64_t, int64_t> min_max_micro_batch(int stage, int64_t calculated_max);
  void tune_knobs(int stage, const std::vector<int64_t>& micro_batches, int64_t tbs_per_rank);
  int64_t max_micro_batch_limit() const;
  int64_t gas_for(int64_t tbs_per_rank, int64_t micro_batch) const;

  Json user_;
  std::string source_;
  UserSpace space_;
  AutotuningConfig at_;
  int world_size_;
  ExperimentRunner& runner_;
  std::ostream& log_;
  std::optional<ModelInfo> model_;
  std::deque<Record> records_;  // a deque: references to records stay valid as more are added
  std::chrono::steady_clock::time_point start_;
  std::optional<int64_t> latency_batch_per_rank_;
};

}  // namespace zerotrain::detail
