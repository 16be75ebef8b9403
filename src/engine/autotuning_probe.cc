#include "engine/autotuning_probe.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "zerotrain/engine.h"
#include "zerotrain/memory.h"

#ifdef ZEROTRAIN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace zerotrain::detail {
namespace {

// Memory one rank may use: the GPU's total, or on a CPU rank this machine's memory shared by its ranks
// (LOCAL_WORLD_SIZE, set by the launcher).
int64_t device_memory_bytes(c10::Device device) {
#ifdef ZEROTRAIN_WITH_CUDA
  if (device.is_cuda()) {
    int current = 0;
    cudaGetDevice(&current);
    cudaSetDevice(device.index());
    size_t free_bytes = 0, total = 0;
    const cudaError_t err = cudaMemGetInfo(&free_bytes, &total);
    cudaSetDevice(current);
    if (err == cudaSuccess) return static_cast<int64_t>(total);
  }
#endif
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemTotal:") {
      int64_t local = 1;
      if (const char* v = std::getenv("LOCAL_WORLD_SIZE"); v != nullptr && std::atoi(v) > 0) local = std::atoi(v);
      return kib * 1024 / local;
    }
  }
  return 0;
}

}  // namespace

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::filesystem::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path(), ec);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(err));
  }
}

std::unique_ptr<AutotuningProbe> AutotuningProbe::make(const AutotuningConfig& config, const ProbeFacts& facts) {
  if (!config.enabled) return nullptr;
  if (!config.model_info_profile && !config.metric_path) {
    if (facts.rank == 0) {
      fmt::print(stderr,
                 "zerotrain: autotuning.enabled is true but this run is not an autotuning experiment (no "
                 "autotuning.metric_path): training as usual; `zerotrain launch --autotuning tune` runs the search\n");
    }
    return nullptr;
  }
  return std::unique_ptr<AutotuningProbe>(new AutotuningProbe(config, facts));
}

AutotuningProbe::AutotuningProbe(const AutotuningConfig& config, const ProbeFacts& facts)
    : config_(config), facts_(facts) {
  synchronize();
  baseline_bytes_ = memory_stats(facts_.device).current_bytes;
  reset_peak_memory(facts_.device);
  // Steps are counted from 1: measuring from the first step starts the clock now.
  if (config_.metric_path && config_.start_profile_step <= 1) started_ = std::chrono::steady_clock::now();
}

void AutotuningProbe::synchronize() const {
  if (facts_.device.is_cpu()) return;
  c10::impl::getDeviceGuardImpl(facts_.device.type())->synchronizeDevice(facts_.device.index());
}

void AutotuningProbe::on_backward() {
  if (!config_.model_info_profile) return;
  synchronize();
  const int64_t in_use = memory_stats(facts_.device).current_bytes;
  if (facts_.rank == 0) {
    nlohmann::json info = {
        {"num_params", facts_.num_params},
        {"trainable_num_params", facts_.trainable_params},
        {"activation_mem_per_gpu", std::max<int64_t>(0, in_use - baseline_bytes_)},
        {"model_states_bytes", baseline_bytes_},
        {"device_memory_bytes", device_memory_bytes(facts_.device)},
        {"device", facts_.device.is_cpu() ? "cpu" : facts_.device.str()},
        {"world_size", facts_.world_size},
        {"micro_batch_per_gpu", facts_.micro_batch_per_gpu},
        {"zero_stage", facts_.zero_stage},
        {"rank", 0},
    };
    write_file_atomically(config_.model_info_path.value_or("model_info.json"), info.dump(2) + "\n");
  }
  throw AutotuningExit("autotuning: model info written; this profiling run ends here");
}

void AutotuningProbe::after_step(int64_t global_steps) {
  if (!config_.metric_path) return;
  if (global_steps == config_.start_profile_step - 1) {
    synchronize();
    started_ = std::chrono::steady_clock::now();
    return;
  }
  if (global_steps < config_.end_profile_step || !started_) return;
  synchronize();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - *started_).count();
  const int64_t first = std::max<int64_t>(config_.start_profile_step, 1);
  const int64_t steps = config_.end_profile_step - first + 1;
  const double latency_s = seconds / static_cast<double>(steps);
  if (facts_.rank == 0) {
    nlohmann::json metrics = {
        {"latency", latency_s * 1000.0},
        {"throughput", static_cast<double>(facts_.train_batch_size) / latency_s},
        {"profiled_steps", steps},
        {"peak_memory_bytes", memory_stats(facts_.device).peak_bytes},
        {"train_batch_size", facts_.train_batch_size},
        {"train_micro_batch_size_per_gpu", facts_.micro_batch_per_gpu},
        {"gradient_accumulation_steps", facts_.gradient_accumulation_steps},
        {"zero_stage", facts_.zero_stage},
        {"world_size", facts_.world_size},
    };
    if (facts_.flops_per_sample) {
      metrics["FLOPS_per_gpu"] = *facts_.flops_per_sample * static_cast<double>(facts_.train_batch_size) /
                                 static_cast<double>(facts_.world_size) / latency_s;
    }
    write_file_atomically(*config_.metric_path, metrics.dump(2) + "\n");
  }
  throw AutotuningExit(
      fmt::format("autotuning: metrics of steps {}-{} written; this experiment ends here", first, config_.end_profile_step));
}

}  // namespace zerotrain::detail
