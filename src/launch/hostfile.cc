#include "launch/hostfile.h"

#include <fmt/format.h>

#include <charconv>

#include "launch/error.h"
#include "launch/text_file.h"

namespace zerotrain::detail {
namespace {

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r");
  return s.substr(first, last - first + 1);
}

std::vector<std::string_view> split_whitespace(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// A positive decimal integer, or nullopt.
std::optional<int> parse_positive(std::string_view s) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 1) return std::nullopt;
  return v;
}

}  // namespace

ResourcePool parse_hostfile(std::string_view text, std::string_view path) {
  ResourcePool pool;
  std::vector<int> line_of_host;
  int line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view raw = trim(text.substr(pos, eol - pos));
    pos = eol + 1;
    ++line_no;
    // A '#' at the start of a line or after whitespace starts a comment (OpenMPI's hostfile rule).
    std::string_view line = raw;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) {
        line = trim(line.substr(0, i));
        break;
      }
    }
    if (line.empty()) continue;
    const auto where = fmt::format("hostfile {}:{}: '{}'", path, line_no, raw);
    const auto words = split_whitespace(line);
    const std::string_view host = words[0];
    if (host.find_first_of("=@,:") != std::string_view::npos) {
      throw LaunchError(fmt::format(
          "{}: '{}' is not a host name (it may not contain '=', '@', ',' or ':'); a line is 'HOST slots=N'", where,
          host));
    }
    std::optional<int> slots;
    for (size_t i = 1; i < words.size(); ++i) {
      const std::string_view w = words[i];
      if (w.starts_with("slots=")) {
        if (slots) throw LaunchError(fmt::format("{}: slots= is given twice", where));
        slots = parse_positive(w.substr(6));
        if (!slots) {
          throw LaunchError(fmt::format("{}: slots must be a positive integer, not '{}'", where, w.substr(6)));
        }
      } else if (w.starts_with("max_slots=")) {
        if (!parse_positive(w.substr(10))) {
          throw LaunchError(fmt::format("{}: max_slots must be a positive integer, not '{}'", where, w.substr(10)));
        }
      } else {
        throw LaunchError(fmt::format("{}: unexpected '{}'; a line is 'HOST slots=N'", where, w));
      }
    }
    if (!slots) throw LaunchError(fmt::format("{}: missing slots=N; a line is 'HOST slots=N'", where));
    for (size_t i = 0; i < pool.size(); ++i) {
      if (pool[i].host == host) {
        throw LaunchError(fmt::format("{}: host '{}' is already listed on line {}; each host may appear once",
                                      where, host, line_of_host[i]));
      }
    }
    pool.push_back({std::string(host), *slots});
    line_of_host.push_back(line_no);
  }
  if (pool.empty()) {
    throw LaunchError(fmt::format("hostfile {}: lists no hosts; each line is 'HOST slots=N'", path));
  }
  return pool;
}

std::optional<ResourcePool> read_hostfile(const std::string& path) {
  const auto text = read_text_file(path, "hostfile");
  if (!text) return std::nullopt;
  return parse_hostfile(*text, path);
}

}  // namespace zerotrain::detail
