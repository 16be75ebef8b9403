// Parses a DeepSpeed config through the installed zerotrain and makes a tensor of the configured dtype.
#include <ATen/ATen.h>

#include <cstdio>

#include "zerotrain/config.h"
#include "zerotrain/dtype.h"
#include "zerotrain/version.h"

int main() {
  const auto cfg = zerotrain::Config::from_string(
      R"({"train_batch_size": 32, "gradient_accumulation_steps": 2, "bf16": {"enabled": true},
          "zero_optimization": {"stage": 2}})",
      {.world_size = 4});
  const at::Tensor t = at::ones({cfg.batch().micro_batch_per_gpu}, at::TensorOptions().dtype(
                                                                       zerotrain::to_scalar_type(cfg.precision())));
  const bool ok = cfg.batch().micro_batch_per_gpu == 4 && t.scalar_type() == at::kBFloat16 &&
                  t.sum().item<float>() == 4.0f && cfg.zero().stage == 2 && zerotrain::version() == zerotrain::kVersion;
  std::printf("zerotrain %s consumer: micro-batch %lld, dtype %s: %s\n", std::string(zerotrain::version()).c_str(),
              static_cast<long long>(cfg.batch().micro_batch_per_gpu), c10::toString(t.scalar_type()),
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
