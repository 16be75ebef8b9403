// DeepSpeed's see_memory_usage, behind `memory_breakdown: true` (the engine calls it on rank 0 around forward,
// backward and step).
#pragma once

#include <c10/core/Device.h>

namespace zerotrain::detail {

// Prints `message`, then the device's allocated and reserved memory with their peaks (MA / Max_MA / CA / Max_CA, GB)
// and the host's used memory, as DeepSpeed does. `reset_peak`: start a new peak measurement after (DeepSpeed's
// behaviour: each report shows the peak since the previous one).
void see_memory_usage(const char* message, c10::Device device, bool reset_peak);

}  // namespace zerotrain::detail
