// The engine's side of an autotuning experiment ([Note: autotuning] in src/autotune/autotuner.h). The autotuner
// starts the user's program once per candidate config; that config's "autotuning" section tells the engine what to
// measure, as DeepSpeed's engine does:
//  - model_info.profile: at the first backward, write {num_params, trainable_num_params, activation_mem_per_gpu,
//    device_memory_bytes, ...} to model_info_path (rank 0), then end the run.
//  - metric_path: time optimizer steps start_profile_step..end_profile_step (device synchronized at both ends),
//    write {latency (ms a step), throughput (samples/s), FLOPS_per_gpu when known, peak_memory_bytes, ...} to
//    metric_path (rank 0), then end the run.
// "End the run" is AutotuningExit, thrown on every rank: zerotrain's CLI and the Python binding (SystemExit(0))
// turn it into a clean exit with status 0.
#pragma once

#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "zerotrain/config.h"

namespace zerotrain::detail {

// What the probe reports about the engine it sits in.
struct ProbeFacts {
  int64_t num_params = 0;        // every parameter of the model (full size at stage 3)
  int64_t trainable_params = 0;  // those that require a gradient
  int rank = 0;
  int world_size = 1;
  c10::Device device{c10::kCPU};
  int64_t train_batch_size = 0;
  int64_t micro_batch_per_gpu = 0;
  int64_t gradient_accumulation_steps = 1;
  int zero_stage = 0;
  std::optional<double> flops_per_sample;  // forward + backward FLOPs of one sample, when the program knows them
};

class AutotuningProbe {
 public:
  // A probe when the config asks this run to measure (autotuning.enabled with metric_path or model_info.profile);
  // null otherwise. Call at the end of the engine's construction: the memory in use then is the model states'.
  static std::unique_ptr<AutotuningProbe> make(const AutotuningConfig& config, const ProbeFacts& facts);

  // At the start of every backward: the first one of a model-info run writes the model info and throws
  // AutotuningExit.
  void on_backward();
  // After every optimizer step, with the number of optimizer steps done: starts the clock after step
  // start_profile_step - 1 and, after step end_profile_step, writes the metrics and throws AutotuningExit.
  void after_step(int64_t global_steps);
  void set_flops_per_sample(double flops) { facts_.flops_per_sample = flops; }

 private:
  AutotuningProbe(const AutotuningConfig& config, const ProbeFacts& facts);
  void synchronize() const;

  AutotuningConfig config_;
  ProbeFacts facts_;
  int64_t baseline_bytes_ = 0;  // memory in use once the engine is built
  std::optional<std::chrono::steady_clock::time_point> started_;
};

// Writes `text` to `path` through a temporary file and a rename (a reader never sees half a file); creates
// missing parent directories. Throws std::runtime_error naming the path.
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace zerotrain::detail
