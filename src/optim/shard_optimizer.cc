// make_shard_optimizer: validates the hyperparameters the chosen optimizer reads and builds it. Configs parsed by
// Config are already validated with their JSON paths; these checks catch hand-built OptimizerConfigs (C++ API)
// before a kernel turns a bad value into silent NaNs.
#include "optim/shard_optimizer.h"

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "optim/optimizers.h"

namespace zerotrain::detail {
namespace {

const char* kind_name(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kNone:
      return "none";
    case OptimizerKind::kAdam:
      return "Adam";
    case OptimizerKind::kAdamW:
      return "AdamW";
    case OptimizerKind::kLamb:
      return "Lamb";
    case OptimizerKind::kLion:
      return "Lion";
    case OptimizerKind::kAdagrad:
      return "Adagrad";
    case OptimizerKind::kSGD:
      return "SGD";
    case OptimizerKind::kOther:
      return "other";
  }
  return "?";
}

std::string show(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// Collects every bad field, then throws them together (as Config does for JSON).
class FieldChecker {
 public:
  explicit FieldChecker(const OptimizerConfig& cfg) : cfg_(cfg) {}
  void require(bool ok, const char* field, double value, const char* allowed) {
    if (!ok) {
      errors_.push_back(std::string("optimizer ") + kind_name(cfg_.kind) + ": OptimizerConfig." + field + " = " +
                        show(value) + "; allowed: " + allowed);
    }
  }
  void finish() const {
    if (!errors_.empty()) throw ConfigError(errors_);
  }

 private:
  const OptimizerConfig& cfg_;
  std::vector<std::string> errors_;
};

bool finite_nonneg(double v) { return std::isfinite(v) && v >= 0; }
bool unit_interval(double v) { return v >= 0 && v < 1; }

void validate(const OptimizerConfig& cfg) {
  FieldChecker check(cfg);
  check.require(finite_nonneg(cfg.lr), "lr", cfg.lr, "a finite number >= 0");
  check.require(finite_nonneg(cfg.weight_decay), "weight_decay", cfg.weight_decay, "a finite number >= 0");
  const bool has_betas = cfg.kind == OptimizerKind::kAdam || cfg.kind == OptimizerKind::kAdamW ||
                         cfg.kind == OptimizerKind::kLamb || cfg.kind == OptimizerKind::kLion;
  if (has_betas) {
    check.require(unit_interval(cfg.betas[0]), "betas[0]", cfg.betas[0], "a number >= 0 and < 1");
    check.require(unit_interval(cfg.betas[1]), "betas[1]", cfg.betas[1], "a number >= 0 and < 1");
  }
  if (cfg.kind != OptimizerKind::kSGD && cfg.kind != OptimizerKind::kLion) {
    check.require(finite_nonneg(cfg.eps), "eps", cfg.eps, "a finite number >= 0");
  }
  if (cfg.kind == OptimizerKind::kSGD) {
    check.require(finite_nonneg(cfg.momentum), "momentum", cfg.momentum, "a finite number >= 0");
    check.require(std::isfinite(cfg.dampening), "dampening", cfg.dampening, "a finite number");
    if (cfg.nesterov) {
      check.require(cfg.momentum > 0, "momentum", cfg.momentum, "> 0 with nesterov (torch.optim.SGD)");
      check.require(cfg.dampening == 0, "dampening", cfg.dampening, "0 with nesterov (torch.optim.SGD)");
    }
  }
  if (cfg.kind == OptimizerKind::kAdagrad) {
    check.require(finite_nonneg(cfg.lr_decay), "lr_decay", cfg.lr_decay, "a finite number >= 0");
    check.require(finite_nonneg(cfg.initial_accumulator_value), "initial_accumulator_value",
                  cfg.initial_accumulator_value, "a finite number >= 0");
  }
  if (cfg.kind == OptimizerKind::kLamb) {
    check.require(finite_nonneg(cfg.min_coeff), "min_coeff", cfg.min_coeff, "a finite number >= 0");
    check.require(std::isfinite(cfg.max_coeff) && cfg.max_coeff >= cfg.min_coeff, "max_coeff", cfg.max_coeff,
                  "a finite number >= min_coeff");
  }
  check.finish();
}

}  // namespace

void check_step_inputs(const char* optimizer, const at::Tensor& param, const at::Tensor& grad, int64_t numel,
                       const at::Device& device, const StepArgs& args) {
  TORCH_CHECK(param.defined() && param.dim() == 1 && param.numel() == numel && param.scalar_type() == at::kFloat &&
                  param.is_contiguous() && param.device() == device,
              optimizer, ".step: param must be the contiguous (", numel, ",) fp32 shard on ", device,
              " the optimizer was built for; got ", param.defined() ? param.toString() : "undefined", " ",
              param.defined() ? param.sizes() : at::IntArrayRef{});
  TORCH_CHECK(grad.defined() && grad.sizes() == param.sizes() && grad.scalar_type() == at::kFloat &&
                  grad.is_contiguous() && grad.device() == device,
              optimizer, ".step: grad must be a contiguous (", numel, ",) fp32 tensor on ", device, "; got ",
              grad.defined() ? grad.toString() : "undefined", " ", grad.defined() ? grad.sizes() : at::IntArrayRef{});
  TORCH_CHECK(args.step >= 1, optimizer, ".step: StepArgs::step is 1-based; got ", args.step);
  TORCH_CHECK(std::isfinite(args.lr) && args.lr >= 0, optimizer, ".step: lr ", args.lr,
              "; allowed: a finite number >= 0");
  TORCH_CHECK(!args.beta1 || (*args.beta1 >= 0 && *args.beta1 < 1), optimizer, ".step: beta1 override ",
              args.beta1.value_or(0), "; allowed: a number >= 0 and < 1");
}

void ShardOptimizer::step_and_copy(at::Tensor& param, at::Tensor& grad, const StepArgs& args,
                                   const GradMultiplier& grad_multiplier, const std::vector<ParamCopyRange>& copies) {
  if (grad_multiplier.value != 1.0) grad.mul_(grad_multiplier.value);
  if (grad_multiplier.tensor.defined()) grad.mul_(grad_multiplier.tensor);
  step(param, grad, args);
  for (const ParamCopyRange& c : copies) c.dest.copy_(param.narrow(0, c.offset, c.dest.numel()));
}

void ShardOptimizer::step_piece(at::Tensor&, const at::Tensor&, const StepArgs&, double, int64_t, int64_t,
                                const at::Tensor&) {
  TORCH_CHECK(false, "step_piece: this optimizer steps the whole shard at once (steps_in_pieces() is false)");
}

std::unique_ptr<ShardOptimizer> make_shard_optimizer(const OptimizerConfig& cfg, const at::Tensor& param,
                                                     std::vector<ShardSegment> segments, int64_t num_params,
                                                     AllReduceSum allreduce, const StateFactory& make_state) {
  if (cfg.kind == OptimizerKind::kNone || cfg.kind == OptimizerKind::kOther) {
    throw ConfigError({"optimizer type \"" + cfg.type + "\" (" + kind_name(cfg.kind) +
                       "): zerotrain has no built-in optimizer for it; allowed: Adam, AdamW, Lamb, Lion, Adagrad, "
                       "SGD"});
  }
  validate(cfg);
  TORCH_CHECK(param.defined() && param.dim() == 1 && param.scalar_type() == at::kFloat && param.is_contiguous(),
              "make_shard_optimizer: the shard must be a contiguous 1-D fp32 tensor; got ",
              param.defined() ? param.toString() : "undefined", " ",
              param.defined() ? param.sizes() : at::IntArrayRef{});
  TORCH_CHECK(param.device().is_cpu() || param.device().is_cuda(), "make_shard_optimizer: shard on ", param.device(),
              "; allowed: cpu, cuda");
  switch (cfg.kind) {
    case OptimizerKind::kAdam:
    case OptimizerKind::kAdamW:
      return make_adam_optimizer(cfg, param, make_state);
    case OptimizerKind::kSGD:
      return make_sgd_optimizer(cfg, param, make_state);
    case OptimizerKind::kLion:
      return make_lion_optimizer(cfg, param, make_state);
    case OptimizerKind::kAdagrad:
      return make_adagrad_optimizer(cfg, param, make_state);
    case OptimizerKind::kLamb:
      return make_lamb_optimizer(cfg, param, std::move(segments), num_params, std::move(allreduce));
    case OptimizerKind::kNone:
    case OptimizerKind::kOther:
      break;
  }
  TORCH_INTERNAL_ASSERT(false, "unhandled OptimizerKind ", static_cast<int>(cfg.kind));
}

}  // namespace zerotrain::detail
