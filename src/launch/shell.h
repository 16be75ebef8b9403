// POSIX shell quoting and splitting, and PATH lookup: what the runners need to hand a command to ssh, pdsh or
// mpirun exactly as the launcher means it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zerotrain::detail {

// `s` as one POSIX shell word: unchanged when it holds only [A-Za-z0-9_@%+=:,./-] (and is not empty), else
// in single quotes with each ' written as '\''.
std::string shell_quote(std::string_view s);

// The words quoted and joined by single spaces: a command line a POSIX shell splits back into `words`.
std::string shell_join(const std::vector<std::string>& words);

// Splits `text` into words the way a POSIX shell (and Python's shlex.split) does: whitespace separates,
// '...' is literal, "..." allows \" \\ \$ \`, a backslash outside quotes escapes the next character.
// `what` names the source in errors (e.g. "--launcher_args").
std::vector<std::string> shell_split(std::string_view text, std::string_view what);

// The file `program` names when executed through PATH (`path_env`, the value of PATH) as execvp would:
// a name with a '/' is taken as is; else the first executable regular file in PATH. nullopt when none.
std::optional<std::string> find_program(std::string_view program, std::string_view path_env);

}  // namespace zerotrain::detail
