// DeepSpeed's monitors that write files: `csv_monitor` and `tensorboard` (monitor/csv_monitor.py, tensorboard.py);
// `wandb` and `comet` through a MonitorSink (zerotrain/monitor.h: the Python package's clients).
// Rank 0 writes (name, value, step) events after each optimizer step: Train/Samples/train_loss (the mean loss of the
// step's micro-steps), Train/Samples/lr (the next step's learning rate) and, with fp16, Train/Samples/loss_scale; the
// step is the number of samples trained (global_samples), as DeepSpeed logs them.
//  - csv: output_path/job_name/<name with '/' and ' ' as '_'>.csv, a "step,<last part of name>" header, then rows.
//  - tensorboard: output_path/job_name/events.out.tfevents.<time>.<host>.<pid>, TensorFlow's event-file format
//    (length-prefixed records with masked CRC-32C, Event protos holding scalar Summary values), which TensorBoard
//    reads; no TensorFlow or protobuf library needed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "zerotrain/config.h"
#include "zerotrain/monitor.h"

namespace zerotrain::detail {

using MonitorEvent = zerotrain::MonitorEvent;

class Monitor {
 public:
  // Null when no file monitor is enabled and `sink` is empty. Creates the directories; throws std::runtime_error
  // naming the path when it cannot.
  static std::unique_ptr<Monitor> make(const MonitorConfig& config, MonitorSink sink = {});
  // wandb / comet log through their Python clients: without a sink (a C++ program) a config that enables them is a
  // ConfigError naming each key and what to use instead.
  static void require_clients(const MonitorConfig& config, bool has_sink);
  ~Monitor();
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  void write(const std::vector<MonitorEvent>& events);

 private:
  Monitor() = default;
  std::string csv_dir_;  // empty: no csv monitor
  std::set<std::string> csv_files_;
  std::FILE* tb_ = nullptr;  // the event file, or null
  MonitorSink sink_;         // wandb / comet (the Python package), or empty
};

// CRC-32C (Castagnoli) of `n` bytes, and TensorFlow's masking of it for record framing.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

// One TensorFlow event record: an Event proto with wall_time, step and one scalar summary value (`tag`, `value`);
// with an empty tag, the file_version event "brain.Event:2" that starts a file.
std::string tensorboard_record(double wall_time, int64_t step, const std::string& tag, float value);

}  // namespace zerotrain::detail
