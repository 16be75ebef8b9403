#include "zerotrain/dtype.h"

namespace zerotrain {

c10::ScalarType to_scalar_type(Precision p) {
  switch (p) {
    case Precision::kFp32: return c10::ScalarType::Float;
    case Precision::kFp16: return c10::ScalarType::Half;
    case Precision::kBf16: return c10::ScalarType::BFloat16;
  }
  return c10::ScalarType::Float;
}

c10::ScalarType communication_dtype(const Config& cfg) {
  return to_scalar_type(cfg.gradients().communication_dtype.value_or(cfg.precision()));
}

}  // namespace zerotrain
