// micro_bench engine_cpu and unit_floor: the engine's host CPU time per step, and the floor of stage 3's per-unit
// mechanism (see micro_bench.cc).
#include "micro_bench.h"

#include <string_view>

namespace zt_micro {

// ---- engine_cpu ---------------------------------------------------------------------------------------------------

// `blocks` residual blocks x + relu(W x + b): 2 small tensors each; each block is one stage-3 unit.
struct StressModel : torch::nn::Module, zerotrain::Segmented {
  StressModel(int64_t blocks, int64_t width) {
    for (int64_t i = 0; i < blocks; ++i) layers.push_back(register_module(fmt::format("l{}", i), torch::nn::Linear(width, width)));
  }
  at::Tensor forward(at::Tensor x) {
    for (size_t i = 0; i < layers.size(); ++i) {
      x = run_segment(static_cast<int64_t>(i), [&, i](const at::Tensor& h) { return h + at::relu(layers[i]->forward(h)); }, x);
    }
    return x.to(at::kFloat).pow(2).mean();
  }
  std::vector<std::vector<at::Tensor>> segment_parameters() const override {
    std::vector<std::vector<at::Tensor>> out;
    for (const auto& l : layers) out.push_back({l->weight, l->bias});
    return out;
  }
  std::vector<torch::nn::Linear> layers;
};

// --count-ops: ATen operator calls per step, by name (every nesting level), to see what a stage adds per tensor.
std::mutex g_ops_mutex;
std::map<std::string, std::pair<int64_t, double>> g_ops;  // name -> (calls, inclusive wall seconds)
bool g_counting = false;

struct OpStart : at::ObserverContext {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
};

std::unique_ptr<at::ObserverContext> count_op(const at::RecordFunction& fn) {
  if (!g_counting) return nullptr;
  {
    std::lock_guard<std::mutex> lock(g_ops_mutex);
    ++g_ops[fn.name()].first;
  }
  return std::make_unique<OpStart>();
}

void time_op(const at::RecordFunction& fn, at::ObserverContext* ctx) {
  if (ctx == nullptr) return;
  const double dt =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - static_cast<OpStart*>(ctx)->t0).count();
  std::lock_guard<std::mutex> lock(g_ops_mutex);
  g_ops[fn.name()].second += dt;
}

// Runs `step` once with counting on and prints the `top` most frequent operators.
void print_op_counts(const char* run, const std::function<void()>& step, int top) {
  // Installed for this step only: an installed callback puts every later operator on RecordFunction's slow path
  // (~0.5-1 us each), which inflated every run measured after the first count (before session 8).
  const at::CallbackHandle handle = at::addGlobalCallback(at::RecordFunctionCallback(count_op, time_op).scopes(
      {at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION, at::RecordScope::USER_SCOPE}));
  g_ops.clear();
  g_counting = true;
  step();
  g_counting = false;
  at::removeCallback(handle);
  std::vector<std::pair<int64_t, std::string>> rows;
  std::vector<std::pair<double, std::string>> timed;
  int64_t total = 0;
  for (const auto& [name, v] : g_ops) {
    rows.emplace_back(v.first, name);
    timed.emplace_back(v.second, name);
    total += v.first;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::sort(timed.rbegin(), timed.rend());
  fmt::print("OPS {} calls {}:", run, total);
  for (int i = 0; i < top && i < static_cast<int>(rows.size()); ++i) fmt::print(" {}={}", rows[i].second, rows[i].first);
  fmt::print("\nOPS {} inclusive ms:", run);
  for (int i = 0; i < top && i < static_cast<int>(timed.size()); ++i) {
    fmt::print(" {}={:.3f}/{}", timed[i].second, timed[i].first * 1e3, g_ops[timed[i].second].first);
  }
  fmt::print("\n");
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct StepCost {
  double wall = 0, cpu = 0;  // medians, seconds per step
  double engine = 0;         // median engine_host_cpu_seconds() per step: the engine's own accounting
  double host = 0;           // median time until step() returned (before waiting for the GPU)
};

void sync(const c10::Device& dev) {
  if (dev.is_cuda()) c10::cuda::device_synchronize();
}

StepCost measure(const std::function<void()>& step, int steps, const c10::Device& dev) {
  for (int i = 0; i < 3; ++i) step();
  sync(dev);
  std::vector<double> wall, cpu, engine, host;
  for (int i = 0; i < steps; ++i) {
    const double c0 = process_cpu_seconds(), e0 = zerotrain::engine_host_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    step();
    host.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    sync(dev);
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(process_cpu_seconds() - c0);
    engine.push_back(zerotrain::engine_host_cpu_seconds() - e0);
  }
  auto median = [](std::vector<double>& v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  return {median(wall), median(cpu), median(engine), median(host)};
}

// --sample: the same steps again under the host sampler (every rank runs them; rank 0 prints).
void sample_steps(const std::string& run, const std::function<void()>& step, int steps, const c10::Device& dev,
                  int period_us, bool report) {
  if (period_us <= 0) return;
  zt_bench::sampler_start(period_us);
  measure(step, 3 * steps, dev);  // SIGPROF's resolution is the kernel's tick: many steps for enough samples
  zt_bench::sampler_stop();
  if (report) zt_bench::sampler_report(run.c_str(), 40);
}

int bench_engine_cpu(int64_t blocks, int64_t width, int64_t tokens, int count_ops, int64_t persistence,
                     const std::string& stages, const std::string& comm, int sample_us, const std::string& zero_extra) {
  if (comm != "single" && comm != "env") {
    fmt::print(stderr, "micro_bench engine_cpu: --comm {}: allowed single, env\n", comm);
    return 2;
  }
  const char* local_rank = std::getenv("LOCAL_RANK");
  const int device_index = comm == "env" && local_rank != nullptr ? std::atoi(local_rank) : 0;
  const c10::Device dev = at::hasCUDA() ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device_index))
                                        : c10::Device(c10::kCPU);
  if (dev.is_cuda()) c10::cuda::set_device(dev.index());
  // --comm env: every rank the launcher started (nccl on GPUs): the collectives' host cost counts too.
  std::shared_ptr<zerotrain::Comm> group = comm == "env" ? zerotrain::make_comm() : zerotrain::make_single_comm();
  const bool report = group->rank() == 0;
  const std::string suffix = comm == "env" ? fmt::format("_world{}", group->world_size()) : std::string();
  at::manual_seed(0);
  const at::Tensor x = at::randn({tokens, width}, at::TensorOptions(at::kBFloat16).device(dev)) * 0.1;
  // Every run is built first and stays resident; then rounds measure them in turn (each run kSteps steps a round),
  // so a machine whose speed drifts (h200-x2 instances differ by up to 1.5x and move within a call) shifts every
  // run alike; each figure is the median over rounds of a round's median step.
  struct Run {
    std::string name;
    std::shared_ptr<StressModel> model;
    std::unique_ptr<zerotrain::Engine> engine;
    std::function<void()> step;
    bool zerotrain = false;
    std::vector<StepCost> rounds;
  };
  std::vector<Run> runs;
  // Plain LibTorch: bf16 module, forward, backward, one multi-tensor fused AdamW over every parameter.
  std::vector<at::Tensor> ps, ms, vs, counts;  // counts: one step count per parameter, as the fused kernels want
  {
    Run& r = runs.emplace_back();
    r.name = "libtorch";
    r.model = std::make_shared<StressModel>(blocks, width);
    r.model->to(dev, at::kBFloat16);
    ps = r.model->parameters();
    for (auto& p : ps) {
      ms.push_back(at::zeros_like(p));
      vs.push_back(at::zeros_like(p));
      counts.push_back(at::zeros({}, at::TensorOptions(at::kFloat).device(dev)));
    }
    StressModel* model = r.model.get();
    r.step = [&ps, &ms, &vs, &counts, model, &x] {
      for (auto& p : ps) p.mutable_grad() = at::Tensor();
      model->forward(x).backward();
      std::vector<at::Tensor> gs;
      for (auto& p : ps) gs.push_back(p.grad());
      at::_foreach_add_(counts, 1);
      at::_fused_adamw_(ps, gs, ms, vs, {}, counts, 1e-4, 0.9, 0.999, 0.01, 1e-8, false, false);
    };
  }
  // --stages: the digits 0-3, 'a' for stage 3 with a unit per segment (stage3_module_granularity_threshold 0: the
  // stress model's blocks are not joined; run "zerotrain_stage3_apart"), 'b' for stage 3 with units joined up to
  // 25M elements (half the default prefetch bucket, 4x the unset threshold; run "zerotrain_stage3_big"), 'h' / 'i'
  // for stages 3 / 2 with bf16.check_grad_overflow (the step waits to read the gradient norm on the host; runs
  // "zerotrain_stage3_hostnorm" / "zerotrain_stage2_hostnorm").
  for (const char which : stages) {
    if (std::string_view("abhi").find(which) == std::string_view::npos && (which < '0' || which > '3')) {
      fmt::print(stderr, "micro_bench engine_cpu: --stages {}: allowed the digits 0-3, a, b, h and i\n", stages);
      return 2;
    }
    const bool host_norm = which == 'h' || which == 'i';
    const int stage = which == 'a' || which == 'b' || which == 'h' ? 3 : which == 'i' ? 2 : which - '0';
    std::string extra_keys = zero_extra;
    if (which == 'a' || which == 'b') {
      extra_keys += std::string(extra_keys.empty() ? "" : ", ") + R"("stage3_module_granularity_threshold": )" +
                    (which == 'a' ? "0" : "25000000");
    }
    Run& r = runs.emplace_back();
    r.name = fmt::format("zerotrain_stage{}{}{}", stage,
                         which == 'a' ? "_apart" : which == 'b' ? "_big" : host_norm ? "_hostnorm" : "", suffix);
    r.zerotrain = true;
    r.model = std::make_shared<StressModel>(blocks, width);
    zerotrain::EngineOptions opts;
    opts.comm = group;
    opts.device = dev;
    r.engine = std::make_unique<zerotrain::Engine>(zerotrain::initialize(r.model, fmt::format(
        R"({{"train_micro_batch_size_per_gpu": 1, "optimizer": {{"type": "AdamW", "params": {{"lr": 1e-4,
            "weight_decay": 0.01}}}}, "gradient_clipping": 1.0, "bf16": {{"enabled": true{}}},
            "zero_optimization": {{"stage": {}, "overlap_comm": true{}}}}})",
        host_norm ? R"(, "check_grad_overflow": true)" : "", stage,
        (persistence < 0 ? std::string() : fmt::format(R"(, "stage3_param_persistence_threshold": {})", persistence)) +
            (extra_keys.empty() ? std::string() : ", " + extra_keys)),
        opts));
    zerotrain::Engine* engine = r.engine.get();
    r.step = [engine, &x] {
      engine->backward(engine->forward(x));
      engine->step();
    };
  }
  constexpr int kRounds = 5, kSteps = 8;
  for (int round = 0; round < kRounds; ++round) {
    for (Run& r : runs) {
      // Step and process times as users run it (accounting off), then the engine's own accounting (its clock reads,
      // two system calls per hook, included in what it counts).
      zerotrain::set_engine_host_accounting(false);
      StepCost c = measure(r.step, kSteps, dev);
      if (r.zerotrain) {
        zerotrain::set_engine_host_accounting(true);
        c.engine = measure(r.step, kSteps, dev).engine;
        zerotrain::set_engine_host_accounting(false);
      }
      r.rounds.push_back(c);
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto over_rounds = [&](const Run& r) {
    std::vector<double> wall, cpu, engine, host;
    for (const StepCost& c : r.rounds) {
      wall.push_back(c.wall);
      cpu.push_back(c.cpu);
      engine.push_back(c.engine);
      host.push_back(c.host);
    }
    return StepCost{median(wall), median(cpu), median(engine), median(host)};
  };
  const StepCost base = over_rounds(runs.front());
  for (Run& r : runs) {
    if (count_ops) print_op_counts(r.name.c_str(), r.step, count_ops);
    sample_steps(r.name, r.step, 20, dev, sample_us, report);
    if (!report) continue;
    const StepCost c = over_rounds(r);
    if (!r.zerotrain) {
      fmt::print("RESULT {{\"bench\": \"engine_cpu\", \"run\": \"libtorch\", \"tensors\": {}, \"step_ms\": {:.3f}, "
                 "\"host_ms\": {:.3f}, \"cpu_ms\": {:.3f}, \"rounds\": {}}}\n", ps.size(), c.wall * 1e3, c.host * 1e3,
                 c.cpu * 1e3, kRounds);
      continue;
    }
    const double extra = c.cpu - base.cpu;
    // engine_host_ms: the engine's own thread-CPU accounting (zerotrain/profile.h); engine_cpu_ms: the process CPU
    // time over the plain LibTorch loop's (noisier: every thread of the process, the allocator's work included);
    // host_ms: until step() returned (the rest of step_ms is the GPU finishing what was launched)
    fmt::print("RESULT {{\"bench\": \"engine_cpu\", \"run\": \"{}\", \"tensors\": {}, "
               "\"step_ms\": {:.3f}, \"host_ms\": {:.3f}, \"cpu_ms\": {:.3f}, \"engine_host_ms\": {:.3f}, "
               "\"engine_host_of_step\": {:.4f}, \"engine_cpu_ms\": {:.3f}, \"engine_cpu_of_step\": {:.4f}, "
               "\"step_vs_libtorch\": {:.3f}, \"rounds\": {}}}\n",
               r.name, r.model->parameters().size(), c.wall * 1e3, c.host * 1e3, c.cpu * 1e3, c.engine * 1e3,
               c.engine / c.wall, extra * 1e3, extra / c.wall, base.wall / c.wall, kRounds);
  }
  return 0;
}

// unit_floor: the host cost of stage 3's per-unit mechanism through LibTorch, alone. A chain of `units` links
// h = h * w_i on 8-element tensors (the GPU work is a few tiny kernels, so the step's time is the host's), plain and
// with parts of the mechanism per link: a 2 MB buffer allocated for the link and freed after (the unit's gathered
// storage), an identity autograd node on its input (PostBackward) and a hook on its output (the pre-backward gather),
// each doing nothing. (variant - plain) / units = what that part costs per unit and step, whatever the engine does.
int bench_unit_floor(int64_t units) {
  const auto opts = at::TensorOptions(at::kFloat).device(at::kCUDA);
  std::vector<at::Tensor> w;
  for (int64_t i = 0; i < units; ++i) w.push_back(at::ones({8}, opts).set_requires_grad(true));
  const at::Tensor x0 = at::randn({8}, opts).set_requires_grad(true);
  struct Identity final : torch::autograd::Node {
    torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override { return std::move(grads); }
  };
  enum : int { kAlloc = 1, kNode = 2, kHook = 4 };
  auto step = [&](int parts) {
    at::Tensor h = x0;
    for (int64_t i = 0; i < units; ++i) {
      at::Tensor buffer;
      if (parts & kAlloc) buffer = at::empty({int64_t{1} << 20}, opts.dtype(at::kBFloat16));
      if (parts & kNode) {
        std::shared_ptr<Identity> node(new Identity, torch::autograd::deleteNode);
        node->set_next_edges(torch::autograd::collect_next_edges(h));
        at::Tensor in(h.unsafeGetTensorImpl()->shallow_copy_and_detach(h.unsafeGetTensorImpl()->version_counter(), true));
        torch::autograd::set_history(in, node);
        h = in;
      }
      h = h * w[i];
      if (parts & kHook) h.register_hook([](const at::Tensor&) {});
    }
    h.sum().backward();
    for (auto& p : w) p.mutable_grad().reset();
  };
  auto seconds = [&](int parts) {
    for (int i = 0; i < 3; ++i) step(parts);
    c10::cuda::device_synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) step(parts);
    c10::cuda::device_synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 20;
  };
  const std::vector<std::pair<const char*, int>> variants{
      {"plain", 0}, {"alloc", kAlloc}, {"node", kNode}, {"hook", kHook}, {"all", kAlloc | kNode | kHook}};
  std::map<std::string, double> best;
  for (int trial = 0; trial < 5; ++trial) {  // interleaved, best of five: the machine's drift hits all alike
    for (const auto& [name, parts] : variants) {
      const double t = seconds(parts);
      if (!best.count(name) || t < best[name]) best[name] = t;
    }
  }
  for (const auto& [name, parts] : variants) {
    fmt::print("RESULT {{\"bench\": \"unit_floor\", \"run\": \"{}\", \"units\": {}, \"step_ms\": {:.3f}, "
               "\"us_per_unit\": {:.2f}}}\n", name, units, best[name] * 1e3,
               (best[name] - best["plain"]) / static_cast<double>(units) * 1e6);
  }
  return 0;
}


}  // namespace zt_micro
