#include "zerotrain/version.h"

namespace zerotrain {

std::string_view version() { return kVersion; }

}  // namespace zerotrain
