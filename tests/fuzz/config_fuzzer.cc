// Fuzz target: any byte string through the whole config pipeline (reader, aliases, validation, resolution).
// A ConfigError is the expected outcome for bad input; anything else (crash, other exception, sanitizer
// report, hang) is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "zerotrain/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (int world_size : {1, 3}) {
    try {
      const auto cfg = zerotrain::Config::from_string(text, {.world_size = world_size, .hidden_size = 64}, "fuzz");
      (void)cfg.to_json();
      (void)cfg.effective_values();
    } catch (const zerotrain::ConfigError&) {
    }
  }
  return 0;
}
