// The Engine: orchestration only. Sharding math lives in src/zero/, precision in src/precision/, optimizers in
// src/optim/, schedules in src/lr/.
#include "zerotrain/engine.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/variable.h>

#include <cctype>
#include <unordered_set>

#include "lr/lr_schedule.h"
#include "zero/flat_layout.h"
#include "zero/grad_reducer.h"
#include "zero/zero_optimizer.h"
#include "zerotrain/dtype.h"

namespace zerotrain {
namespace {

bool looks_like_json(const std::string& s) {
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    return c == '{';
  }
  return false;
}

c10::Device default_device(const Comm& comm) {
  if (at::hasCUDA() && comm.backend() != "mpi") return c10::Device(c10::kCUDA, rank_info_from_env().local_rank);
  return c10::Device(c10::kCPU);
}

}  // namespace

struct Engine::Impl {
  std::shared_ptr<Comm> comm;
  std::optional<Config> config;
  std::shared_ptr<torch::nn::Module> model;
  c10::Device device{c10::kCPU};
  at::ScalarType dtype = at::kFloat;
  std::vector<at::Tensor> params;  // trainable, registration order, shared parameters once
  std::unique_ptr<detail::FlatLayout> layout;
  at::Tensor param_flat;           // (total_numel,) training dtype, device: the parameters' storage
  std::unique_ptr<detail::GradReducer> reducer;
  std::unique_ptr<detail::ZeroOptimizer> optimizer;
  std::unique_ptr<detail::LrSchedule> schedule;
  int64_t micro_steps = 0;
  int64_t global_steps = 0;
  std::optional<double> last_grad_norm;
  bool in_backward = false;

  int64_t completed_schedule_steps() const { return optimizer->applied_steps(); }
  double lr() const {
    return schedule ? schedule->lr(completed_schedule_steps()) : config->optimizer().lr;
  }
};

Engine::Engine(std::shared_ptr<torch::nn::Module> model, torch::nn::AnyModule forward, const std::string& config,
               EngineOptions options)
    : impl_(std::make_unique<Impl>()), forward_(std::move(forward)) {
  Impl& m = *impl_;
  TORCH_CHECK(model != nullptr, "zerotrain::initialize: model is null");
  m.comm = options.comm ? options.comm : make_comm(options.comm_options);
  RunInfo run = options.run;
  run.world_size = m.comm->world_size();
  m.config = looks_like_json(config) ? Config::from_string(config, run) : Config::from_file(config, run);
  const Config& cfg = *m.config;
  cfg.require_supported();
  if (cfg.optimizer().kind == OptimizerKind::kNone) {
    throw ConfigError({"optimizer: the config has no \"optimizer\" section; the C++ engine builds the optimizer from "
                       "it (e.g. \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-4}})"});
  }
  const int stage = cfg.zero().stage;
  m.model = std::move(model);
  m.device = options.device.value_or(default_device(*m.comm));
  m.dtype = to_scalar_type(cfg.precision());
  m.model->to(m.device, m.dtype);  // floating parameters and buffers, as DeepSpeed casts the module

  // Trainable parameters once each (tied weights are one tensor), in registration order.
  std::unordered_set<const void*> seen;
  std::vector<at::Tensor> frozen;
  for (auto& p : m.model->parameters(/*recurse=*/true)) {
    if (!seen.insert(p.unsafeGetTensorImpl()).second) continue;
    (p.requires_grad() ? m.params : frozen).push_back(p);
  }
  TORCH_CHECK(!m.params.empty(), "zerotrain::initialize: the model has no trainable parameters");
  const int world = m.comm->world_size();
  std::vector<int64_t> numels;
  for (auto& p : m.params) numels.push_back(p.numel());
  // Stage 0 shards nothing: every rank owns every bucket.
  m.layout = std::make_unique<detail::FlatLayout>(numels, stage == 0 ? 1 : world, stage == 0 ? 0 : m.comm->rank(),
                                                  cfg.zero().reduce_bucket_size);

  {
    at::NoGradGuard no_grad;
    // Parameters become views into one flat buffer; rank 0's values win (DeepSpeed broadcasts the model too).
    m.param_flat = at::zeros({m.layout->total_numel()}, m.params.front().options());
    for (size_t i = 0; i < m.params.size(); ++i) {
      const auto& slot = m.layout->slots()[i];
      at::Tensor view = m.param_flat.narrow(0, slot.offset, slot.numel);
      view.copy_(m.params[i].reshape({-1}));
      m.params[i].set_data(view.view(m.params[i].sizes()));
    }
    m.comm->broadcast(m.param_flat, 0);
    for (auto& p : frozen) {
      at::Tensor c = p.contiguous();
      m.comm->broadcast(c, 0);
      if (!c.is_same(p)) p.copy_(c);
    }
    for (auto& b : m.model->buffers(/*recurse=*/true)) {
      if (!b.is_contiguous()) continue;
      m.comm->broadcast(b, 0);
    }
  }

  // Gradient averaging: DeepSpeed's prescale_gradients / gradient_predivide_factor / gradient_allreduce_op.
  detail::ReduceSettings rs;
  rs.stage = stage;
  rs.overlap_comm = cfg.zero().overlap_comm;
  rs.comm_dtype = communication_dtype(cfg);
  const auto& g = cfg.gradients();
  if (!g.allreduce_sum) {
    if (g.prescale) {
      rs.pre_scale = 1.0 / world;
    } else {
      rs.pre_scale = 1.0 / g.predivide_factor;
      rs.post_scale = g.predivide_factor / world;
    }
  }
  m.reducer = std::make_unique<detail::GradReducer>(*m.layout, m.params, m.comm, rs);
  m.optimizer = std::make_unique<detail::ZeroOptimizer>(*m.layout, m.param_flat, m.comm, cfg, /*sharded=*/stage >= 1);
  m.schedule = detail::make_lr_schedule(cfg.scheduler(), cfg.optimizer().lr);
}

Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;

at::Tensor Engine::cast_tensor(const at::Tensor& t) const {
  const Config& cfg = *impl_->config;
  at::Tensor out = t.device() == impl_->device ? t : t.to(impl_->device);
  if (cfg.fp16().enabled && cfg.fp16().auto_cast && out.is_floating_point()) out = out.to(at::kHalf);
  return out;
}

void Engine::backward(const at::Tensor& loss) {
  Impl& m = *impl_;
  TORCH_CHECK(loss.defined() && loss.numel() == 1, "Engine::backward: loss must be a scalar tensor, got shape ",
              loss.defined() ? loss.sizes() : at::IntArrayRef{});
  TORCH_CHECK(loss.requires_grad(), "Engine::backward: loss does not require grad (was it computed under no_grad?)");
  const double factor = m.optimizer->loss_scale() / static_cast<double>(gradient_accumulation_steps());
  m.reducer->begin_backward(is_gradient_accumulation_boundary());
  m.in_backward = true;
  try {
    (loss.to(at::kFloat) * factor).backward();
  } catch (...) {
    m.in_backward = false;
    throw;
  }
  m.reducer->end_backward();
  m.in_backward = false;
}

void Engine::step() {
  Impl& m = *impl_;
  if (is_gradient_accumulation_boundary()) {
    const double lr = m.lr();
    // OneCycle cycles beta1 only for optimizers with betas; DeepSpeed turns cycle_momentum off for SGD/Adagrad.
    const auto kind = m.config->optimizer().kind;
    const bool has_betas = kind != OptimizerKind::kSGD && kind != OptimizerKind::kAdagrad;
    const auto beta1 =
        m.schedule && has_betas ? m.schedule->momentum(m.completed_schedule_steps()) : std::optional<double>();
    const auto result = m.optimizer->step(m.reducer->grad_shard(), lr, beta1);
    m.reducer->zero();
    m.last_grad_norm = result.grad_norm;
    ++m.global_steps;
  }
  ++m.micro_steps;
}

bool Engine::is_gradient_accumulation_boundary() const {
  return (impl_->micro_steps + 1) % gradient_accumulation_steps() == 0;
}

void Engine::zero_grad() {
  for (auto& p : impl_->params) {
    if (p.grad().defined()) p.mutable_grad().reset();
  }
}

std::optional<double> Engine::get_global_grad_norm() const { return impl_->last_grad_norm; }
double Engine::get_lr() const { return impl_->lr(); }
double Engine::loss_scale() const { return impl_->optimizer->loss_scale(); }
int64_t Engine::train_batch_size() const { return impl_->config->batch().train_batch_size; }
int64_t Engine::train_micro_batch_size_per_gpu() const { return impl_->config->batch().micro_batch_per_gpu; }
int64_t Engine::gradient_accumulation_steps() const { return impl_->config->batch().gradient_accumulation_steps; }
int64_t Engine::global_steps() const { return impl_->global_steps; }
int64_t Engine::global_samples() const { return impl_->global_steps * train_batch_size(); }
int64_t Engine::skipped_steps() const { return impl_->optimizer->skipped_steps(); }
int64_t Engine::micro_steps() const { return impl_->micro_steps; }
const Config& Engine::config() const { return *impl_->config; }
Comm& Engine::comm() const { return *impl_->comm; }
c10::Device Engine::device() const { return impl_->device; }
torch::nn::Module& Engine::module() const { return *impl_->model; }

}  // namespace zerotrain
