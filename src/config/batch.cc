// DeepSpeed's batch rules (deepspeed/runtime/config.py _set_batch_related_parameters and _batch_assertion).
#include <string>

#include "zerotrain/config.h"

namespace zerotrain {
namespace {

std::string show(std::optional<int64_t> v) { return v ? std::to_string(*v) : std::string("unset"); }

}  // namespace

BatchConfig resolve_batch(std::optional<int64_t> train, std::optional<int64_t> micro, std::optional<int64_t> gas,
                          int world_size) {
  if (world_size < 1) {
    throw ConfigError({"world size " + std::to_string(world_size) + " is invalid; allowed: an integer >= 1"});
  }
  const int64_t ws = world_size;
  const std::string given = "train_batch_size=" + show(train) + ", train_micro_batch_size_per_gpu=" + show(micro) +
                            ", gradient_accumulation_steps=" + show(gas) + ", world_size=" + std::to_string(ws);
  // Values <= 0 are rejected by validation; guard the divisions anyway.
  for (auto v : {train, micro, gas}) {
    if (v && *v <= 0) throw ConfigError({"batch sizes must be > 0 (" + given + ")"});
  }
  BatchConfig b;
  if (train && micro && gas) {
    b = {*train, *micro, *gas};
  } else if (train && micro) {
    b = {*train, *micro, *train / *micro / ws};
  } else if (train && gas) {
    b = {*train, *train / ws / *gas, *gas};
  } else if (micro && gas) {
    b = {*micro * *gas * ws, *micro, *gas};
  } else if (train) {
    b = {*train, *train / ws, 1};
  } else if (micro) {
    b = {*micro * ws, *micro, 1};
  } else {
    throw ConfigError({"train_batch_size or train_micro_batch_size_per_gpu must be given (" + given + ")"});
  }
  if (b.micro_batch_per_gpu <= 0) {
    throw ConfigError({"train_micro_batch_size_per_gpu resolves to " + std::to_string(b.micro_batch_per_gpu) +
                       "; it must be > 0 (" + given + "): train_batch_size is smaller than the ranks times the "
                       "accumulation steps"});
  }
  if (b.gradient_accumulation_steps <= 0) {
    throw ConfigError({"gradient_accumulation_steps resolves to " + std::to_string(b.gradient_accumulation_steps) +
                       "; it must be > 0 (" + given + "): train_batch_size is smaller than micro-batch x world size"});
  }
  if (b.train_batch_size != b.micro_batch_per_gpu * b.gradient_accumulation_steps * ws) {
    throw ConfigError({"train_batch_size " + std::to_string(b.train_batch_size) +
                       " != train_micro_batch_size_per_gpu " + std::to_string(b.micro_batch_per_gpu) +
                       " * gradient_accumulation_steps " + std::to_string(b.gradient_accumulation_steps) +
                       " * world_size " + std::to_string(ws) + " (= " +
                       std::to_string(b.micro_batch_per_gpu * b.gradient_accumulation_steps * ws) +
                       "); change one of them so that the product matches"});
  }
  return b;
}

}  // namespace zerotrain
