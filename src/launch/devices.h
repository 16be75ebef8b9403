// How many GPUs this machine has, without CUDA: the launcher runs on nodes whose driver it never loads.
#pragma once

#include <string_view>

namespace zerotrain::detail {

// The number of /dev/nvidia<N> device files under `dev_dir`; when there are none and `nvidia-smi` is on PATH,
// the number of "GPU " lines of `nvidia-smi -L`; else 0 (a CPU machine).
int count_local_gpus(std::string_view dev_dir = "/dev");

}  // namespace zerotrain::detail
