#include "comm/comms_logger.h"

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <cmath>
#include <map>
#include <mutex>
#include <numeric>
#include <stdexcept>

#include "zerotrain/comms_logging.h"

namespace zerotrain {
namespace detail {
namespace {

thread_local const char* t_caller = nullptr;

struct Row {
  std::vector<double> latency_ms, algbw, busbw;
};

struct Log {
  std::mutex mu;
  CommsLoggerConfig config;
  std::vector<std::string> order;                        // record names, first seen first (as DeepSpeed's dict)
  std::map<std::string, std::map<int64_t, Row>> records;  // name -> message bytes -> records
  std::weak_ptr<Comm> comm;                              // the logged engine's communicator (unlogged)
  c10::Device device{c10::kCPU};                         // where its collectives ran
};

Log& the_log() {
  static Log* log = new Log;  // never destroyed: collectives may be logged from threads during exit
  return *log;
}

// DeepSpeed's trim_mean (utils/timer.py): sorted, round(n x frac) records off each end (round half to even).
double trim_mean(std::vector<double> v, double frac) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto n = static_cast<int64_t>(v.size());
  const auto k = static_cast<int64_t>(std::nearbyint(static_cast<double>(n) * frac));
  if (n - 2 * k <= 0) return 0;
  return std::accumulate(v.begin() + k, v.end() - k, 0.0) / static_cast<double>(n - 2 * k);
}

// (algbw, busbw) in Gbps of `bytes` moved in `ms` by `op` over n ranks (nccl-tests' definitions).
std::pair<double, double> bandwidth(const std::string& op, int64_t bytes, double ms, int n) {
  if (ms <= 0 || bytes <= 0) return {0.0, 0.0};
  const double algbw = static_cast<double>(bytes) * 8 / (ms * 1e6);
  double factor = 1;
  if (op == "all_reduce") {
    factor = 2.0 * (n - 1) / n;
  } else if (op.rfind("all_gather", 0) == 0 || op.rfind("reduce_scatter", 0) == 0) {
    factor = static_cast<double>(n - 1) / n;
  }
  return {algbw, algbw * factor};
}

int64_t bytes_of(const at::Tensor& t) { return t.defined() ? static_cast<int64_t>(t.nbytes()) : 0; }

int64_t bytes_of(const std::vector<at::Tensor>& ts) {
  int64_t n = 0;
  for (const auto& t : ts) n += bytes_of(t);
  return n;
}

void synchronize(c10::Device device) {
  if (device.is_cpu()) return;
  c10::impl::getDeviceGuardImpl(device.type())->synchronizeDevice(device.index());
}

class DoneWork final : public CommWork {
 public:
  void wait() override {}
};

class LoggedComm final : public Comm {
 public:
  explicit LoggedComm(std::shared_ptr<Comm> inner) : inner_(std::move(inner)) {}

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend() const override { return inner_->backend(); }

  void all_reduce(at::Tensor& t, ReduceOp op) override {
    timed("all_reduce", bytes_of(t), t.device(), [&] {
      inner_->all_reduce(t, op);
      return std::unique_ptr<CommWork>();
    });
  }
  std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor& out, const at::Tensor& in, ReduceOp op) override {
    return timed("reduce_scatter_tensor", bytes_of(in), in.device(),
                 [&] { return inner_->reduce_scatter_async(out, in, op); });
  }
  std::unique_ptr<CommWork> all_gather_async(at::Tensor& out, const at::Tensor& in) override {
    return timed("all_gather_into_tensor", bytes_of(out), out.device(),
                 [&] { return inner_->all_gather_async(out, in); });
  }
  std::unique_ptr<CommWork> all_gather_coalesced_async(std::vector<at::Tensor>& outs,
                                                       const std::vector<at::Tensor>& ins) override {
    return timed("all_gather_coalesced", bytes_of(outs), device_of(outs),
                 [&] { return inner_->all_gather_coalesced_async(outs, ins); });
  }
  std::unique_ptr<CommWork> reduce_scatter_coalesced_async(std::vector<at::Tensor>& outs,
                                                           const std::vector<at::Tensor>& ins, ReduceOp op) override {
    return timed("reduce_scatter_coalesced", bytes_of(ins), device_of(ins),
                 [&] { return inner_->reduce_scatter_coalesced_async(outs, ins, op); });
  }
  std::unique_ptr<CommWork> all_reduce_async(at::Tensor& t, ReduceOp op) override {
    return timed("all_reduce", bytes_of(t), t.device(), [&] { return inner_->all_reduce_async(t, op); });
  }
  void broadcast(at::Tensor& t, int root) override {
    timed("broadcast", bytes_of(t), t.device(), [&] {
      inner_->broadcast(t, root);
      return std::unique_ptr<CommWork>();
    });
  }
  void barrier() override {
    timed("barrier", 0, c10::Device(c10::kCPU), [&] {
      inner_->barrier();
      return std::unique_ptr<CommWork>();
    });
  }

 private:
  static c10::Device device_of(const std::vector<at::Tensor>& ts) {
    return ts.empty() ? c10::Device(c10::kCPU) : ts.front().device();
  }

  template <typename Launch>
  std::unique_ptr<CommWork> timed(const char* op, int64_t bytes, c10::Device device, Launch&& launch) {
    Log& log = the_log();
    std::string name;
    bool verbose = false, profile = false;
    {
      std::lock_guard<std::mutex> lock(log.mu);  // only to read the settings: collectives run outside the lock
      const CommsLoggerConfig& c = log.config;
      profile = c.enabled &&
                (c.prof_all || std::find(c.prof_ops.begin(), c.prof_ops.end(), op) != c.prof_ops.end());
      if (profile) {
        name = op;
        if (c.debug) name += fmt::format(" | [Caller Func: {}]", t_caller != nullptr ? t_caller : "zerotrain");
        verbose = c.verbose;
      }
    }
    if (!profile) return launch();
    synchronize(device);  // the collective's own time: nothing queued before it counts
    const auto t0 = std::chrono::steady_clock::now();
    if (std::unique_ptr<CommWork> work = launch()) work->wait();
    synchronize(device);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const auto [algbw, busbw] = bandwidth(op, bytes, ms, inner_->world_size());
    {
      std::lock_guard<std::mutex> lock(log.mu);
      auto [it, added] = log.records.try_emplace(name);
      if (added) log.order.push_back(name);
      Row& row = it->second[bytes];
      row.latency_ms.push_back(ms);
      row.algbw.push_back(algbw);
      row.busbw.push_back(busbw);
      if (!device.is_cpu()) log.device = device;
    }
    if (verbose && inner_->rank() == 0) {
      fmt::print("[Rank 0] comm op: {} | time (ms): {:.2f} | msg size: {} | algbw (Gbps): {:.2f} | busbw (Gbps): "
                 "{:.2f}\n", name, ms, comms_size_string(bytes), algbw, busbw);
      std::fflush(stdout);
    }
    return std::make_unique<DoneWork>();
  }

  std::shared_ptr<Comm> inner_;
};

}  // namespace

std::shared_ptr<Comm> make_logged_comm(std::shared_ptr<Comm> inner) {
  Log& log = the_log();
  std::lock_guard<std::mutex> lock(log.mu);
  log.comm = inner;
  return std::make_shared<LoggedComm>(std::move(inner));
}

CommCaller::CommCaller(const char* name) : saved_(t_caller) { t_caller = name; }
CommCaller::~CommCaller() { t_caller = saved_; }

}  // namespace detail

void configure_comms_logger(const CommsLoggerConfig& config) {
  detail::Log& log = detail::the_log();
  std::lock_guard<std::mutex> lock(log.mu);
  log.config = config;
}

void comms_log_reset() {
  detail::Log& log = detail::the_log();
  std::lock_guard<std::mutex> lock(log.mu);
  log.order.clear();
  log.records.clear();
}

std::string comms_size_string(int64_t bytes) {
  if (bytes <= 0) return "0B";
  static const char* const kUnits[] = {"B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
  int i = static_cast<int>(std::floor(std::log(static_cast<double>(bytes)) / std::log(1024.0)));
  i = std::clamp(i, 0, 8);
  const double scaled = std::round(static_cast<double>(bytes) / std::pow(1024.0, i) * 100) / 100;
  std::string s = fmt::format("{}", scaled);  // shortest form, as Python's str(float)
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s + " " + kUnits[i];
}

std::vector<CommsLogEntry> comms_log_summary(bool show_straggler, bool print) {
  detail::Log& log = detail::the_log();
  std::shared_ptr<Comm> comm;
  c10::Device device(c10::kCPU);
  std::vector<CommsLogEntry> out;
  std::vector<std::vector<double>> latencies;  // per entry
  {
    std::lock_guard<std::mutex> lock(log.mu);
    comm = log.comm.lock();
    if (!comm && !log.records.empty()) {
      throw std::runtime_error(
          "comms_log_summary: the engine whose collectives were logged has been destroyed, so its ranks cannot be "
          "reached; call log_summary while the engine exists (before deleting it)");
    }
    if (!comm) return out;
    device = log.device;
  }
  if (device.is_cpu() && comm->backend() == "nccl") {
    device = c10::impl::getDeviceGuardImpl(c10::kCUDA)->getDevice();  // NCCL reduces device tensors only
  }
  comm->barrier();
  {
    std::lock_guard<std::mutex> lock(log.mu);
    for (const std::string& name : log.order) {
      for (const auto& [bytes, row] : log.records.at(name)) {
        CommsLogEntry e;
        e.op = name;
        e.msg_bytes = bytes;
        e.count = static_cast<int64_t>(row.latency_ms.size());
        e.total_latency_ms = std::accumulate(row.latency_ms.begin(), row.latency_ms.end(), 0.0);
        e.avg_latency_ms = detail::trim_mean(row.latency_ms, 0.1);
        e.algbw_gbps = detail::trim_mean(row.algbw, 0.1);
        e.busbw_gbps = detail::trim_mean(row.busbw, 0.1);
        out.push_back(e);
        latencies.push_back(row.latency_ms);
      }
    }
  }
  const bool rank0 = comm->rank() == 0;
  // DeepSpeed's tables: a header of 20-character columns, each operation's name, then a row per message size.
  auto table = [&](const std::array<const char*, 4>& columns, auto values) {
    fmt::print("{:<20}{:<20}{:<20}{:<20}{:<20}{:<20}{:<20}\n", "Comm. Op", "Message Size", "Count", columns[0],
               columns[1], columns[2], columns[3]);
    std::string last;
    for (const CommsLogEntry& e : out) {
      if (e.op != last) fmt::print("{}\n", e.op);
      last = e.op;
      const std::array<double, 4> v = values(e);
      fmt::print("{:<20}{:<20}{:<20}{:<20.2f}{:<20.2f}{:<20.2f}{:<20.2f}\n", " ", comms_size_string(e.msg_bytes),
                 e.count, v[0], v[1], v[2], v[3]);
    }
  };
  if (print && rank0) {
    table({"Total Latency(ms)", "Avg Latency(ms)", "tput_avg (Gbps)", "busbw_avg (Gbps)"}, [](const CommsLogEntry& e) {
      return std::array<double, 4>{e.total_latency_ms, e.avg_latency_ms, e.algbw_gbps, e.busbw_gbps};
    });
  }
  if (show_straggler) {
    // Every rank must have logged the same collectives: the counts are checked first (max == min over ranks), so a
    // mismatch is one clear error on every rank instead of a reduction over different sizes.
    // Per row its count and a 32-bit hash of its name and size (exact in a double): equal on every rank or an error.
    std::vector<double> shape = {static_cast<double>(out.size())};
    for (const auto& e : out) shape.push_back(static_cast<double>(e.count));
    for (const auto& e : out) {
      shape.push_back(static_cast<double>(
          static_cast<uint32_t>(std::hash<std::string>{}(e.op + "#" + std::to_string(e.msg_bytes)))));
    }
    // The first element is the number of rows: ranks with different row counts compare only that.
    at::Tensor counts = at::tensor(std::vector<double>{shape[0], -shape[0]}, at::kDouble).to(device);
    comm->all_reduce(counts, ReduceOp::kMax);
    auto c = counts.cpu();
    const bool rows_match = c[0].item<double>() == -c[1].item<double>();
    bool counts_match = rows_match;
    if (rows_match && !out.empty()) {
      at::Tensor per = at::tensor(std::vector<double>(shape.begin() + 1, shape.end()), at::kDouble);
      at::Tensor both = at::cat({per, -per}).to(device);
      comm->all_reduce(both, ReduceOp::kMax);
      both = both.cpu();
      const int64_t n = per.numel();
      counts_match = at::equal(both.narrow(0, 0, n), -both.narrow(0, n, n));
    }
    if (!counts_match) {
      comm->barrier();
      throw std::runtime_error(
          "comms_log_summary(show_straggler=true): the ranks logged different collectives (operations, sizes or "
          "counts differ), so their latencies cannot be compared; allowed: call it where every rank has run the "
          "same collectives, or with show_straggler=false");
    }
    std::vector<double> flat;
    for (const auto& l : latencies) flat.insert(flat.end(), l.begin(), l.end());
    if (!flat.empty()) {
      at::Tensor neg = -at::tensor(flat, at::kDouble).to(device);
      comm->all_reduce(neg, ReduceOp::kMax);
      const at::Tensor mins = (-neg).cpu();
      const double* m = mins.data_ptr<double>();
      size_t pos = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        std::vector<double> min_lat(m + pos, m + pos + latencies[i].size()), straggle;
        for (size_t j = 0; j < latencies[i].size(); ++j) straggle.push_back(latencies[i][j] - min_lat[j]);
        pos += latencies[i].size();
        out[i].total_comm_latency_ms = std::accumulate(min_lat.begin(), min_lat.end(), 0.0);
        out[i].total_straggler_ms = std::accumulate(straggle.begin(), straggle.end(), 0.0);
        out[i].avg_comm_latency_ms = detail::trim_mean(min_lat, 0.1);
        out[i].avg_straggler_ms = detail::trim_mean(straggle, 0.1);
      }
    }
    if (print && rank0) {
      fmt::print("_______________________________\nBreakdown with straggler effect\n-------------------------------\n");
      table({"Total comm lat(ms)", "Total straggler(ms)", "Avg comm lat(ms)", "Avg straggler(ms)"},
            [](const CommsLogEntry& e) {
              return std::array<double, 4>{e.total_comm_latency_ms.value_or(0), e.total_straggler_ms.value_or(0),
                                           e.avg_comm_latency_ms.value_or(0), e.avg_straggler_ms.value_or(0)};
            });
    }
  }
  if (print && rank0) std::fflush(stdout);
  comm->barrier();
  return out;
}

}  // namespace zerotrain
