// Reading the small text files the launcher takes as input (hostfile, .deepspeed_env).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace zerotrain::detail {

// The whole file; nullopt when it does not exist. Any other failure (a directory, no permission) is a
// LaunchError that starts with `what` and the path, e.g. "hostfile /job/hostfile: cannot read it: ...".
std::optional<std::string> read_text_file(const std::string& path, std::string_view what);

// Writes `text` to `path` (created with mode 0644 or truncated); a LaunchError naming `what` on failure.
void write_text_file(const std::string& path, std::string_view text, std::string_view what);

}  // namespace zerotrain::detail
