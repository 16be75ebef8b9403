// The communicator behind `comms_logger` (include/zerotrain/comms_logging.h): LoggedComm wraps an engine's Comm and
// times the collectives the process-wide logger asks for; the engine installs it when comms_logger.enabled.
#pragma once

#include <memory>

#include "zerotrain/comm.h"

namespace zerotrain::detail {

// `inner` carries the collectives; the logger records against its rank and world size and uses it for
// comms_log_summary's barrier and straggler reduction.
std::shared_ptr<Comm> make_logged_comm(std::shared_ptr<Comm> inner);

// Names the engine function that issues the collectives inside its scope, for comms_logger.debug's
// "[Caller Func: ...]" (per thread; the innermost scope wins).
class CommCaller {
 public:
  explicit CommCaller(const char* name);
  ~CommCaller();
  CommCaller(const CommCaller&) = delete;
  CommCaller& operator=(const CommCaller&) = delete;

 private:
  const char* saved_;
};

}  // namespace zerotrain::detail
