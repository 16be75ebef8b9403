#include "engine/monitor.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <tuple>

namespace zerotrain::detail {
namespace {

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw std::runtime_error(fmt::format("monitor: cannot create directory {}: {}", path, ec.message()));
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// Protocol-buffer wire format, the few pieces an Event needs.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void tag(std::string& out, int field, int wire_type) { varint(out, (static_cast<uint64_t>(field) << 3) | wire_type); }
template <typename T>
void fixed(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // little-endian hosts (x86-64, aarch64)
  out.append(bytes, sizeof(T));
}
void bytes_field(std::string& out, int field, const std::string& data) {
  tag(out, field, 2);
  varint(out, data.size());
  out += data;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string tensorboard_record(double wall_time, int64_t step, const std::string& name, float value) {
  std::string event;
  tag(event, 1, 1);  // Event.wall_time: double
  fixed(event, wall_time);
  if (name.empty()) {
    bytes_field(event, 3, "brain.Event:2");  // Event.file_version
  } else {
    tag(event, 2, 0);  // Event.step: int64
    varint(event, static_cast<uint64_t>(step));
    std::string summary_value;
    bytes_field(summary_value, 1, name);  // Summary.Value.tag
    tag(summary_value, 2, 5);             // Summary.Value.simple_value: float
    fixed(summary_value, value);
    std::string summary;
    bytes_field(summary, 1, summary_value);  // Summary.value
    bytes_field(event, 5, summary);          // Event.summary
  }
  std::string record;
  const uint64_t length = event.size();
  fixed(record, length);
  fixed(record, masked_crc32c(&length, sizeof(length)));
  record += event;
  fixed(record, masked_crc32c(event.data(), event.size()));
  return record;
}

std::unique_ptr<Monitor> Monitor::make(const MonitorConfig& config, MonitorSink sink) {
  if (!config.csv && !config.tensorboard && !sink) return nullptr;
  std::unique_ptr<Monitor> m(new Monitor());
  m->sink_ = std::move(sink);
  if (config.csv) {
    m->csv_dir_ = join(config.csv_output_path, config.csv_job_name);
    make_dirs(m->csv_dir_);
  }
  if (config.tensorboard) {
    const std::string dir = join(config.tensorboard_output_path, config.tensorboard_job_name);
    make_dirs(dir);
    char host[256] = "localhost";
    ::gethostname(host, sizeof(host) - 1);
    const std::string path = fmt::format("{}/events.out.tfevents.{}.{}.{}", dir, static_cast<int64_t>(now_seconds()),
                                         host, ::getpid());
    m->tb_ = std::fopen(path.c_str(), "wb");
    if (m->tb_ == nullptr) throw std::runtime_error("tensorboard: cannot write " + path + ": " + std::strerror(errno));
    const std::string first = tensorboard_record(now_seconds(), 0, "", 0);
    std::fwrite(first.data(), 1, first.size(), m->tb_);
    std::fflush(m->tb_);
  }
  return m;
}

void Monitor::require_clients(const MonitorConfig& config, bool has_sink) {
  if (has_sink) return;
  std::vector<std::string> errors;
  for (const auto& [on, key, what] : {std::tuple{config.wandb, "wandb.enabled", "Weights & Biases"},
                                      std::tuple{config.comet, "comet.enabled", "Comet"}}) {
    if (!on) continue;
    errors.push_back(std::string(key) + " = true: " + what + " logs through its Python client, which this program "
                     "does not bring (EngineOptions::monitor_sink is empty); train through the Python package "
                     "(zerotrain.initialize or zerotrain.hf.Trainer), which sends the engine's events to it, or log "
                     "the same events with \"tensorboard\" or \"csv_monitor\"");
  }
  if (!errors.empty()) throw ConfigError(errors);
}

Monitor::~Monitor() {
  if (tb_ != nullptr) std::fclose(tb_);
}

void Monitor::write(const std::vector<MonitorEvent>& events) {
  for (const auto& e : events) {
    if (!csv_dir_.empty()) {
      std::string file = e.name;
      for (char& c : file) {
        if (c == '/' || c == ' ') c = '_';
      }
      const std::string path = csv_dir_ + "/" + file + ".csv";
      std::FILE* f = std::fopen(path.c_str(), "a");
      if (f == nullptr) throw std::runtime_error("csv_monitor: cannot write " + path + ": " + std::strerror(errno));
      if (csv_files_.insert(file).second) {
        fmt::print(f, "step,{}\n", e.name.substr(e.name.rfind('/') + 1));
      }
      fmt::print(f, "{},{}\n", e.step, e.value);
      std::fclose(f);
    }
    if (tb_ != nullptr) {
      const std::string record = tensorboard_record(now_seconds(), e.step, e.name, static_cast<float>(e.value));
      std::fwrite(record.data(), 1, record.size(), tb_);
    }
  }
  if (tb_ != nullptr) std::fflush(tb_);
  if (sink_ && !events.empty()) sink_(events);
}

}  // namespace zerotrain::detail
