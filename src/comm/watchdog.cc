#include "comm/watchdog.h"

#include <sstream>

namespace zerotrain::detail {

CollectiveWatchdog::CollectiveWatchdog(int rank, std::chrono::milliseconds timeout,
                                       std::function<void(const std::string&)> on_timeout)
    : rank_(rank), timeout_(timeout), on_timeout_(std::move(on_timeout)), thread_([this] { run(); }) {}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t CollectiveWatchdog::start(std::string op, int64_t numel) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_id_++;
  in_flight_.emplace(id, InFlight{std::move(op), numel, std::chrono::steady_clock::now()});
  return id;
}

void CollectiveWatchdog::finish(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_.erase(id);
}

void CollectiveWatchdog::run() {
  // Poll often enough that a timeout fires within ~1% of its length, at most every second.
  const auto period = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(1000),
                                                          std::max<std::chrono::milliseconds>(timeout_ / 100,
                                                                                              std::chrono::milliseconds(10)));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, period);
    if (stop_ || fired_ || in_flight_.empty()) continue;
    const auto& [id, oldest] = *in_flight_.begin();
    const auto waited = std::chrono::steady_clock::now() - oldest.started;
    if (waited < timeout_) continue;
    fired_ = true;
    std::ostringstream msg;
    msg << "zerotrain: rank " << rank_ << ": collective #" << id << " (" << oldest.op << ", " << oldest.numel
        << " elements) did not complete within " << std::chrono::duration_cast<std::chrono::seconds>(timeout_).count()
        << " s: another rank has died, stalled, or called a different collective. Ending all ranks.";
    const std::string text = msg.str();
    lock.unlock();
    on_timeout_(text);
    lock.lock();
  }
}

}  // namespace zerotrain::detail
