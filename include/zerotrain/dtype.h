// Config precisions as torch dtypes.
#pragma once

#include <c10/core/ScalarType.h>

#include "zerotrain/config.h"

namespace zerotrain {

// kFp32 -> at::kFloat, kFp16 -> at::kHalf, kBf16 -> at::kBFloat16.
c10::ScalarType to_scalar_type(Precision p);

// The dtype gradients are reduced in: communication_data_type when set, else the training dtype.
c10::ScalarType communication_dtype(const Config& cfg);

}  // namespace zerotrain
