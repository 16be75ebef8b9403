// The collective watchdog: every collective registers itself while in flight; one that outlives the timeout ends
// the process group with a message naming this rank and the operation. MPI has no timeout of its own (a rank that
// stalls before a collective hangs every other rank forever); NCCL's own watchdog (c10d) covers the nccl backend.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace zerotrain::detail {

class CollectiveWatchdog {
 public:
  // `on_timeout` receives the message; it must end the process (e.g. MPI_Abort) and is called at most once.
  CollectiveWatchdog(int rank, std::chrono::milliseconds timeout, std::function<void(const std::string&)> on_timeout);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // Registers a collective in flight; returns its id for finish().
  uint64_t start(std::string op, int64_t numel);
  void finish(uint64_t id);

 private:
  struct InFlight {
    std::string op;
    int64_t numel;
    std::chrono::steady_clock::time_point started;
  };
  void run();

  const int rank_;
  const std::chrono::milliseconds timeout_;
  std::function<void(const std::string&)> on_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, InFlight> in_flight_;  // by id, oldest first
  uint64_t next_id_ = 1;
  bool stop_ = false;
  bool fired_ = false;
  std::thread thread_;
};

}  // namespace zerotrain::detail
