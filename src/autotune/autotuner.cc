#include "autotune/autotuner.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <random>

#include "config/config_data.h"
#include "config/validate.h"
#include "launch/shell.h"
#include "launch/text_file.h"
#include "zerotrain/estimate.h"

namespace zerotrain::detail {
namespace {

std::string metric_key(const std::string& metric) {
  if (metric == "flops") return "FLOPS_per_gpu";
  return metric;  // "throughput", "latency"
}

std::string metric_unit(const std::string& metric) {
  if (metric == "latency") return "ms a step";
  if (metric == "flops") return "FLOP/s per rank";
  return "samples/s";
}

std::optional<int64_t> integer_at(const Json& config, const std::string& dotted) {
  const Json* v = find_path(config, dotted);
  return v == nullptr ? std::nullopt : as_integer(*v);
}

std::string text_at(const Json& config, const std::string& dotted) {
  const Json* v = find_path(config, dotted);
  return v != nullptr && v->is_string() ? v->get<std::string>() : "";
}

// Solves (A + lambda I) w = b in place (Gaussian elimination with partial pivoting); A is n x n, row-major.
std::vector<double> ridge_solve(std::vector<double> a, std::vector<double> b, size_t n, double lambda) {
  for (size_t i = 0; i < n; ++i) a[i * n + i] += lambda;
  for (size_t col = 0; col < n; ++col) {
    size_t pivot = col;
    for (size_t r = col + 1; r < n; ++r) {
      if (std::abs(a[r * n + col]) > std::abs(a[pivot * n + col])) pivot = r;
    }
    if (std::abs(a[pivot * n + col]) < 1e-12) continue;
    if (pivot != col) {
      for (size_t c = 0; c < n; ++c) std::swap(a[col * n + c], a[pivot * n + c]);
      std::swap(b[col], b[pivot]);
    }
    for (size_t r = 0; r < n; ++r) {
      if (r == col) continue;
      const double f = a[r * n + col] / a[col * n + col];
      if (f == 0) continue;
      for (size_t c = col; c < n; ++c) a[r * n + c] -= f * a[col * n + c];
      b[r] -= f * b[col];
    }
  }
  std::vector<double> w(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    if (std::abs(a[i * n + i]) >= 1e-12) w[i] = b[i] / a[i * n + i];
  }
  return w;
}

std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(seconds);
  return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
}

}  // namespace

AutotuningConfig autotuning_settings(const Json& user_config, const std::string& source) {
  Json section = {{"train_micro_batch_size_per_gpu", 1}};
  if (user_config.is_object() && user_config.contains("autotuning")) section["autotuning"] = user_config.at("autotuning");
  AutotuningConfig at = Config::from_string(section.dump(), RunInfo{}, source).autotuning();
  if (at.mp_size != 1) {
    throw ConfigError({fmt::format("{}: autotuning.mp_size: {}: zerotrain has no model parallelism; allowed: 1",
                                   source, at.mp_size)});
  }
  return at;
}

Autotuner::Autotuner(const Json& user_config, const std::string& source, int world_size, ExperimentRunner& runner,
                     std::ostream& log)
    : user_(user_config), source_(source), world_size_(world_size), runner_(runner), log_(log) {
  space_ = read_user_space(user_config, source);
  at_ = autotuning_settings(user_config, source);
  space_.base.erase("autotuning");
}

bool Autotuner::better(double a, double b) const { return at_.metric == "latency" ? a < b : a > b; }

int64_t Autotuner::gas_for(int64_t tbs_per_rank, int64_t micro_batch) const {
  return std::max<int64_t>(1, tbs_per_rank / micro_batch);
}

int64_t Autotuner::max_micro_batch_limit() const {
  int64_t limit = at_.max_train_micro_batch_size_per_gpu;
  if (at_.max_train_batch_size) limit = std::min(limit, std::max<int64_t>(1, *at_.max_train_batch_size / world_size_));
  return limit;
}

bool Autotuner::ranked(const Record& r) const { return r.metric && (at_.metric != "latency" || r.at_target); }

int64_t Autotuner::target_batch_per_rank(int64_t hi) {
  if (at_.max_train_batch_size) return std::max<int64_t>(1, *at_.max_train_batch_size / world_size_);
  if (at_.metric == "latency") {
    if (!latency_batch_per_rank_) latency_batch_per_rank_ = hi * space_.gradient_accumulation_steps;
    return *latency_batch_per_rank_;
  }
  return hi * space_.gradient_accumulation_steps;
}

Record& Autotuner::run(const std::string& space, int stage, int64_t micro_batch, int64_t gas,
                       const std::vector<std::pair<std::string, Json>>& knobs) {
  std::string name = fmt::format("z{}_", stage);
  for (const auto& [key, value] : knobs) name += key_abbreviation(key) + value_name(value) + "_";
  name += fmt::format("gas{}_tmbspg{}", gas, micro_batch);
  for (auto& r : records_) {
    if (r.name == name) return r;
  }
  Record rec;
  rec.space = space;
  rec.name = name;
  rec.stage = stage;
  rec.micro_batch = micro_batch;
  rec.gas = gas;
  rec.config = space_.base;
  set_path(rec.config, "zero_optimization.stage", Json(stage));
  rec.config["train_micro_batch_size_per_gpu"] = micro_batch;
  rec.config["gradient_accumulation_steps"] = gas;
  rec.config["train_batch_size"] = micro_batch * gas * world_size_;
  for (const auto& [key, value] : knobs) set_path(rec.config, key, value);

  const std::string metric_path = runner_.result_dir(name) + "/metrics.json";
  Json full = rec.config;
  full["autotuning"] = {{"enabled", true},
                        {"metric", at_.metric},
                        {"start_profile_step", at_.start_profile_step},
                        {"end_profile_step", at_.end_profile_step},
                        {"metric_path", metric_path}};
  try {
    RunInfo run_info;
    run_info.world_size = world_size_;
    (void)Config::from_string(full.dump(), run_info, name);
  } catch (const ConfigError& e) {
    rec.error = std::string("config error: ") + e.what();
  }
  bool reused = false;
  if (rec.error.empty()) {
    const RunOutcome outcome = runner_.run(name, full, metric_path);
    reused = outcome.reused;
    if (!outcome.ok) {
      rec.error = outcome.error;
    } else if (const auto text = read_text_file(metric_path, "autotuning: metrics")) {
      try {
        rec.metrics = Json::parse(*text);
        const std::string key = metric_key(at_.metric);
        if (rec.metrics.contains(key) && rec.metrics.at(key).is_number()) {
          rec.metric = rec.metrics.at(key).get<double>();
        } else if (at_.metric == "flops") {
          // Every experiment of this program would end the same way: stop now.
          throw ConfigError({fmt::format(
              "{}: autotuning.metric \"flops\": experiment {} reported no FLOPS_per_gpu: the program does not give "
              "the engine its FLOPs per sample (EngineOptions::flops_per_sample; `zerotrain train` does); allowed "
              "for it: \"throughput\" or \"latency\"",
              source_, name)});
        } else {
          rec.error = fmt::format("{} has no \"{}\"", metric_path, key);
        }
      } catch (const Json::exception& e) {
        rec.error = fmt::format("{}: not JSON: {}", metric_path, e.what());
      }
    } else {
      rec.error = "no " + metric_path;
    }
  }
  if (rec.metric) {
    std::string mem;
    if (rec.metrics.contains("peak_memory_bytes") && rec.metrics.at("peak_memory_bytes").is_number()) {
      mem = fmt::format(", peak memory {:.2f} GiB", rec.metrics.at("peak_memory_bytes").get<double>() / 1073741824.0);
    }
    log_ << fmt::format("autotuning: {}: {} {:.6g} {}{}{}\n", name, at_.metric, *rec.metric, metric_unit(at_.metric), mem,
                        reused ? " (reused: autotuning.overwrite is false)" : "");
  } else {
    log_ << fmt::format("autotuning: {}: failed: {}\n", name, rec.error);
  }
  log_.flush();
  records_.push_back(std::move(rec));
  return records_.back();
}

const Record* Autotuner::best_of(const std::string& space) const {
  const Record* best = nullptr;
  for (const auto& r : records_) {
    if (r.space != space || !ranked(r)) continue;
    if (best == nullptr || better(*r.metric, *best->metric)) best = &r;
  }
  return best;
}

const Record* Autotuner::best_overall() const {
  const Record* best = nullptr;
  for (const auto& r : records_) {
    if (!ranked(r)) continue;
    if (best == nullptr || better(*r.metric, *best->metric)) best = &r;
  }
  return best;
}

std::optional<ModelInfo> Autotuner::profile_model() {
  if (at_.num_params) {
    log_ << fmt::format("autotuning: model_info.num_params {} given: no profiling run (memory limits unknown)\n",
                        *at_.num_params);
    return ModelInfo{*at_.num_params, 0, 0};
  }
  const std::string name = "profile_model_info";
  const std::string info_path = runner_.result_dir(name) + "/model_info.json";
  Json full = space_.base;
  set_path(full, "zero_optimization.stage", Json(3));
  full["train_micro_batch_size_per_gpu"] = 1;
  full["gradient_accumulation_steps"] = 1;
  full["train_batch_size"] = world_size_;
  full["autotuning"] = {{"enabled", true}, {"model_info", {{"profile", true}}}, {"model_info_path", info_path}};
  const RunOutcome outcome = runner_.run(name, full, info_path);
  if (!outcome.ok) {
    log_ << fmt::format("autotuning: the profiling run (ZeRO stage 3, micro-batch 1) failed: {} (see {}/stderr.log)\n",
                        outcome.error, outcome.dir);
    return std::nullopt;
  }
  const auto text = read_text_file(info_path, "autotuning: model info");
  try {
    const Json info = Json::parse(text.value_or(""));
    ModelInfo m;
    m.num_params = info.value("num_params", int64_t{0});
    m.activation_bytes = info.value("activation_mem_per_gpu", int64_t{0});
    m.device_memory_bytes = info.value("device_memory_bytes", int64_t{0});
    log_ << fmt::format("autotuning: the model has {} parameters; one sample's activations take {:.3f} GiB; a rank "
                        "has {:.2f} GiB ({})\n",
                        m.num_params, m.activation_bytes / 1073741824.0, m.device_memory_bytes / 1073741824.0,
                        info.value("device", std::string("?")));
    return m;
  } catch (const Json::exception& e) {
    log_ << fmt::format("autotuning: {} is not the model info the engine writes: {}\n", info_path, e.what());
    return std::nullopt;
  }
}

int64_t Autotuner::instantiation_bytes(int stage) const {
  if (!model_ || model_->num_params <= 0) return 0;
  EstimateInput in;
  in.num_params = model_->num_params;
  in.gpus_per_node = world_size_;
  in.gpu_memory_gb = model_->device_memory_bytes > 0 ? model_->device_memory_bytes / 1e9 : 80.0;
  if (auto v = integer_at(space_.base, "zero_optimization.reduce_bucket_size")) in.reduce_bucket_size = *v;
  if (auto v = integer_at(space_.base, "zero_optimization.allgather_bucket_size")) in.allgather_bucket_size = *v;
  if (auto v = integer_at(space_.base, "zero_optimization.stage3_prefetch_bucket_size")) in.prefetch_bucket_size = *v;
  const std::string opt = text_at(space_.base, "zero_optimization.offload_optimizer.device");
  const std::string par = text_at(space_.base, "zero_optimization.offload_param.device");
  OffloadKind kind = OffloadKind::kNone;
  if (opt == "cpu") kind = stage == 3 && par == "cpu" ? OffloadKind::kOptimizerAndParamCpu : OffloadKind::kOptimizerCpu;
  if (opt == "nvme") kind = stage == 3 && par == "nvme" ? OffloadKind::kOptimizerAndParamNvme : OffloadKind::kOptimizerNvme;
  try {
    const Estimate est = estimate_memory(in);
    const StageEstimate* pick = nullptr;
    for (const auto& s : est.stages) {
      if (s.stage != stage) continue;
      if (s.offload == kind) pick = &s;
      if (pick == nullptr && s.offload == OffloadKind::kNone) pick = &s;
    }
    return pick == nullptr ? 0 : pick->model_states_gpu_bytes + pick->buffers_gpu_bytes;
  } catch (const std::exception&) {
    return 0;
  }
}

std::pair<int64_t, int64_t> Autotuner::min_max_micro_batch(int stage, int64_t calculated_max) {
  const std::string space = fmt::format("z{}", stage);
  const int64_t gas = space_.gradient_accumulation_steps;
  int64_t lo = space_.micro_batch.value_or(at_.min_train_micro_batch_size_per_gpu);
  const Record* r = &run(space, stage, lo, gas);
  if (!r->metric) {
    if (lo == at_.min_train_micro_batch_size_per_gpu) return {-1, -1};
    lo = at_.min_train_micro_batch_size_per_gpu;
    r = &run(space, stage, lo, gas);
    if (!r->metric) return {-1, -1};
  }
  const int64_t limit = max_micro_batch_limit();
  const int64_t top = std::min(calculated_max, limit);
  if (top <= lo) return {lo, lo};
  for (const int64_t candidate : {static_cast<int64_t>(std::ceil(1.05 * static_cast<double>(top))), top,
                                  static_cast<int64_t>(0.95 * static_cast<double>(top))}) {
    if (candidate > limit || candidate <= lo) continue;
    if (run(space, stage, candidate, gas).metric) return {lo, candidate};
  }
  // Binary search below the estimate; stop once a larger micro-batch gains less than 5% throughput.
  auto throughput = [](const Record& rec) {
    return rec.metrics.is_object() ? rec.metrics.value("throughput", 0.0) : 0.0;
  };
  double previous = throughput(*r);
  int64_t low = lo, high = static_cast<int64_t>(0.95 * static_cast<double>(top)) - 1;
  while (low < high) {
    const int64_t mid = (low + high) / 2;
    if (mid == low) break;
    const Record& rec = run(space, stage, mid, gas);
    if (rec.metric) {
      low = mid;
      const double t = throughput(rec);
      if (previous > 0 && (t - previous) / previous < 0.05) break;
      previous = t;
    } else {
      high = mid - 1;
    }
  }
  return {lo, low};
}

std::vector<int64_t> Autotuner::tune_micro_batches(int stage, int64_t calculated_max, int64_t& max_mbs,
                                                   int64_t& tbs_per_rank) {
  const std::string space = fmt::format("z{}", stage);
  std::vector<int64_t> list;
  if (space_.micro_batch_sizes) {
    list = *space_.micro_batch_sizes;
    tbs_per_rank = target_batch_per_rank(list.back());
  } else {
    const auto [lo, hi] = min_max_micro_batch(stage, calculated_max);
    if (lo <= 0) return {};
    tbs_per_rank = target_batch_per_rank(hi);
    // Sizes from half the largest up that divide the target batch (every ranked experiment trains the same number
    // of samples a step), at most num_tuning_micro_batch_sizes of them, spread out, the largest always.
    std::vector<int64_t> fit;
    for (int64_t m = std::max(lo, hi / 2); m <= hi; ++m) {
      if (tbs_per_rank % m == 0) fit.push_back(m);
    }
    if (fit.empty()) fit.push_back(std::min(hi, tbs_per_rank));
    const size_t n = static_cast<size_t>(at_.num_tuning_micro_batch_sizes);
    if (fit.size() <= n) {
      list = fit;
    } else {
      for (size_t k = 0; k < n; ++k) list.push_back(fit[fit.size() - 1 - k * (fit.size() - 1) / std::max<size_t>(n - 1, 1)]);
      std::sort(list.begin(), list.end());
      list.erase(std::unique(list.begin(), list.end()), list.end());
    }
  }
  std::vector<int64_t> ran;
  for (const int64_t m : list) {
    const int64_t gas = gas_for(tbs_per_rank, m);
    Record& rec = run(space, stage, m, gas);
    rec.at_target = m * gas == tbs_per_rank;
    if (rec.metric) ran.push_back(m);
  }
  max_mbs = ran.empty() ? 0 : ran.back();
  return ran;
}

void Autotuner::tune_knobs(int stage, const std::vector<int64_t>& micro_batches, int64_t tbs_per_rank) {
  const std::vector<Knob> knobs = stage_knobs(stage, space_);
  if (knobs.empty()) return;
  std::string space = fmt::format("z{}", stage);
  for (const auto& k : knobs) space += "_" + key_abbreviation(k.key);
  struct Candidate {
    std::vector<std::pair<std::string, Json>> knobs;
    int64_t micro_batch;
  };
  std::vector<Candidate> todo;
  for (const auto& combo : combinations(knobs)) {
    for (const int64_t m : micro_batches) todo.push_back({combo, m});
  }
  std::mt19937 rng(20261123);
  if (at_.tuner_type == "random") std::shuffle(todo.begin(), todo.end(), rng);
  log_ << fmt::format("autotuning: stage {}: {} {} experiments over {} (at most {}, stopping after {} without a better "
                      "{})\n",
                      stage, todo.size(), at_.tuner_type, space, at_.tuner_num_trials, at_.tuner_early_stopping,
                      at_.metric);

  // model_based: a ridge regression of the metric on the knobs' values (log10 of numbers, 0/1 of booleans, the
  // index of other values) and log2 of the micro-batch, refitted after each experiment; the next experiment is the
  // one it predicts best (the first two are random).
  auto features = [&](const Candidate& c) {
    std::vector<double> f{1.0, std::log2(static_cast<double>(c.micro_batch))};
    for (size_t i = 0; i < c.knobs.size(); ++i) {
      const Json& v = c.knobs[i].second;
      if (v.is_boolean()) {
        f.push_back(v.get<bool>() ? 1.0 : 0.0);
      } else if (v.is_number()) {
        f.push_back(std::log10(std::max(v.get<double>(), 1e-12)));
      } else {
        const auto& values = knobs[i].values;
        f.push_back(static_cast<double>(std::find(values.begin(), values.end(), v) - values.begin()));
      }
    }
    return f;
  };
  std::vector<std::pair<std::vector<double>, double>> seen;
  std::optional<double> best;
  if (const Record* b = best_of(fmt::format("z{}", stage))) best = b->metric;
  int64_t trials = 0, since_best = 0;
  while (!todo.empty() && trials < at_.tuner_num_trials && since_best < at_.tuner_early_stopping) {
    size_t pick = 0;
    if (at_.tuner_type == "model_based") {
      if (seen.size() < 2) {
        pick = std::uniform_int_distribution<size_t>(0, todo.size() - 1)(rng);
      } else {
        const size_t n = seen.front().first.size();
        std::vector<double> ata(n * n, 0.0), atb(n, 0.0);
        double scale = 0;
        for (const auto& [x, y] : seen) scale = std::max(scale, std::abs(y));
        for (const auto& [x, y] : seen) {
          for (size_t i = 0; i < n; ++i) {
            atb[i] += x[i] * y / scale;
            for (size_t j = 0; j < n; ++j) ata[i * n + j] += x[i] * x[j];
          }
        }
        const auto w = ridge_solve(ata, atb, n, 1e-3);
        double best_pred = -1e300;
        for (size_t k = 0; k < todo.size(); ++k) {
          const auto x = features(todo[k]);
          double pred = 0;
          for (size_t i = 0; i < n; ++i) pred += w[i] * x[i];
          if (pred > best_pred) best_pred = pred, pick = k;
        }
      }
    }
    const Candidate c = todo[pick];
    todo.erase(todo.begin() + static_cast<std::ptrdiff_t>(pick));
    const int64_t gas = gas_for(tbs_per_rank, c.micro_batch);
    Record& rec = run(space, stage, c.micro_batch, gas, c.knobs);
    rec.at_target = c.micro_batch * gas == tbs_per_rank;
    ++trials;
    if (ranked(rec)) {
      seen.emplace_back(features(c), at_.metric == "latency" ? -*rec.metric : *rec.metric);
      if (!best || better(*rec.metric, *best)) {
        best = rec.metric;
        since_best = 0;
        continue;
      }
    }
    ++since_best;
  }
}

std::optional<Record> Autotuner::tune() {
  start_ = std::chrono::steady_clock::now();
  log_ << fmt::format("autotuning: {} ranks an experiment, metric {}, stages {}, {}\n", world_size_, at_.metric,
                      fmt::join(space_.stages, ","),
                      at_.fast ? "fast (ZeRO stage and micro-batch size)" : "full (other ZeRO knobs too)");
  model_ = profile_model();
  if (!model_) return std::nullopt;
  // Stages given as a number or a list are all explored; absent or "all" stop at a stage no better than the one below.
  const bool stages_given = user_.contains("zero_optimization") && user_.at("zero_optimization").is_object() &&
                            user_.at("zero_optimization").contains("stage") &&
                            !user_.at("zero_optimization").at("stage").is_string();
  int64_t prev_max_mbs = 0;
  std::optional<double> prev_best;
  for (const int stage : space_.stages) {
    const int64_t inst = instantiation_bytes(stage);
    int64_t calculated_max = max_micro_batch_limit();
    if (model_->device_memory_bytes > 0 && inst > 0) {
      const int64_t need = inst + model_->activation_bytes;
      if (need > model_->device_memory_bytes) {
        log_ << fmt::format("autotuning: stage {}: not run: model states {:.2f} GiB + one sample's activations need "
                            "more than the {:.2f} GiB a rank has\n",
                            stage, inst / 1073741824.0, model_->device_memory_bytes / 1073741824.0);
        continue;
      }
      if (model_->activation_bytes > 0) {
        calculated_max =
            std::min(calculated_max, (model_->device_memory_bytes - inst) / model_->activation_bytes);
      }
    }
    if (!space_.micro_batch_sizes && calculated_max < prev_max_mbs) {
      log_ << fmt::format("autotuning: stage {}: not run: its memory allows micro-batch {} at most, stage below ran {}\n",
                          stage, calculated_max, prev_max_mbs);
      continue;
    }
    int64_t max_mbs = 0, tbs_per_rank = 0;
    const auto ran = tune_micro_batches(stage, calculated_max, max_mbs, tbs_per_rank);
    if (ran.empty()) {
      log_ << fmt::format("autotuning: stage {}: no micro-batch size trains\n", stage);
      continue;
    }
    prev_max_mbs = std::max(prev_max_mbs, max_mbs);
    if (!at_.fast && stage > 0) tune_knobs(stage, ran, tbs_per_rank);
    std::optional<double> stage_best;
    for (const auto& r : records_) {
      if (r.stage == stage && ranked(r) && (!stage_best || better(*r.metric, *stage_best))) stage_best = r.metric;
    }
    if (!stages_given && prev_best && stage_best && !better(*stage_best, *prev_best)) {
      log_ << fmt::format("autotuning: stage {} is no better than the stage below: higher stages not explored\n", stage);
      break;
    }
    if (stage_best && (!prev_best || better(*stage_best, *prev_best))) prev_best = stage_best;
  }
  const Record* best = best_overall();
  if (best == nullptr) return std::nullopt;
  return *best;
}

std::string Autotuner::write_results(const std::string& results_dir) {
  const Record* best = best_overall();
  std::vector<std::string> spaces;
  for (const auto& r : records_) {
    if (std::find(spaces.begin(), spaces.end(), r.space) == spaces.end()) spaces.push_back(r.space);
  }
  std::string table = "| tuning_space | num_experiments | best_metric_val | best_exp_name |\n"
                      "| :----------- | --------------: | --------------: | :------------ |\n";
  for (const auto& space : spaces) {
    const auto n = std::count_if(records_.begin(), records_.end(), [&](const Record& r) { return r.space == space; });
    const Record* b = best_of(space);
    table += fmt::format("| {} | {} | {} | {} |\n", space, n, b ? fmt::format("{:.6g}", *b->metric) : "0",
                         b ? b->name : "-");
  }
  table += fmt::format("| global | {} | {} | {} |\n", records_.size(), best ? fmt::format("{:.6g}", *best->metric) : "0",
                       best ? best->name : "-");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string text = table + fmt::format("\nTuning completed in {}. Total number of experiments: {}. Metric: {} ({}).\n",
                                         duration_text(secs), records_.size(), at_.metric, metric_unit(at_.metric));
  text += "\n| experiment | metric | peak memory GiB | result |\n| :--------- | -----: | --------------: | :----- |\n";
  for (const auto& r : records_) {
    const double peak =
        r.metrics.is_object() ? r.metrics.value("peak_memory_bytes", 0.0) / 1073741824.0 : 0.0;
    text += fmt::format("| {} | {} | {} | {} |\n", r.name, r.metric ? fmt::format("{:.6g}", *r.metric) : "-",
                        r.metric ? fmt::format("{:.2f}", peak) : "-", r.metric ? "ok" : r.error);
  }
  write_text_file(results_dir + "/summary.txt", text, "autotuning: summary");
  log_ << "\n" << text;
  if (best == nullptr) {
    log_ << "autotuning: no experiment produced a metric: no optimal config (each experiment's stderr.log says why)\n";
    return "";
  }
  const std::string optimal = results_dir + "/ds_config_optimal.json";
  write_text_file(optimal, best->config.dump(2) + "\n", "autotuning: optimal config");
  const std::string cmd = shell_join(runner_.command_for(optimal));
  write_text_file(results_dir + "/cmd_optimal.txt", cmd + "\n", "autotuning: optimal command");
  log_ << fmt::format("autotuning: {} is the optimal setup ({} {:.6g} {}): {} and {}/cmd_optimal.txt\n", best->name,
                      at_.metric, *best->metric, metric_unit(at_.metric), optimal, results_dir);
  return optimal;
}

}  // namespace zerotrain::detail
