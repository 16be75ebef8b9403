#include "launch/text_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "launch/error.h"
#include "launch/unique_fd.h"

namespace zerotrain::detail {

std::optional<std::string> read_text_file(const std::string& path, std::string_view what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    throw LaunchError(fmt::format("{} {}: cannot read it: {}", what, path, std::strerror(errno)));
  }
  std::string text;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw LaunchError(fmt::format("{} {}: cannot read it: {}", what, path, std::strerror(errno)));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

void write_text_file(const std::string& path, std::string_view text, std::string_view what) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) throw LaunchError(fmt::format("{} {}: cannot write it: {}", what, path, std::strerror(errno)));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw LaunchError(fmt::format("{} {}: cannot write it: {}", what, path, std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
}

}  // namespace zerotrain::detail
