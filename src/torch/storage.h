// Storage that comes and goes under a tensor that keeps its shape: how ZeRO-3 frees gathered parameters and how
// deferred models exist before their parameters are materialized.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>

namespace zerotrain::detail {

// Gives `t`'s storage `nbytes` fresh bytes (contents undefined) or none. Every tensor viewing the storage keeps its
// sizes and strides; only the data goes away and comes back.
void resize_storage(const at::Tensor& t, size_t nbytes);

// True when `t` has elements but its storage holds no bytes (freed by resize_storage).
bool holds_no_data(const at::Tensor& t);

}  // namespace zerotrain::detail
