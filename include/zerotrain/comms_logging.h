// DeepSpeed's communication logger (`comms_logger` config section; deepspeed.comm.log_summary): every collective an
// engine issues is timed and recorded by operation and message size. Names are DeepSpeed's: all_reduce,
// reduce_scatter_tensor, all_gather_into_tensor, reduce_scatter_coalesced, all_gather_coalesced, broadcast, barrier.
//
// As in DeepSpeed, a logged collective is made blocking (the device is synchronized before and after it), so its
// time is the collective's own and training runs slower while logging is on. Message sizes and bandwidths follow
// nccl-tests (doc/PERFORMANCE.md): the size of an all-gather or reduce-scatter is the full buffer (world size x one
// rank's part), algbw = size / time, busbw = algbw x (n-1)/n for them and x 2(n-1)/n for all-reduce; Gbps are
// 10^9 bits per second. (DeepSpeed's logger counts a reduce-scatter's input n times and doubles all-reduce's algbw;
// its busbw of all-reduce and all-gather equals this one.)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "zerotrain/comm.h"
#include "zerotrain/config.h"

namespace zerotrain {

// One (operation, message size) row of the summary; latencies in ms, bandwidths in Gbps. Averages are DeepSpeed's
// trimmed means (10% of the records off each end).
struct CommsLogEntry {
  std::string op;          // record name: the operation, with " | [Caller Func: ...]" when comms_logger.debug
  int64_t msg_bytes = 0;
  int64_t count = 0;
  double total_latency_ms = 0;
  double avg_latency_ms = 0;
  double algbw_gbps = 0;
  double busbw_gbps = 0;
  // show_straggler: the latency every rank agrees on (each record's minimum over ranks) and what this rank waited
  // beyond it.
  std::optional<double> total_comm_latency_ms, total_straggler_ms, avg_comm_latency_ms, avg_straggler_ms;
};

// Turns logging on or off and sets what is logged (the engine does this from its config's comms_logger section).
void configure_comms_logger(const CommsLoggerConfig& config);

// DeepSpeed's log_summary: rank 0 prints the table (and, with show_straggler, the straggler breakdown) to stdout.
// Every rank of the logged engine's communicator must call it (a barrier; show_straggler all-reduces the
// latencies). Returns this rank's rows, in the order printed. Without a logging engine: no rows, nothing printed.
std::vector<CommsLogEntry> comms_log_summary(bool show_straggler = false, bool print = true);

// Forgets what was recorded (DeepSpeed's reset_log).
void comms_log_reset();

// The human-readable size DeepSpeed prints ("1.0 MB", "678.86 MB": powers of 1024, two decimals).
std::string comms_size_string(int64_t bytes);

}  // namespace zerotrain
