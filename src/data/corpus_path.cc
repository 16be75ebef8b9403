// default_corpus_path: where the bundled corpus is, for an installed zerotrain, a build tree, or a Python process
// whose executable is python3 (hence the library's own location is searched as well as the executable's).
#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "zerotrain/data.h"

namespace zerotrain {
namespace {

namespace fs = std::filesystem;

// Directories that hold the executable and this library (empty paths where unknown).
std::vector<fs::path> binary_dirs() {
  std::vector<fs::path> dirs;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back(exe.parent_path());
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&default_corpus_path), &info) != 0 && info.dli_fname != nullptr) {
    const fs::path lib = fs::weakly_canonical(fs::path(info.dli_fname), ec);
    if (!ec) dirs.push_back(lib.parent_path());
  }
  return dirs;
}

// Where data/corpus may be relative to a binary's directory: an install (bin/ or lib/ or lib/<triplet>/ next to
// share/zerotrain/data), or a build tree up to three levels inside the source tree (build/, build/unit/, ...).
std::vector<fs::path> candidates_near(const fs::path& dir) {
  std::vector<fs::path> out = {dir / ".." / "share" / "zerotrain" / "data" / "corpus",
                               dir / ".." / ".." / "share" / "zerotrain" / "data" / "corpus"};
  fs::path up = dir;
  for (int level = 0; level <= 3; ++level) {
    out.push_back(up / "data" / "corpus");
    up = up / "..";
  }
  return out;
}

}  // namespace

fs::path default_corpus_path() {
  if (const char* env = std::getenv("ZEROTRAIN_DATA_DIR"); env != nullptr && *env != '\0') {
    // An explicit setting that points nowhere is an error, not a reason to fall back silently.
    const fs::path corpus = fs::path(env) / "corpus";
    if (!fs::is_directory(corpus)) {
      throw std::runtime_error(fmt::format(
          "ZEROTRAIN_DATA_DIR: got '{}'; must be a directory holding corpus/ (the repository's data/ directory)",
          env));
    }
    return corpus;
  }
  std::vector<fs::path> searched;
  for (const auto& dir : binary_dirs()) {
    for (const auto& candidate : candidates_near(dir)) searched.push_back(candidate);
  }
#ifdef ZEROTRAIN_SOURCE_DATA_DIR
  searched.push_back(fs::path(ZEROTRAIN_SOURCE_DATA_DIR) / "corpus");
#endif
  std::string listed;
  for (const auto& candidate : searched) {
    std::error_code ec;
    if (fs::is_directory(candidate, ec)) {
      const fs::path resolved = fs::weakly_canonical(candidate, ec);
      return ec ? candidate : resolved;
    }
    listed += "\n  " + candidate.lexically_normal().string();
  }
  throw std::runtime_error(fmt::format(
      "bundled corpus not found: set ZEROTRAIN_DATA_DIR to zerotrain's data/ directory or pass a corpus path; "
      "searched:{}",
      listed));
}

}  // namespace zerotrain
