// The training engine: DeepSpeed's engine API over ZeRO stages 0-3, for any torch::nn::Module.
//
//   auto engine = zerotrain::initialize(model, "ds_config.json");
//   for (auto& batch : data) {
//     auto loss = engine.forward(batch.input);   // calls model->forward
//     engine.backward(loss);                     // scales by 1/gradient_accumulation_steps (and the loss scale)
//     engine.step();                             // steps the optimizer on accumulation boundaries
//   }
//
// Stage 3 partitions the parameters in units that are gathered just before use and freed after. A Segmented module
// (segmented.h; the built-in CausalLM is one: its embedding, each transformer block and its head) gets a unit per
// segment, prefetched in the recorded execution order. Any other module is one unit, gathered for Engine::forward
// and for Engine::backward: call it through the engine. Between uses a stage-3 parameter keeps its shape but holds
// no data; read or change full parameters inside a GatheredParameters scope.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "zerotrain/comm.h"
#include "zerotrain/config.h"
#include "zerotrain/monitor.h"

namespace zerotrain {

struct EngineOptions {
  std::shared_ptr<Comm> comm;          // null: make_comm(comm_options) from the launcher's environment
  CommOptions comm_options;            // used when comm is null
  std::optional<c10::Device> device;   // default: cuda:LOCAL_RANK when CUDA is available, else cpu
  RunInfo run;                         // resolves "auto" config values (world_size comes from the communicator)
  // Recompute each checkpointable segment of a Segmented module (every transformer block of a CausalLM) in backward
  // instead of keeping its activations (DeepSpeed's activation checkpointing of every layer). Ignored for other
  // modules.
  bool activation_checkpointing = false;
  // Cast floating-point buffers to the training dtype, as DeepSpeed casts the module (parameters always are). The
  // Python binding turns it off: buffers such as rotary frequencies keep their precision, as under FSDP2.
  bool cast_buffers = true;
  // Per-parameter weight decay in place of the config optimizer's (DeepSpeed's param groups, e.g. none for biases
  // and norms): (parameter of the model, its weight decay). Supported by AdamW/Adam/Lion/SGD/Adagrad, not Lamb.
  std::vector<std::pair<at::Tensor, double>> weight_decay;
  // Per-parameter learning-rate multipliers (param groups with their own lr, e.g. layer-wise decay): (parameter of
  // the model, multiplier > 0); the parameter trains at multiplier x the schedule's learning rate. Every optimizer.
  std::vector<std::pair<at::Tensor, double>> lr_scale;
  // Forward + backward FLOPs of one sample, when the program knows them (`zerotrain train` does for its built-in
  // models): an autotuning experiment then reports FLOPS_per_gpu, which autotuning.metric "flops" ranks by.
  std::optional<double> flops_per_sample;
  // Receives rank 0's monitor events besides csv_monitor / tensorboard: the Python package's wandb and comet monitors
  // (python/zerotrain/monitor.py). A config with wandb.enabled or comet.enabled needs one (ConfigError without).
  MonitorSink monitor_sink;
};

// Thrown by Engine::backward / Engine::step on every rank when the run is an autotuning experiment that has written
// its measurement (docs/autotuning.md): the program should end with status 0. zerotrain's CLI does so and the Python
// binding raises SystemExit(0) in its place; a C++ program catches it in main (or lets `zerotrain train` run it).
class AutotuningExit : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Engine {
 public:
  // `config`: a path to a DeepSpeed JSON file, or the JSON text itself. Prefer zerotrain::initialize().
  Engine(std::shared_ptr<torch::nn::Module> model, torch::nn::AnyModule forward, const std::string& config,
         EngineOptions options);
  ~Engine();
  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;

  // Runs the model's forward. Floating-point tensor arguments are cast to fp16 when fp16.auto_cast is set.
  template <typename... Args>
  at::Tensor forward(Args&&... args) {
    TORCH_CHECK(!forward_.is_empty(), "Engine::forward: the model has no single forward() method; call it directly");
    ForwardScope scope(*this);
    return forward_.forward(cast_input(std::forward<Args>(args))...);
  }
  // Backpropagates `loss` (a scalar) scaled by 1/gradient_accumulation_steps and by the fp16 loss scale, and reduces
  // gradients as the ZeRO stage prescribes.
  void backward(const at::Tensor& loss);
  // Ends a micro-step; on an accumulation boundary, steps the optimizer and the learning-rate schedule.
  void step();
  // True when the next step() will step the optimizer.
  bool is_gradient_accumulation_boundary() const;
  // Overrides the accumulation boundary from now on, as DeepSpeed's set_gradient_accumulation_boundary: set it before
  // each micro-step's backward; true makes that micro-step a boundary (stages 0-1 reduce in its backward, step()
  // steps the optimizer) whatever gradient_accumulation_steps says. std::nullopt returns to counting micro-steps.
  void set_gradient_accumulation_boundary(std::optional<bool> is_boundary);
  // Drops any gradients held in param.grad (the engine's own buffers are managed by step()).
  void zero_grad();

  // Writes the full 16-bit (training dtype) weights - parameters and buffers, by module name - to
  // save_dir/save_filename on rank 0: safetensors when the name ends in ".safetensors", else a torch.save-compatible
  // pickle of a name -> tensor dict (DeepSpeed's default name, "pytorch_model.bin"). Every rank must call it. At
  // stage 3 it gathers one unit at a time, and only when zero_optimization.stage3_gather_16bit_weights_on_model_save
  // is true: otherwise it writes nothing and returns false, as DeepSpeed does. Returns true when written. Throws
  // std::runtime_error naming the file on I/O errors; the file is replaced atomically.
  bool save_16bit_model(const std::string& save_dir, const std::string& save_filename = "pytorch_model.bin");

  // DeepSpeed's save_checkpoint: writes the training state - fp32 master weights, optimizer state, loss scaler,
  // step and sample counters, generator states and `client_state` (a JSON object, returned by load_checkpoint) -
  // to save_dir/tag (tag "" = "global_step<N>") and points save_dir/latest at it. Every rank must call it, on a
  // gradient-accumulation boundary. Atomic: a process killed during a save leaves the previous checkpoint and
  // `latest` intact. Layout: [Note: checkpoint layout] in src/checkpoint/checkpoint.h. Returns the directory.
  std::string save_checkpoint(const std::string& save_dir, const std::string& tag = "",
                              const std::string& client_state = "{}");
  // Loads load_dir/tag (tag "" = the one `latest` names), saved at any world size and ZeRO stage, into this engine
  // (same model and optimizer state kind); training continues exactly where it stopped (bit-identically at the same
  // world size and stage). Returns the saved client_state. Throws std::runtime_error naming the file and the
  // problem. Every rank must call it.
  std::string load_checkpoint(const std::string& load_dir, const std::string& tag = "");

  // Rank 0: writes `events` to every enabled monitor (csv_monitor, tensorboard, and EngineOptions::monitor_sink's
  // wandb / comet), as DeepSpeed's engine.monitor.write_events; steps are sample counts. Other ranks: nothing.
  void write_monitor_events(const std::vector<MonitorEvent>& events);
  // The global gradient norm of the last optimizer step (unscaled, before clipping); reading it makes the host wait
  // for that step's backward. The _tensor form is a copy of the same value, a 0-dim double tensor on the device
  // (undefined before the first step): for logging without waiting.
  std::optional<double> get_global_grad_norm() const;
  at::Tensor get_global_grad_norm_tensor() const;
  double get_lr() const;                               // learning rate of the next optimizer step
  // Sets the learning rate of the next optimizer steps, in place of the config's schedule (a client schedule, such
  // as a Python lr_scheduler object, steps it). Throws std::invalid_argument unless lr is finite and >= 0.
  void set_lr(double lr);
  double loss_scale() const;                           // current fp16 loss scale (1 otherwise)
  // wall_clock_breakdown's timers at the last step(), in ms by DeepSpeed's names ("fwd_microstep", ..., "fwd", ...:
  // src/engine/wall_clock.h); empty when wall_clock_breakdown is off. DeepSpeed's get_wall_clock_timers().
  std::map<std::string, double> wall_clock_timers() const;
  // The FLOPs of one sample's forward and backward, for an autotuning experiment's FLOPS metric (the Python binding
  // counts them over the first micro-step); EngineOptions::flops_per_sample gives them up front.
  void set_flops_per_sample(double flops);
  int64_t train_batch_size() const;
  int64_t train_micro_batch_size_per_gpu() const;
  int64_t gradient_accumulation_steps() const;
  int64_t global_steps() const;    // optimizer steps, skipped ones included (as DeepSpeed counts them)
  int64_t global_samples() const;  // global_steps * train_batch_size
  int64_t skipped_steps() const;   // steps skipped for fp16 overflow
  int64_t micro_steps() const;
  int zero_stage() const;
  // Elements of partitioned (stage-3) parameters gathered on this rank now, in flight included; 0 below stage 3.
  int64_t gathered_numel() const;
  const Config& config() const;
  Comm& comm() const;
  c10::Device device() const;
  torch::nn::Module& module() const;

  // For frontends that run the module themselves instead of through forward() (the Python binding does, with
  // module hooks). begin_forward/end_forward bracket a forward: at stage 3 they gather a module that is one unit.
  // At stage 3 with segments, each run of segment `index` is bracketed by begin_segment/end_segment (they nest),
  // with every tensor entering it passed through segment_input (use the returned tensor) and every tensor leaving
  // it through segment_output. `record`: the run belongs to a training step (grad enabled, or a no_grad forward
  // that activation checkpointing will recompute); a run during backward() is such a recomputation. No-ops
  // where nothing is partitioned. `sole`: x is the run's only input that needs a gradient (then a run on the same
  // units as the previous one, taking its output, shares its backward bookkeeping: cheaper on small segments).
  void begin_forward();
  void end_forward() noexcept;
  void begin_segment(int64_t index, bool record);
  at::Tensor segment_input(const at::Tensor& x, bool sole = false);
  void segment_output(const at::Tensor& y);
  void end_segment();
  // The flops profiler (flops_profiler.enabled, rank 0): true when the next forward is the one it profiles. A
  // frontend may then bracket each module's forward with begin_module / end_module (its qualified name in
  // module()), so operators without parameters and latency are attributed to the module running.
  bool flops_profile_pending() const;
  void begin_module(const std::string& qualified_name);
  void end_module();
  // The profiled forward's multiply-accumulates in the named module and its submodules ("" = the model); 0 before
  // the profile or without the profiler (rank 0 only).
  int64_t flops_profile_macs(const std::string& qualified_name = "") const;

 private:
  friend class GatheredParameters;
  friend struct EngineAccess;
  // Stage 3 with a module that is one unit: gathered for the duration of forward.
  struct ForwardScope {
    explicit ForwardScope(Engine& e) : engine(e) { engine.begin_forward(); }
    ~ForwardScope() { engine.end_forward(); }
    Engine& engine;
  };
  at::Tensor cast_tensor(const at::Tensor& t) const;
  // step()'s end with wall_clock_breakdown; appends the timers' monitor events at a boundary
  void log_wall_clock(bool boundary, std::vector<MonitorEvent>& events);
  template <typename T>
  decltype(auto) cast_input(T&& v) const {
    if constexpr (std::is_same_v<std::decay_t<T>, at::Tensor>) {
      return cast_tensor(v);
    } else {
      return std::forward<T>(v);
    }
  }

  struct Impl;
  std::unique_ptr<Impl> impl_;
  torch::nn::AnyModule forward_;
};

// Full parameters for user code, as DeepSpeed's zero.GatheredParameters: at stage 3 every unit is gathered for the
// scope's lifetime (a collective: every rank must open and close the scope together); at stages 0-2 it does
// nothing. With `modifier_rank`, changes that rank makes to the parameters inside the scope are broadcast at the end
// and become the trained values (the fp32 master weights too), on every stage.
//
//   { zerotrain::GatheredParameters full(engine, /*modifier_rank=*/0); if (rank == 0) init(model); }
class GatheredParameters {
 public:
  explicit GatheredParameters(Engine& engine, std::optional<int> modifier_rank = std::nullopt);
  ~GatheredParameters() noexcept(false);
  GatheredParameters(const GatheredParameters&) = delete;
  GatheredParameters& operator=(const GatheredParameters&) = delete;

 private:
  Engine& engine_;
  std::optional<int> modifier_rank_;
};

// Builds an Engine for `model`: moves it to the device, casts it to the training dtype, broadcasts rank 0's
// parameters, lays out the flat buffers and builds the optimizer and schedule of the config. Throws ConfigError for
// bad or unsupported configs.
template <typename M>
Engine initialize(std::shared_ptr<M> model, const std::string& config, EngineOptions options = {}) {
  torch::nn::AnyModule forward;
  if constexpr (requires { &M::forward; }) forward = torch::nn::AnyModule(model);
  return Engine(std::static_pointer_cast<torch::nn::Module>(model), std::move(forward), config, std::move(options));
}

}  // namespace zerotrain
