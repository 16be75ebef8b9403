#include "launch/devices.h"

#include <dirent.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "launch/shell.h"

namespace zerotrain::detail {
namespace {

int count_device_files(std::string_view dev_dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(std::string(dev_dir).c_str()), ::closedir);
  if (!dir) return 0;
  int n = 0;
  while (const dirent* e = ::readdir(dir.get())) {
    const std::string_view name(e->d_name);
    if (!name.starts_with("nvidia") || name.size() == 6) continue;
    bool digits = true;
    for (char c : name.substr(6)) digits = digits && c >= '0' && c <= '9';
    n += digits ? 1 : 0;
  }
  return n;
}

int count_nvidia_smi_gpus() {
  const char* path = std::getenv("PATH");
  if (!find_program("nvidia-smi", path ? path : "")) return 0;
  std::unique_ptr<FILE, int (*)(FILE*)> out(::popen("nvidia-smi -L 2>/dev/null", "r"), ::pclose);
  if (!out) return 0;
  int n = 0;
  char line[512];
  while (std::fgets(line, sizeof(line), out.get())) n += std::string_view(line).starts_with("GPU ") ? 1 : 0;
  return n;
}

}  // namespace

int count_local_gpus(std::string_view dev_dir) {
  const int n = count_device_files(dev_dir);
  return n > 0 ? n : count_nvidia_smi_gpus();
}

}  // namespace zerotrain::detail
