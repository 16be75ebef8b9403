// Shape checks shared by the coalesced collectives of every communicator.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace zerotrain::detail {

// `op` names the collective in the message. Each big[i] must hold world_size times small[i]'s elements (all-gather:
// big = outputs, small = inputs; reduce-scatter: big = inputs, small = outputs).
void check_coalesced(const char* op, const std::vector<at::Tensor>& small, const std::vector<at::Tensor>& big,
                     int world_size);

}  // namespace zerotrain::detail
