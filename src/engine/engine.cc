// The Engine: orchestration only. Sharding math lives in src/zero/, precision in src/precision/, optimizers in
// src/optim/, schedules in src/lr/.
#include "zerotrain/engine.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/variable.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "checkpoint/checkpoint.h"
#include "checkpoint/safetensors.h"
#include "comm/comms_logger.h"
#include "engine/autotuning_probe.h"
#include "engine/flops_profiler.h"
#include "engine/host_clock.h"
#include "engine/memory_report.h"
#include "engine/monitor.h"
#include "engine/wall_clock.h"
#include "lr/lr_schedule.h"
#include "zero/flat_layout.h"
#include "zero/grad_reducer.h"
#include "zero/param_units.h"
#include "zero/stage3_plan.h"
#include "torch/storage.h"
#include "zero/zero_optimizer.h"
#include "zerotrain/comms_logging.h"
#include "zerotrain/dtype.h"
#include "zerotrain/segmented.h"

namespace zerotrain {
namespace {

c10::Device default_device(const Comm& comm) {
  if (at::hasCUDA() && comm.backend() != "mpi" && comm.backend() != "gloo") return c10::Device(c10::kCUDA, rank_info_from_env().local_rank);
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
  std::vector<std::string> param_names;  // their (first) names in named_parameters
  std::unique_ptr<detail::FlatLayout> layout;
  at::Tensor param_flat;           // stages 0-2: (total_numel,) training dtype, device: the parameters' storage
  std::unique_ptr<detail::ParamUnits> units;  // stage 3
  bool whole_module_unit = false;  // stage 3 without segments: gather everything for forward and backward
  std::shared_ptr<Segmented> segmented;  // set when the engine installed a segment runner on it
  std::unique_ptr<detail::GradReducer> reducer;
  std::unique_ptr<detail::ZeroOptimizer> optimizer;
  std::unique_ptr<detail::LrSchedule> schedule;
  int64_t micro_steps = 0;
  int64_t global_steps = 0;
  int64_t since_step = 0;                  // micro-steps since the last optimizer step (gradients accumulated)
  std::optional<bool> boundary_override;  // set_gradient_accumulation_boundary
  at::Tensor last_grad_norm;  // 0-dim double on the device (StepResult::grad_norm); undefined before a step
  bool in_backward = false;
  std::unique_ptr<detail::AutotuningProbe> probe;  // an autotuning experiment's measuring, else null
  std::unique_ptr<detail::Monitor> monitor;        // csv_monitor / tensorboard on rank 0, else null
  at::Tensor loss_sum;                             // with a monitor: the step's loss / gas, summed on the device
  std::unique_ptr<detail::WallClock> clock;        // wall_clock_breakdown's timers, else null
  std::map<std::string, double> clock_cache;       // their values at the last step() (wall_clock_timers())
  std::unique_ptr<detail::FlopsProfiler> profiler;  // flops_profiler on rank 0, else null
  bool memory_breakdown = false;                     // memory_breakdown on rank 0: see_memory_usage at each phase
  void memory(const char* message) const {
    // An autotuning experiment measures the peak itself: then the lines leave it alone.
    if (memory_breakdown) detail::see_memory_usage(message, device, /*reset_peak=*/probe == nullptr);
  }
  // A segment run by the engine's runner: the flops profiler (while it counts a forward) attributes its operators
  // to the segment's module.
  template <typename Run>
  at::Tensor profiled_segment(int64_t index, Run&& run) {
    const bool counting = profiler && profiler->counting();
    if (counting) profiler->enter_segment(index);
    at::Tensor out = run();
    if (counting) profiler->exit();
    return out;
  }

  ~Impl() {
    if (segmented) segmented->set_segment_runner({});  // the runner points into this engine
  }

  int64_t completed_schedule_steps() const { return optimizer->applied_steps(); }
  std::optional<double> client_lr;  // set_lr: a client schedule's value, in place of the config's
  double lr() const {
    if (client_lr) return *client_lr;
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
  m.config = Config::from_path_or_text(config, run);
  const Config& cfg = *m.config;
  cfg.require_supported();
  detail::Monitor::require_clients(cfg.monitor(), static_cast<bool>(options.monitor_sink));
  // comms_logger: every collective from here on goes through the logging communicator (init's broadcasts too).
  if (cfg.logging().comms_logger.enabled) {
    configure_comms_logger(cfg.logging().comms_logger);
    m.comm = detail::make_logged_comm(m.comm);
  }
  detail::CommCaller caller("Engine::Engine");
  // Settings that have no effect here, deprecated keys mapped: said once, by rank 0 (`zerotrain config check` lists
  // them too).
  if (m.comm->rank() == 0) {
    for (const auto& w : cfg.warnings()) fmt::print(stderr, "zerotrain: config warning: {}\n", w);
  }
  if (cfg.optimizer().kind == OptimizerKind::kNone) {
    throw ConfigError({"optimizer: the config has no \"optimizer\" section; the C++ engine builds the optimizer from "
                       "it (e.g. \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 1e-4}})"});
  }
  const int stage = cfg.zero().stage;
  m.model = std::move(model);
  m.device = options.device.value_or(default_device(*m.comm));
  m.dtype = to_scalar_type(cfg.precision());
  // A deferred model (parameters without data) is materialized on the device by the stage-3 units.
  std::unordered_map<const void*, std::string> names;
  for (const auto& item : m.model->named_parameters(/*recurse=*/true)) {
    names.emplace(item.value().unsafeGetTensorImpl(), item.key());
  }
  auto initializer = std::dynamic_pointer_cast<DeferredInit>(m.model);
  for (const auto& item : m.model->named_parameters(/*recurse=*/true)) {
    if (!detail::holds_no_data(item.value())) continue;
    if (stage != 3) {
      throw std::invalid_argument("zerotrain::initialize: parameter " + item.key() +
                                  " holds no data (a deferred model, e.g. make_model_deferred); such models are "
                                  "materialized only by ZeRO stage 3, but zero_optimization.stage is " +
                                  std::to_string(stage));
    }
    if (!initializer) {
      throw std::invalid_argument("zerotrain::initialize: parameter " + item.key() +
                                  " holds no data and the model cannot initialize it (it does not derive from "
                                  "zerotrain::DeferredInit)");
    }
  }
  {
    // Floating-point tensors take the training dtype (buffers only with cast_buffers), the rest keep theirs. At
    // stage 3 trainable parameters stay where they are: they go to the device unit by unit (ParamUnits), so a
    // model that does not fit on one device can be built on the host and partitioned.
    at::NoGradGuard no_grad;
    auto move = [&](at::Tensor& t, bool cast) {
      if (!t.defined()) return;
      const auto dtype = cast && t.is_floating_point() ? m.dtype : t.scalar_type();
      if (detail::holds_no_data(t)) {  // a deferred frozen parameter: created and initialized here, replicated
        at::Tensor value = at::empty(t.sizes(), t.options().device(m.device).dtype(dtype));
        initializer->init_parameter(names.at(t.unsafeGetTensorImpl()), value);
        t.set_data(value);
        return;
      }
      if (t.device() != m.device || t.scalar_type() != dtype) t.set_data(t.to(m.device, dtype));
    };
    std::unordered_set<const void*> moved;
    for (auto& p : m.model->parameters(/*recurse=*/true)) {
      if ((stage != 3 || !p.requires_grad()) && moved.insert(p.unsafeGetTensorImpl()).second) move(p, true);
    }
    for (auto& b : m.model->buffers(/*recurse=*/true)) {
      if (moved.insert(b.unsafeGetTensorImpl()).second) move(b, options.cast_buffers);
    }
  }

  // Trainable parameters once each (tied weights are one tensor), in registration order.
  std::unordered_set<const void*> seen;
  std::vector<at::Tensor> frozen;
  for (auto& p : m.model->parameters(/*recurse=*/true)) {
    if (!seen.insert(p.unsafeGetTensorImpl()).second) continue;
    (p.requires_grad() ? m.params : frozen).push_back(p);
  }
  TORCH_CHECK(!m.params.empty(), "zerotrain::initialize: the model has no trainable parameters");
  for (const auto& p : m.params) m.param_names.push_back(names.at(p.unsafeGetTensorImpl()));
  const int world = m.comm->world_size();
  std::vector<int64_t> numels;
  for (auto& p : m.params) numels.push_back(p.numel());
  auto segmented = std::dynamic_pointer_cast<Segmented>(m.model);
  const bool checkpoint = options.activation_checkpointing && segmented;

  at::NoGradGuard no_grad;
  if (stage == 3) {
    const auto& z = cfg.zero();
    const detail::Stage3Plan plan = detail::plan_stage3(
        m.params, segmented ? segmented->segment_parameters() : std::vector<std::vector<at::Tensor>>{},
        {z.param_persistence_threshold, z.model_persistence_threshold,
         detail::merge_numel_for(z.module_granularity_threshold, z.prefetch_bucket_size, z.max_live_parameters),
         int64_t{world} * detail::kChunkAlign});
    m.layout = std::make_unique<detail::FlatLayout>(numels, plan.groups, world, m.comm->rank(), z.reduce_bucket_size);
    m.units = std::make_unique<detail::ParamUnits>(
        *m.layout, m.params, plan.persistent, m.comm,
        detail::UnitSettings{z.prefetch_bucket_size, z.max_live_parameters, z.max_reuse_distance,
                             // offloaded optimizer: the device keeps the shard in the training dtype only
                             z.offload_optimizer.device != OffloadDevice::kNone ? m.dtype : at::kFloat,
                             // parameter offload with the optimizer's: the training-dtype shard on the host (alone
                             // there is no such shard to move: a config warning says so)
                             z.offload_param.device != OffloadDevice::kNone &&
                                 z.offload_optimizer.device != OffloadDevice::kNone,
                             z.offload_param.pin_memory,
                             z.offload_param.device == OffloadDevice::kNvme &&
                                     z.offload_optimizer.device != OffloadDevice::kNone
                                 ? z.offload_param.nvme_path
                                 : std::string(),
                             z.quantized_weights},
        at::TensorOptions().device(m.device).dtype(m.dtype), [&](int p, at::Tensor& value) {
          initializer->init_parameter(m.param_names[p], value);
        });
    if (segmented && !plan.segment_units.empty()) {
      m.units->set_segments(plan.segment_units);
      const int64_t count = static_cast<int64_t>(plan.segment_units.size());
      Segmented* seg = segmented.get();
      segmented->set_segment_runner([impl = &m, units = m.units.get(), checkpoint, count, seg](
                                        int64_t index, const SegmentFn& fn, const at::Tensor& input) {
        TORCH_CHECK(index >= 0 && index < count, "run_segment: segment ", index, " is not one of the ", count,
                    " segments segment_parameters() listed");
        return impl->profiled_segment(index, [&] {
          return units->run_segment(static_cast<int>(index), fn, input, checkpoint && seg->checkpointable(index));
        });
      });
      m.segmented = segmented;
    } else {
      m.whole_module_unit = true;
    }
  } else {
    // Stage 0 shards nothing: every rank owns every bucket.
    m.layout = std::make_unique<detail::FlatLayout>(numels, stage == 0 ? 1 : world, stage == 0 ? 0 : m.comm->rank(),
                                                    cfg.zero().reduce_bucket_size);
    // Parameters become views into one flat buffer; rank 0's values win (DeepSpeed broadcasts the model too).
    m.param_flat = at::zeros({m.layout->total_numel()}, m.params.front().options());
    for (size_t i = 0; i < m.params.size(); ++i) {
      const auto& slot = m.layout->slots()[i];
      at::Tensor view = m.param_flat.narrow(0, slot.offset, slot.numel);
      view.copy_(m.params[i].reshape({-1}));
      m.params[i].set_data(view.view(m.params[i].sizes()));
    }
    m.comm->broadcast(m.param_flat, 0);
    // A runner for activation checkpointing, or for the flops profiler (rank 0) to know which segment runs.
    if (checkpoint || (segmented && cfg.logging().flops_profiler.enabled && m.comm->rank() == 0)) {
      Segmented* seg = segmented.get();
      segmented->set_segment_runner([impl = &m, seg, checkpoint](int64_t index, const SegmentFn& fn,
                                                                 const at::Tensor& input) {
        return impl->profiled_segment(index, [&] {
          return checkpoint && seg->checkpointable(index) ? detail::checkpoint_segment(fn, input) : fn(input);
        });
      });
      m.segmented = segmented;
    }
  }
  for (auto& p : frozen) {
    at::Tensor c = p.contiguous();
    m.comm->broadcast(c, 0);
    if (!c.is_same(p)) p.copy_(c);
  }
  for (auto& b : m.model->buffers(/*recurse=*/true)) {
    if (!b.is_contiguous()) continue;
    m.comm->broadcast(b, 0);
  }

  // Gradient averaging: DeepSpeed's prescale_gradients / gradient_predivide_factor / gradient_allreduce_op.
  detail::ReduceSettings rs;
  rs.stage = stage;
  rs.overlap_comm = cfg.zero().overlap_comm;
  rs.comm_dtype = communication_dtype(cfg);
  // Stage 3's buckets are its units': small ones are reduced together, about as many elements per collective as a
  // prefetch batch gathers (ParamUnits::prefetch).
  if (stage == 3) rs.coalesce_numel = cfg.zero().prefetch_bucket_size / 2;
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
  const auto placement = stage == 0   ? detail::ParamPlacement::kReplicated
                         : stage <= 2 ? detail::ParamPlacement::kGathered
                                      : detail::ParamPlacement::kShardOnly;
  // EngineOptions' per-parameter values, by trainable parameter (frozen ones are skipped: not trained).
  const auto per_parameter = [&](const std::vector<std::pair<at::Tensor, double>>& given, const char* what) {
    std::vector<std::optional<double>> values;
    if (given.empty()) return values;
    std::unordered_map<const void*, size_t> index;
    for (size_t i = 0; i < m.params.size(); ++i) index[m.params[i].unsafeGetTensorImpl()] = i;
    std::unordered_set<const void*> frozen_ids;
    for (const auto& p : frozen) frozen_ids.insert(p.unsafeGetTensorImpl());
    values.resize(m.params.size());
    for (const auto& [param, value] : given) {
      const void* id = param.defined() ? param.unsafeGetTensorImpl() : nullptr;
      if (frozen_ids.count(id)) continue;
      auto it = index.find(id);
      if (it == index.end()) {
        throw std::invalid_argument(std::string("EngineOptions::") + what + ": a tensor of shape " +
                                    (param.defined() ? c10::str(param.sizes()) : std::string("(undefined)")) +
                                    " is not a parameter of the model; allowed: the model's parameters");
      }
      values[it->second] = value;
    }
    return values;
  };
  m.optimizer = std::make_unique<detail::ZeroOptimizer>(
      *m.layout, stage == 3 ? m.units->shard() : m.param_flat, m.comm, cfg, placement,
      per_parameter(options.weight_decay, "weight_decay"), per_parameter(options.lr_scale, "lr_scale"));
  if (stage == 3 && m.units->shard_swap()) {  // parameters on NVMe: the step writes them back piece by piece too
    m.optimizer->add_swap(m.units->shard_swap());
    m.optimizer->evict_swapped();
  }
  m.schedule = detail::make_lr_schedule(cfg.scheduler(), cfg.optimizer().lr);

  detail::ProbeFacts facts;
  for (const auto& p : m.model->parameters(/*recurse=*/true)) {
    facts.num_params += p.numel();
    if (p.requires_grad()) facts.trainable_params += p.numel();
  }
  facts.rank = m.comm->rank();
  facts.world_size = m.comm->world_size();
  facts.device = m.device;
  facts.train_batch_size = cfg.batch().train_batch_size;
  facts.micro_batch_per_gpu = cfg.batch().micro_batch_per_gpu;
  facts.gradient_accumulation_steps = cfg.batch().gradient_accumulation_steps;
  facts.zero_stage = stage;
  facts.flops_per_sample = options.flops_per_sample;
  m.probe = detail::AutotuningProbe::make(cfg.autotuning(), facts);
  if (m.comm->rank() == 0) m.monitor = detail::Monitor::make(cfg.monitor(), options.monitor_sink);
  // The engine timers: wall_clock_breakdown's, or the global ones the flops profiler reads (as in DeepSpeed).
  const auto& fp = cfg.logging().flops_profiler;
  if (cfg.logging().wall_clock_breakdown || fp.enabled) {
    m.clock = std::make_unique<detail::WallClock>(m.device, /*micro=*/cfg.logging().wall_clock_breakdown);
  }
  m.memory_breakdown = cfg.logging().memory_breakdown && m.comm->rank() == 0;
  m.memory("Engine after initialize");
  if (fp.enabled && m.comm->rank() == 0) {
    m.profiler = std::make_unique<detail::FlopsProfiler>(
        fp, *m.model, segmented ? segmented->segment_parameters() : std::vector<std::vector<at::Tensor>>{}, m.device);
  }
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
  detail::HostScope host;
  Impl& m = *impl_;
  TORCH_CHECK(loss.defined() && loss.numel() == 1, "Engine::backward: loss must be a scalar tensor, got shape ",
              loss.defined() ? loss.sizes() : at::IntArrayRef{});
  TORCH_CHECK(loss.requires_grad(), "Engine::backward: loss does not require grad (was it computed under no_grad?)");
  if (m.probe) m.probe->on_backward();
  if (m.monitor) {
    const at::Tensor l = loss.detach().to(at::kFloat) / static_cast<double>(gradient_accumulation_steps());
    m.loss_sum = m.loss_sum.defined() ? m.loss_sum + l : l;
  }
  m.memory("Engine before backward");
  if (m.clock) m.clock->start(detail::WallClock::kBackward);
  const double factor = m.optimizer->loss_scale() / static_cast<double>(gradient_accumulation_steps());
  m.reducer->begin_backward(is_gradient_accumulation_boundary());
  m.in_backward = true;
  if (m.whole_module_unit) m.units->acquire_all();
  if (m.clock) m.clock->start(detail::WallClock::kBackwardInner);
  try {
    detail::HostPause model_backward;  // the model's backward; the engine's hooks in it count themselves
    (loss.to(at::kFloat) * factor).backward();
  } catch (...) {
    m.in_backward = false;
    if (m.whole_module_unit) m.units->release_all();
    if (m.clock) {
      m.clock->stop(detail::WallClock::kBackwardInner);
      m.clock->stop(detail::WallClock::kBackward);
    }
    throw;
  }
  if (m.clock) {
    m.clock->stop(detail::WallClock::kBackwardInner);
    m.clock->start(detail::WallClock::kBackwardReduce);
  }
  m.reducer->end_backward();
  if (m.whole_module_unit) m.units->release_all();
  if (m.units) m.units->end_backward();
  m.in_backward = false;
  if (m.clock) {
    m.clock->stop(detail::WallClock::kBackwardReduce);
    m.clock->stop(detail::WallClock::kBackward);
  }
  m.memory("Engine after backward");
}

void Engine::begin_forward() {
  detail::HostScope host;
  impl_->memory("Engine before forward");
  if (impl_->clock) impl_->clock->start(detail::WallClock::kForward);
  if (impl_->profiler) impl_->profiler->begin_forward(impl_->global_steps, impl_->since_step == 0);
  if (impl_->whole_module_unit) impl_->units->acquire_all();
}

void Engine::begin_segment(int64_t index, bool record) {
  Impl& m = *impl_;
  if (m.profiler && !m.in_backward) m.profiler->enter_segment(index);
  if (!m.units || m.whole_module_unit) return;
  m.units->begin_segment(static_cast<int>(index), record, /*recompute=*/m.in_backward);
}

at::Tensor Engine::segment_input(const at::Tensor& x, bool sole) {
  Impl& m = *impl_;
  return !m.units || m.whole_module_unit ? x : m.units->segment_input(x, sole);
}

void Engine::segment_output(const at::Tensor& y) {
  Impl& m = *impl_;
  if (m.units && !m.whole_module_unit) m.units->segment_output(y);
}

void Engine::end_segment() {
  Impl& m = *impl_;
  if (m.profiler && !m.in_backward) m.profiler->exit();
  if (m.units && !m.whole_module_unit) m.units->end_segment();
}

void Engine::end_forward() noexcept {
  detail::HostScope host;
  if (impl_->whole_module_unit) impl_->units->release_all();
  if (impl_->profiler) {
    try {
      impl_->profiler->end_forward();
    } catch (...) {  // recording an event failed: the device is in error, which the next call reports
    }
  }
  if (impl_->clock) {
    try {
      impl_->clock->stop(detail::WallClock::kForward);
    } catch (...) {  // recording an event failed: the device is in error, which the next call reports
    }
  }
  try {
    impl_->memory("Engine after forward");
  } catch (...) {  // printing failed: nothing to report it to
  }
}

void Engine::step() {
  detail::HostScope host;
  Impl& m = *impl_;
  m.memory("Engine before step");
  if (m.clock) m.clock->start(detail::WallClock::kStep);
  const bool boundary = is_gradient_accumulation_boundary();
  // Written last, when the engine's state is whole: a monitor sink may throw (a Python client's error).
  std::vector<detail::MonitorEvent> events;
  if (boundary) {
    const double lr = m.lr();
    // OneCycle cycles beta1 only for optimizers with betas; DeepSpeed turns cycle_momentum off for SGD/Adagrad.
    const auto kind = m.config->optimizer().kind;
    const bool has_betas = kind != OptimizerKind::kSGD && kind != OptimizerKind::kAdagrad;
    const auto beta1 =
        m.schedule && has_betas ? m.schedule->momentum(m.completed_schedule_steps()) : std::optional<double>();
    const auto result = m.optimizer->step(m.reducer->grad_shard(), lr, beta1);
    if (m.units && !result.skipped) m.units->after_step();
    m.reducer->zero();
    m.last_grad_norm = result.grad_norm;
    ++m.global_steps;
    m.since_step = -1;
    if (m.monitor) {
      // DeepSpeed's events: the loss at the samples trained before this step, the others after it.
      const int64_t tbs = train_batch_size();
      if (m.loss_sum.defined()) {
        events.push_back({"Train/Samples/train_loss", m.loss_sum.item<double>(), (m.global_steps - 1) * tbs});
      }
      events.push_back({"Train/Samples/lr", m.lr(), m.global_steps * tbs});
      if (m.config->precision() == Precision::kFp16) {
        events.push_back({"Train/Samples/loss_scale", m.optimizer->loss_scale(), m.global_steps * tbs});
      }
      m.loss_sum = at::Tensor();
    }
  }
  ++m.micro_steps;
  ++m.since_step;
  if (m.clock) log_wall_clock(boundary, events);
  if (m.monitor && !events.empty()) m.monitor->write(events);
  m.memory("Engine after step");
  if (m.probe && m.since_step == 0) m.probe->after_step(m.global_steps);
}

void Engine::log_wall_clock(bool boundary, std::vector<MonitorEvent>& events) {
  Impl& m = *impl_;
  m.clock->stop(detail::WallClock::kStep);
  // As DeepSpeed: the cache users read, the micro timers' line every step, the global ones' at the boundary (with
  // a monitor, their values as events first).
  m.clock_cache = m.clock->elapsed_ms();
  const bool rank0 = m.comm->rank() == 0;
  if (m.profiler && m.profiler->report_due()) {
    detail::ProfileFacts facts;
    facts.world_size = m.comm->world_size();
    facts.micro_batch_per_gpu = train_micro_batch_size_per_gpu();
    facts.fwd_ms = m.clock_cache["fwd"];
    facts.bwd_ms = m.clock_cache["bwd"];
    facts.step_ms = m.clock_cache["step"];
    facts.have_bwd = true;
    m.profiler->report(facts);
  }
  const std::string micro = m.clock->log(/*global=*/false);
  if (rank0 && !micro.empty()) fmt::print("[Rank 0] {}\n", micro);
  if (boundary) {
    if (m.monitor) {
      static const std::pair<const char*, const char*> kEvents[] = {
          {"fwd", "forward"}, {"bwd", "backward"}, {"bwd_inner", "backward_inner"},
          {"bwd_allreduce", "backward_allreduce"}, {"step", "step"}};
      for (const auto& [timer, event] : kEvents) {
        if (auto it = m.clock_cache.find(timer); it != m.clock_cache.end()) {
          events.push_back({std::string("Train/Samples/elapsed_time_ms_") + event, it->second, global_samples()});
        }
      }
    }
    const std::string global = m.clock->log(/*global=*/true);
    if (rank0 && !global.empty()) fmt::print("[Rank 0] {}\n", global);
  }
  if (rank0) std::fflush(stdout);
}

void Engine::write_monitor_events(const std::vector<MonitorEvent>& events) {
  detail::HostScope host;
  if (impl_->monitor) impl_->monitor->write(events);
}

std::map<std::string, double> Engine::wall_clock_timers() const {
  return impl_->config->logging().wall_clock_breakdown ? impl_->clock_cache : std::map<std::string, double>{};
}

bool Engine::flops_profile_pending() const {
  const Impl& m = *impl_;
  return m.profiler && !m.profiler->report_due() && m.global_steps == m.config->logging().flops_profiler.profile_step &&
         m.since_step == 0;
}

void Engine::begin_module(const std::string& qualified_name) {
  if (impl_->profiler && !impl_->in_backward) impl_->profiler->enter_module(qualified_name);
}

void Engine::end_module() {
  if (impl_->profiler && !impl_->in_backward) impl_->profiler->exit();
}

int64_t Engine::flops_profile_macs(const std::string& qualified_name) const {
  return impl_->profiler ? impl_->profiler->macs_of(qualified_name) : 0;
}

bool Engine::is_gradient_accumulation_boundary() const {
  if (impl_->boundary_override) return *impl_->boundary_override;
  return (impl_->micro_steps + 1) % gradient_accumulation_steps() == 0;
}

void Engine::set_gradient_accumulation_boundary(std::optional<bool> is_boundary) {
  TORCH_CHECK(!impl_->in_backward, "set_gradient_accumulation_boundary: called during backward; allowed: before it");
  impl_->boundary_override = is_boundary;
}

void Engine::zero_grad() {
  detail::HostScope host;
  for (auto& p : impl_->params) {
    if (p.grad().defined()) p.mutable_grad().reset();
  }
}

std::optional<double> Engine::get_global_grad_norm() const {
  if (!impl_->last_grad_norm.defined()) return std::nullopt;
  return impl_->last_grad_norm.item<double>();
}
at::Tensor Engine::get_global_grad_norm_tensor() const {
  // A copy: the caller may change it in place; the engine's stays what the step computed.
  return impl_->last_grad_norm.defined() ? impl_->last_grad_norm.clone() : at::Tensor();
}
double Engine::get_lr() const { return impl_->lr(); }

void Engine::set_lr(double lr) {
  if (!std::isfinite(lr) || lr < 0) {
    throw std::invalid_argument("set_lr: learning rate " + std::to_string(lr) +
                                " is invalid; allowed: a finite number >= 0");
  }
  impl_->client_lr = lr;
}
double Engine::loss_scale() const { return impl_->optimizer->loss_scale(); }
void Engine::set_flops_per_sample(double flops) {
  if (!std::isfinite(flops) || flops <= 0) {
    throw std::invalid_argument("set_flops_per_sample: " + std::to_string(flops) + " is invalid; allowed: a finite "
                                "number > 0");
  }
  if (impl_->probe) impl_->probe->set_flops_per_sample(flops);
}
int64_t Engine::train_batch_size() const { return impl_->config->batch().train_batch_size; }
int64_t Engine::train_micro_batch_size_per_gpu() const { return impl_->config->batch().micro_batch_per_gpu; }
int64_t Engine::gradient_accumulation_steps() const { return impl_->config->batch().gradient_accumulation_steps; }
int64_t Engine::global_steps() const { return impl_->global_steps; }
int64_t Engine::global_samples() const { return impl_->global_steps * train_batch_size(); }
int64_t Engine::skipped_steps() const { return impl_->optimizer->skipped_steps(); }
int64_t Engine::micro_steps() const { return impl_->micro_steps; }
int Engine::zero_stage() const { return impl_->config->zero().stage; }
int64_t Engine::gathered_numel() const { return impl_->units ? impl_->units->live_numel() : 0; }
const Config& Engine::config() const { return *impl_->config; }
Comm& Engine::comm() const { return *impl_->comm; }
c10::Device Engine::device() const { return impl_->device; }
torch::nn::Module& Engine::module() const { return *impl_->model; }

struct EngineAccess {
  static detail::ShardState shard(Engine::Impl& m) {
    detail::ShardState st;
    st.layout = m.layout.get();
    st.names = m.param_names;
    for (const auto& p : m.params) st.shapes.push_back(p.sizes().vec());
    st.master = m.optimizer->master();
    st.device = m.device;
    st.optimizer_state = m.optimizer->optimizer().state();
    return st;
  }
};

std::string Engine::save_checkpoint(const std::string& save_dir, const std::string& tag,
                                    const std::string& client_state) {
  Impl& m = *impl_;
  if (m.since_step != 0) {
    throw std::invalid_argument("save_checkpoint: called at micro-step " + std::to_string(m.micro_steps) + ", " +
                                std::to_string(m.since_step) + " micro-step(s) into a gradient accumulation (of " +
                                std::to_string(gradient_accumulation_steps()) +
                                "): call it after step() on an accumulation boundary");
  }
  nlohmann::json client;
  try {
    client = nlohmann::json::parse(client_state);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("save_checkpoint: client_state is not valid JSON: ") + e.what());
  }
  const auto sc = m.optimizer->scaler().state();
  nlohmann::ordered_json eng;
  eng["global_steps"] = m.global_steps;
  eng["global_samples"] = global_samples();
  eng["micro_steps"] = m.micro_steps;
  eng["applied_steps"] = m.optimizer->applied_steps();
  eng["loss_scaler"] = {{"scale", sc.scale},
                        {"steps_since_overflow", sc.steps_since_overflow},
                        {"iteration", sc.iteration},
                        {"last_overflow_iteration", sc.last_overflow_iteration},
                        {"hysteresis_left", sc.hysteresis_left},
                        {"skipped_steps", sc.skipped_steps}};
  eng["world_size"] = m.comm->world_size();
  eng["zero_stage"] = m.config->zero().stage;
  eng["train_batch_size"] = train_batch_size();
  eng["client_state"] = client;
  detail::SaveInfo info;
  info.optimizer = m.config->optimizer().type;
  info.zero_stage = m.config->zero().stage;
  info.engine_json = eng.dump(1);
  std::string path = detail::save_checkpoint(
      save_dir, tag.empty() ? "global_step" + std::to_string(m.global_steps) : tag, EngineAccess::shard(m), info,
      *m.comm);
  m.optimizer->evict_swapped();  // NVMe offload: the save read the state whole
  return path;
}

std::string Engine::load_checkpoint(const std::string& load_dir, const std::string& tag) {
  Impl& m = *impl_;
  std::string path;
  detail::ShardState st = EngineAccess::shard(m);
  const std::string text = detail::load_checkpoint(load_dir, tag, st, m.config->optimizer().type, *m.comm, &path);
  nlohmann::json eng;
  try {
    eng = nlohmann::json::parse(text);
    m.global_steps = eng.at("global_steps").get<int64_t>();
    m.micro_steps = eng.at("micro_steps").get<int64_t>();
    const auto& ls = eng.at("loss_scaler");
    m.optimizer->scaler().load_state({ls.at("scale").get<double>(), ls.at("steps_since_overflow").get<int64_t>(),
                                      ls.at("iteration").get<int64_t>(),
                                      ls.at("last_overflow_iteration").get<int64_t>(),
                                      ls.at("hysteresis_left").get<int>(), ls.at("skipped_steps").get<int64_t>()});
    m.optimizer->restore(eng.at("applied_steps").get<int64_t>());
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + "/engine.json: corrupt: " + e.what());
  }
  if (m.micro_steps % gradient_accumulation_steps() != 0) {
    // Saved with another gradient accumulation (another world size): continue from the next boundary.
    m.micro_steps = m.global_steps * gradient_accumulation_steps();
  }
  m.since_step = 0;
  m.reducer->zero();
  if (m.units) m.units->after_step();
  m.last_grad_norm = at::Tensor();
  return eng.value("client_state", nlohmann::json::object()).dump();
}

bool Engine::save_16bit_model(const std::string& save_dir, const std::string& save_filename) {
  Impl& m = *impl_;
  const bool root = m.comm->rank() == 0;
  if (m.units && !m.config->zero().gather_16bit_weights_on_model_save) {
    if (root) {
      fmt::print(stderr,
                 "save_16bit_model: nothing written to {}/{}: at ZeRO stage 3 the parameters are partitioned and "
                 "zero_optimization.stage3_gather_16bit_weights_on_model_save is false; set it to true to gather "
                 "them (as DeepSpeed, this returns false)\n",
                 save_dir, save_filename);
    }
    return false;
  }
  at::NoGradGuard no_grad;
  // Names by tensor: the first name of each tensor (a tied weight is saved once).
  std::vector<std::pair<std::string, at::Tensor>> entries;
  std::unordered_map<const void*, size_t> slot;
  for (const auto& item : m.model->named_parameters(/*recurse=*/true)) {
    if (slot.emplace(item.value().unsafeGetTensorImpl(), entries.size()).second) {
      entries.emplace_back(item.key(), at::Tensor());
    }
  }
  for (const auto& item : m.model->named_buffers(/*recurse=*/true)) {
    if (slot.emplace(item.value().unsafeGetTensorImpl(), entries.size()).second) {
      entries.emplace_back(item.key(), at::Tensor());
    }
  }
  auto take = [&](const at::Tensor& t) {
    if (root) entries[slot.at(t.unsafeGetTensorImpl())].second = t.detach().to(at::kCPU, /*non_blocking=*/false,
                                                                                /*copy=*/true);
  };
  std::unordered_set<const void*> partitioned;
  if (m.units) {
    for (int u = 0; u < m.units->num_units(); ++u) {
      const auto& g = m.layout->groups()[u];
      m.units->with_unit_gathered(u, [&] {
        for (int b = g.first_bucket; b < g.end_bucket; ++b) {
          for (int p : m.layout->buckets()[b].params) {
            take(m.params[p]);
            partitioned.insert(m.params[p].unsafeGetTensorImpl());
          }
        }
      });
    }
  }
  for (const auto& item : m.model->named_parameters(/*recurse=*/true)) {
    if (!partitioned.count(item.value().unsafeGetTensorImpl())) take(item.value());
  }
  for (const auto& item : m.model->named_buffers(/*recurse=*/true)) take(item.value());
  if (root) {
    std::filesystem::create_directories(save_dir);
    const std::string path = (std::filesystem::path(save_dir) / save_filename).string();
    if (save_filename.size() > 12 && save_filename.ends_with(".safetensors")) {
      detail::write_safetensors(path, entries, {{"format", "pt"}});
    } else {
      detail::write_torch_state_dict(path, entries);
    }
  }
  m.comm->barrier();  // every rank returns once the file is complete
  return true;
}

GatheredParameters::GatheredParameters(Engine& engine, std::optional<int> modifier_rank)
    : engine_(engine), modifier_rank_(modifier_rank) {
  const int world = engine.comm().world_size();
  if (modifier_rank && (*modifier_rank < 0 || *modifier_rank >= world)) {
    throw std::invalid_argument("GatheredParameters: modifier_rank " + std::to_string(*modifier_rank) +
                                " is not a rank of this world (0.." + std::to_string(world - 1) + ")");
  }
  if (engine_.impl_->units) engine_.impl_->units->acquire_all(/*exact=*/true);  // the values the user reads or sets
}

GatheredParameters::~GatheredParameters() noexcept(false) {
  auto& m = *engine_.impl_;
  const bool unwinding = std::uncaught_exceptions() > 0;
  try {
    if (modifier_rank_ && !unwinding) {
      at::NoGradGuard no_grad;
      if (m.units) {
        m.units->broadcast_from(*modifier_rank_);
      } else {
        m.comm->broadcast(m.param_flat, *modifier_rank_);
      }
      m.optimizer->load_master();
    }
  } catch (...) {
    if (m.units) m.units->release_all();
    throw;
  }
  if (m.units) m.units->release_all();
}

}  // namespace zerotrain
