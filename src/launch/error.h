// The launcher's user-error type.
#pragma once

#include <stdexcept>

namespace zerotrain::detail {

// A user error in `zerotrain launch` flags, a hostfile, an environment file or the variables a launcher set:
// the message names the flag, file:line or variable, the value, and what is allowed.
class LaunchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace zerotrain::detail
