#include "launch/options.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "launch/error.h"

namespace zerotrain::detail {

LauncherKind parse_launcher(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (auto kind : {LauncherKind::kPdsh, LauncherKind::kSsh, LauncherKind::kOpenMpi, LauncherKind::kMpich,
                    LauncherKind::kSlurm}) {
    if (lower == launcher_name(kind)) return kind;
  }
  if (lower == "impi" || lower == "mvapich") {
    throw LaunchError(fmt::format("--launcher {}: DeepSpeed's {} runner is not supported yet; use one of pdsh, "
                                  "ssh, openmpi, mpich, slurm",
                                  name, lower));
  }
  throw LaunchError(fmt::format("--launcher {}: unknown; use one of pdsh, ssh, openmpi, mpich, slurm", name));
}

std::string_view launcher_name(LauncherKind kind) {
  switch (kind) {
    case LauncherKind::kPdsh: return "pdsh";
    case LauncherKind::kSsh: return "ssh";
    case LauncherKind::kOpenMpi: return "openmpi";
    case LauncherKind::kMpich: return "mpich";
    case LauncherKind::kSlurm: return "slurm";
  }
  return "?";
}

}  // namespace zerotrain::detail
