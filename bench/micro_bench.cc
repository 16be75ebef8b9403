// Micro-benchmarks of issue 7, each against its ceiling measured in the same process (never run by the tests; see
// bench/gpu/run.sh). Prints one `RESULT {json}` line per measurement.
//
//   micro_bench opt [--numel N]      one GPU: the optimizer step on a shard of N fp32 elements against a device copy
//   zerotrain launch --no_local_rank micro_bench comm
//                                    every GPU: zerotrain's collectives against raw NCCL calls at zerotrain's sizes
//   micro_bench engine_cpu [--blocks B --width D --tokens T --count-ops TOP --persistence N --stages 0123a
//                           --comm single|env]   (env: under `zerotrain launch --no_local_rank`, every rank)
//                                    one GPU: the engine's host CPU time per step on a model of 2B small tensors
//                                    (--stages: a = stage 3 with a unit per block, not joined, b = joined up to
//                                    25M elements; --count-ops: the
//                                    TOP most called ATen operators of one step of each run;
//                                    --zero-extra '"key": value, ...': more zero_optimization keys;
//                                    --sample US: a sampling profile of each run's host CPU, every US microseconds
//                                    of CPU: bench/host_sampler.h)
//   micro_bench layers               one GPU: the built-in Llama's fused RoPE and SwiGLU against their ATen forms
//   micro_bench unit_floor [--units N]  one GPU: the host cost of stage 3's per-unit mechanism alone (see below)
//   micro_bench cpu_adam [--numel N] host (optimizer offload's step): the CPU Adam pass with its bf16 copy against
//                                    a pass moving the same bytes with adds only, a host copy and ATen's fused AdamW,
//                                    on at::get_num_threads() threads (OMP_NUM_THREADS)
//
// opt: bandwidth = the bytes the step must move / its time. The Adam step reads param, grad, exp_avg, exp_avg_sq and
// writes param, exp_avg, exp_avg_sq (28 B/element); the ZeRO step adds the gradient norm's read (4) and the 16-bit
// parameter copy (2): 34 B/element. The ceiling is at::copy_ of 4 GiB (read + write).
//
// engine_cpu: process CPU time (all threads; blocking synchronisation, so waiting for the GPU costs none) of a
// training step through the engine minus that of the same model trained by plain LibTorch (forward, backward, one
// multi-tensor fused AdamW), as a fraction of the engine's step time. One GPU and the single-rank communicator, so no
// NCCL proxy thread spins in the measurement; every stage still runs its full bookkeeping (hooks, buckets, units).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/record_function.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#ifdef ZEROTRAIN_BENCH_NCCL
#include <dlfcn.h>
#include <nccl.h>
#endif

#include "host_sampler.h"
#include "models/layers.h"
#include "optim/host_kernels.h"
#include "optim/optim_kernels.h"
#include "optim/shard_optimizer.h"
#include "traffic_kernels.h"
#include "zero/flat_layout.h"
#include "zero/zero_optimizer.h"
#include "zerotrain/comm.h"
#include "zerotrain/engine.h"
#include "zerotrain/profile.h"
#include "zerotrain/segmented.h"

namespace {

using zerotrain::detail::FlatLayout;
using zerotrain::detail::ParamCopyRange;
using zerotrain::detail::ParamPlacement;
using zerotrain::detail::StepArgs;
using zerotrain::detail::ZeroOptimizer;

// Seconds per call of fn: `reps` calls between two CUDA events on the current stream, best of `trials`.
double time_cuda(const std::function<void()>& fn, int reps = 10, int trials = 5) {
  for (int i = 0; i < 3; ++i) fn();
  at::cuda::CUDAEvent start(cudaEventDefault), end(cudaEventDefault);
  double best = 1e30;
  for (int t = 0; t < trials; ++t) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    start.record(stream);
    for (int i = 0; i < reps; ++i) fn();
    end.record(stream);
    end.synchronize();
    best = std::min(best, start.elapsed_time(end) / 1e3 / reps);
  }
  return best;
}

std::string arg(int argc, char** argv, const std::string& name, const std::string& def) {
  for (int i = 2; i + 1 < argc; i += 2) {
    if (argv[i] == name) return argv[i + 1];
  }
  return def;
}

zerotrain::Config adamw_config(const char* precision) {
  return zerotrain::Config::from_string(fmt::format(
      R"({{"train_micro_batch_size_per_gpu": 1, "optimizer": {{"type": "AdamW", "params": {{"lr": 1e-4,
          "weight_decay": 0.01}}}}, "gradient_clipping": 1.0, "{}": {{"enabled": true}}}})",
      precision));
}

// ---- opt ----------------------------------------------------------------------------------------------------------

int bench_opt(int64_t n) {
  const auto f32 = at::TensorOptions(at::kFloat).device(at::kCUDA, 0);
  double copy_gbs = 0;
  {
    at::Tensor x = at::randn({int64_t{1} << 30}, f32), y = at::empty_like(x);
    const double t = time_cuda([&] { y.copy_(x); });
    copy_gbs = 2.0 * 4 * x.numel() / t / 1e9;
    fmt::print("RESULT {{\"bench\": \"d2d_copy\", \"GBps\": {:.0f}}}\n", copy_gbs);
  }
  auto report = [&](const char* name, double bytes_per_element, double t) {
    const double gbs = bytes_per_element * static_cast<double>(n) / t / 1e9;
    fmt::print("RESULT {{\"bench\": \"{}\", \"numel\": {}, \"step_ms\": {:.3f}, \"GBps\": {:.0f}, "
               "\"of_copy\": {:.3f}}}\n", name, n, t * 1e3, gbs, gbs / copy_gbs);
  };
  at::Tensor p = at::randn({n}, f32), g = at::randn({n}, f32), m = at::zeros({n}, f32), v = at::zeros({n}, f32);
  {
    at::Tensor step = at::zeros({}, f32);
    const double t = time_cuda([&] {
      step.add_(1);
      at::_fused_adamw_({p}, {g}, {m}, {v}, {}, {step}, 1e-4, 0.9, 0.999, 0.01, 1e-8, false, false);
    });
    report("torch_fused_adamw", 28, t);
  }
  {
    // The kernel's memory-walk variants (AdamLaunch), with and without the bf16 copy.
    using zerotrain::detail::AdamLaunch;
    at::Tensor copy = at::empty({n}, f32.dtype(at::kBFloat16));
    zerotrain::detail::AdamKernelArgs args{1e-4f, 0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 0.01f, 0.1f, 0.001f, true, 0.5f};
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    for (int unroll : {1, 2, 4, 8}) {
      for (bool streaming : {false, true}) {
        for (bool occupancy : {false, true}) {
          const AdamLaunch how{unroll, streaming, occupancy};
          for (bool with_copy : {false, true}) {
            const zerotrain::detail::ParamCopy pc =
                with_copy ? zerotrain::detail::ParamCopy{copy.data_ptr(), zerotrain::detail::CopyDtype::kBFloat16}
                          : zerotrain::detail::ParamCopy{};
            const double t = time_cuda([&] {
              zerotrain::detail::adam_step_cuda(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(),
                                                v.data_ptr<float>(), n, args, stream, pc, how);
            });
            report(fmt::format("adam_kernel_u{}_{}_{}{}", unroll, streaming ? "stream" : "plain",
                               occupancy ? "occ" : "8xsm", with_copy ? "_bf16copy" : "").c_str(),
                   with_copy ? 30 : 28, t);
          }
        }
      }
    }
  }
  {
    // The floor: Adam's bytes moved with an add per value instead of its arithmetic, walked as the Adam kernel walks
    // memory (bench/traffic_kernels.cu). The Adam kernel's GB/s over this one is its share of what Adam's 16:12 (or
    // 16:14) mix of reads to writes allows on this GPU; the copy's 1:1 mix may allow more.
    at::Tensor copy = at::empty({n}, f32.dtype(at::kBFloat16));
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    for (bool with_copy : {false, true}) {
      const double t = time_cuda([&] {
        zerotrain::bench::adam_traffic_cuda(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(),
                                            v.data_ptr<float>(), with_copy ? copy.data_ptr() : nullptr, n, stream);
      });
      report(with_copy ? "adam_traffic_floor_bf16copy" : "adam_traffic_floor", with_copy ? 30 : 28, t);
    }
    m.zero_();  // the floor's adds left the moments arbitrary: the Adam runs after it start from zeros
    v.zero_();
  }
  const zerotrain::Config cfg = adamw_config("bf16");
  {
    auto opt = zerotrain::detail::make_shard_optimizer(cfg.optimizer(), p, {}, 1, [](at::Tensor&) {});
    int64_t s = 0;
    report("zerotrain_adamw", 28, time_cuda([&] { opt->step(p, g, StepArgs{1e-4, ++s, std::nullopt}); }));
    at::Tensor copy = at::empty({n}, f32.dtype(at::kBFloat16));
    const std::vector<ParamCopyRange> copies{{0, copy}};
    report("zerotrain_adamw_unscale_bf16_copy", 30,
           time_cuda([&] { opt->step_and_copy(p, g, StepArgs{1e-4, ++s, std::nullopt}, 0.5, copies); }));
    // the same work in the passes it took before the fused kernel: unscale, ATen's fused AdamW, the cast
    at::Tensor step = at::zeros({}, f32);
    report("passes_mul_fusedadamw_copy", 30, time_cuda([&] {
             g.mul_(1.0);
             step.add_(1);
             at::_fused_adamw_({p}, {g}, {m}, {v}, {}, {step}, 1e-4, 0.9, 0.999, 0.01, 1e-8, false, false);
             copy.copy_(p);
           }));
  }
  {
    // The whole ZeRO step of one rank at stage 0 (replicated bf16 parameters): norm, clip, fused step, copy.
    const FlatLayout layout({n}, 1, 0, n);
    at::Tensor params = at::randn({layout.total_numel()}, f32).to(at::kBFloat16);
    ZeroOptimizer zero(layout, params, zerotrain::make_single_comm(), cfg, ParamPlacement::kReplicated);
    at::Tensor grad = at::randn({layout.shard_numel()}, f32);
    report("zerotrain_zero_step", 34, time_cuda([&] { zero.step(grad, 1e-4, std::nullopt); }, 5, 3));
  }
  return 0;
}

// ---- comm ---------------------------------------------------------------------------------------------------------

#ifdef ZEROTRAIN_BENCH_NCCL
// NCCL's entry points from the libnccl torch already loaded (no link-time dependency on where it lives).
template <typename F>
F nccl_fn(const char* name) {
  void* f = dlsym(RTLD_DEFAULT, name);
  TORCH_CHECK(f, "micro_bench: ", name, " not found in the loaded libraries (", dlerror(), ")");
  return reinterpret_cast<F>(f);
}
#endif

int bench_comm() {
  auto comm = zerotrain::make_comm();
  const int rank = comm->rank(), world = comm->world_size();
  const auto bf16 = at::TensorOptions(at::kBFloat16).device(at::kCUDA, c10::cuda::current_device());
#ifdef ZEROTRAIN_BENCH_NCCL
  auto get_id = nccl_fn<ncclResult_t (*)(ncclUniqueId*)>("ncclGetUniqueId");
  auto init_rank = nccl_fn<ncclResult_t (*)(ncclComm_t*, int, ncclUniqueId, int)>("ncclCommInitRank");
  auto reduce_scatter = nccl_fn<ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                                                 cudaStream_t)>("ncclReduceScatter");
  auto all_gather =
      nccl_fn<ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t)>("ncclAllGather");
  auto destroy = nccl_fn<ncclResult_t (*)(ncclComm_t)>("ncclCommDestroy");
  ncclUniqueId id{};
  if (rank == 0) TORCH_CHECK(get_id(&id) == ncclSuccess, "ncclGetUniqueId failed");
  at::Tensor id_t = at::from_blob(&id, {static_cast<int64_t>(sizeof(id))}, at::kByte).to(bf16.dtype(at::kByte));
  comm->broadcast(id_t, 0);
  std::memcpy(&id, id_t.cpu().data_ptr(), sizeof(id));
  ncclComm_t raw = nullptr;
  TORCH_CHECK(init_rank(&raw, world, id, rank) == ncclSuccess, "ncclCommInitRank failed");
#endif
  for (int64_t mb : {8, 32, 128, 512, 1024}) {
    const int64_t n = mb * (int64_t{1} << 20) / 2 / world * world;  // bf16 elements, a multiple of world
    at::Tensor full = at::randn({n}, bf16), part = at::empty({n / world}, bf16), gathered = at::empty({n}, bf16);
    const double bytes = 2.0 * n * (world - 1) / world;  // bus bytes per rank (nccl-tests' busbw)
    const int reps = mb >= 512 ? 5 : 20;
    const double zt_rs = time_cuda([&] { comm->reduce_scatter_async(part, full, zerotrain::ReduceOp::kSum)->wait(); }, reps);
    const double zt_ag = time_cuda([&] { comm->all_gather_async(gathered, part)->wait(); }, reps);
    double raw_rs = 0, raw_ag = 0;
#ifdef ZEROTRAIN_BENCH_NCCL
    const cudaStream_t s = c10::cuda::getCurrentCUDAStream();
    raw_rs = time_cuda([&] {
      TORCH_CHECK(reduce_scatter(full.data_ptr(), part.data_ptr(), n / world, ncclBfloat16, ncclSum, raw, s) ==
                  ncclSuccess);
    }, reps);
    raw_ag = time_cuda([&] {
      TORCH_CHECK(all_gather(part.data_ptr(), gathered.data_ptr(), n / world, ncclBfloat16, raw, s) == ncclSuccess);
    }, reps);
#endif
    if (rank == 0) {
      auto gbs = [&](double t) { return t > 0 ? bytes / t / 1e9 : 0.0; };
      fmt::print("RESULT {{\"bench\": \"comm\", \"world\": {}, \"MB\": {}, \"reducescatter_busbw\": {:.0f}, "
                 "\"raw_reducescatter_busbw\": {:.0f}, \"allgather_busbw\": {:.0f}, \"raw_allgather_busbw\": {:.0f}, "
                 "\"rs_of_raw\": {:.3f}, \"ag_of_raw\": {:.3f}}}\n",
                 world, mb, gbs(zt_rs), gbs(raw_rs), gbs(zt_ag), gbs(raw_ag), raw_rs > 0 ? raw_rs / zt_rs : 0.0,
                 raw_ag > 0 ? raw_ag / zt_ag : 0.0);
    }
  }
  // Host cost per collective (this thread's CPU time per call, the GPU never the limit: 1 MB each): zerotrain's
  // calls through c10d (launch and wait), coalesced over 5 tensors, and raw NCCL on the current stream and as a raw
  // communicator would run it (on its own stream, ordered by an event each way). What a collective costs the host
  // decides stage 3's engine time on many small units (docs/performance.md, session 10).
  {
    const int64_t n = (int64_t{1} << 19) / world * world;  // 1 MB of bf16
    constexpr int kParts = 5, kCalls = 200;
    std::vector<at::Tensor> ins, outs;
    for (int i = 0; i < kParts; ++i) {
      ins.push_back(at::randn({n / world}, bf16));
      outs.push_back(at::empty({n}, bf16));
    }
    auto per_call_us = [&](const std::function<void()>& fn) {
      for (int i = 0; i < 5; ++i) fn();
      c10::cuda::device_synchronize();
      comm->barrier();
      timespec a{}, b{};
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
      for (int i = 0; i < kCalls; ++i) fn();
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
      c10::cuda::device_synchronize();
      return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / kCalls;
    };
    const double zt_one = per_call_us([&] { comm->all_gather_async(outs[0], ins[0])->wait(); });
    const double zt_five = per_call_us([&] { comm->all_gather_coalesced_async(outs, ins)->wait(); });
    const double zt_rs = per_call_us([&] { comm->reduce_scatter_async(ins[0], outs[0], zerotrain::ReduceOp::kSum)->wait(); });
    double raw_one = 0, raw_side = 0, raw_side_five = 0;
#ifdef ZEROTRAIN_BENCH_NCCL
    auto group_start = nccl_fn<ncclResult_t (*)()>("ncclGroupStart");
    auto group_end = nccl_fn<ncclResult_t (*)()>("ncclGroupEnd");
    const cudaStream_t cur = c10::cuda::getCurrentCUDAStream();
    const cudaStream_t side = c10::cuda::getStreamFromPool(/*isHighPriority=*/true);
    cudaEvent_t before = nullptr, after = nullptr;
    cudaEventCreateWithFlags(&before, cudaEventDisableTiming);
    cudaEventCreateWithFlags(&after, cudaEventDisableTiming);
    raw_one = per_call_us([&] {
      TORCH_CHECK(all_gather(ins[0].data_ptr(), outs[0].data_ptr(), n / world, ncclBfloat16, raw, cur) == ncclSuccess);
    });
    auto on_side = [&](int parts) {
      cudaEventRecord(before, cur);
      cudaStreamWaitEvent(side, before, 0);
      if (parts > 1) group_start();
      for (int i = 0; i < parts; ++i) {
        TORCH_CHECK(all_gather(ins[i].data_ptr(), outs[i].data_ptr(), n / world, ncclBfloat16, raw, side) ==
                    ncclSuccess);
      }
      if (parts > 1) group_end();
      cudaEventRecord(after, side);
      cudaStreamWaitEvent(cur, after, 0);
    };
    raw_side = per_call_us([&] { on_side(1); });
    raw_side_five = per_call_us([&] { on_side(kParts); });
    cudaEventDestroy(before);
    cudaEventDestroy(after);
#endif
    if (rank == 0) {
      fmt::print("RESULT {{\"bench\": \"comm_host\", \"world\": {}, \"MB\": 1, \"zt_allgather_us\": {:.1f}, "
                 "\"zt_allgather_coalesced5_us\": {:.1f}, \"zt_reducescatter_us\": {:.1f}, \"raw_allgather_us\": {:.1f}, "
                 "\"raw_allgather_side_stream_us\": {:.1f}, \"raw_allgather_group5_side_stream_us\": {:.1f}}}\n",
                 world, zt_one, zt_five, zt_rs, raw_one, raw_side, raw_side_five);
    }
  }
#ifdef ZEROTRAIN_BENCH_NCCL
  c10::cuda::device_synchronize();
  destroy(raw);
#else
  if (rank == 0) fmt::print("micro_bench: built without nccl.h: no raw NCCL baseline\n");
#endif
  comm->barrier();
  return 0;
}

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
  // 25M elements (half the default prefetch bucket, 4x the unset threshold; run "zerotrain_stage3_big").
  for (const char which : stages) {
    if (which != 'a' && which != 'b' && (which < '0' || which > '3')) {
      fmt::print(stderr, "micro_bench engine_cpu: --stages {}: allowed the digits 0-3, a and b\n", stages);
      return 2;
    }
    const int stage = which == 'a' || which == 'b' ? 3 : which - '0';
    std::string extra_keys = zero_extra;
    if (which == 'a' || which == 'b') {
      extra_keys += std::string(extra_keys.empty() ? "" : ", ") + R"("stage3_module_granularity_threshold": )" +
                    (which == 'a' ? "0" : "25000000");
    }
    Run& r = runs.emplace_back();
    r.name = fmt::format("zerotrain_stage{}{}{}", stage, which == 'a' ? "_apart" : which == 'b' ? "_big" : "", suffix);
    r.zerotrain = true;
    r.model = std::make_shared<StressModel>(blocks, width);
    zerotrain::EngineOptions opts;
    opts.comm = group;
    opts.device = dev;
    r.engine = std::make_unique<zerotrain::Engine>(zerotrain::initialize(r.model, fmt::format(
        R"({{"train_micro_batch_size_per_gpu": 1, "optimizer": {{"type": "AdamW", "params": {{"lr": 1e-4,
            "weight_decay": 0.01}}}}, "gradient_clipping": 1.0, "bf16": {{"enabled": true}},
            "zero_optimization": {{"stage": {}, "overlap_comm": true{}}}}})", stage,
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

// The built-in Llama's fused elementwise layers (models/layers.h: rope_heads, swiglu) against their ATen forms, forward
// and backward on one GPU at the 8B and 1.1B training shapes; GB/s counts the bytes the fused kernels must move
// (rope: x read and y written, both ways; swiglu: gate, up read and out written forward, d_out, gate, up read and
// d_gate, d_up written backward).
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

int bench_layers() {
  struct Shape {
    const char* name;
    int64_t batch, seq, hidden, heads, kv_heads, ffn;
  };
  const Shape shapes[] = {{"llama-8b", 2, 8192, 4096, 32, 8, 14336}, {"llama-1.1b", 4, 2048, 2048, 32, 4, 5632}};
  const auto bf16 = at::TensorOptions(at::kBFloat16).device(at::kCUDA);
  for (const Shape& sh : shapes) {
    const int64_t d = sh.hidden / sh.heads, tokens = sh.batch * sh.seq;
    auto [cos, sin] = zerotrain::detail::rope_tables(sh.seq, d, 500000.0, c10::Device(c10::kCUDA));
    for (const int64_t heads : {sh.heads, sh.kv_heads}) {
      const at::Tensor x = at::randn({sh.batch, sh.seq, heads * d}, bf16).requires_grad_(true);
      const at::Tensor dy = at::randn({sh.batch, heads, sh.seq, d}, bf16);
      auto run = [&](bool fused) {
        return [&, fused] {
          at::Tensor y = fused ? zerotrain::detail::rope_heads(x, heads, cos, sin)
                               : zerotrain::detail::apply_rope(zerotrain::detail::split_heads(x, heads), cos, sin);
          y.backward(dy);
          x.mutable_grad() = at::Tensor();
        };
      };
      const double aten = time_cuda(run(false)), fused = time_cuda(run(true));
      const double bytes = 4.0 * static_cast<double>(x.numel()) * 2;
      fmt::print("RESULT {{\"bench\": \"layers\", \"shape\": \"{}\", \"op\": \"rope_{}heads\", \"aten_ms\": {:.3f}, "
                 "\"fused_ms\": {:.3f}, \"speedup\": {:.2f}, \"fused_GBps\": {:.0f}}}\n",
                 sh.name, heads, aten * 1e3, fused * 1e3, aten / fused, bytes / fused / 1e9);
    }
    const at::Tensor g = at::randn({tokens, sh.ffn}, bf16).requires_grad_(true);
    const at::Tensor u = at::randn({tokens, sh.ffn}, bf16).requires_grad_(true);
    const at::Tensor dout = at::randn({tokens, sh.ffn}, bf16);
    auto run = [&](bool fused) {
      return [&, fused] {
        at::Tensor out = fused ? zerotrain::detail::swiglu(g, u) : at::silu(g) * u;
        out.backward(dout);
        g.mutable_grad() = at::Tensor();
        u.mutable_grad() = at::Tensor();
      };
    };
    const double aten = time_cuda(run(false)), fused = time_cuda(run(true));
    const double bytes = 8.0 * static_cast<double>(g.numel()) * 2;
    fmt::print("RESULT {{\"bench\": \"layers\", \"shape\": \"{}\", \"op\": \"swiglu\", \"aten_ms\": {:.3f}, "
               "\"fused_ms\": {:.3f}, \"speedup\": {:.2f}, \"fused_GBps\": {:.0f}}}\n",
               sh.name, aten * 1e3, fused * 1e3, aten / fused, bytes / fused / 1e9);
  }
  return 0;
}

// ---- cpu_adam ----------------------------------------------------------------------------------------------------

// Median seconds of fn over `trials` after one warm-up.
double time_host(const std::function<void()>& fn, int trials = 5) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < trials; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The host's floor for Adam with its 16-bit copy: the same 16 bytes read and 14 written per element, adds only, the
// same slices and threads (zerotrain::detail::host_parallel).
void adam_traffic_host(float* p, const float* g, float* m, float* v, uint16_t* c, int64_t n) {
  zerotrain::detail::host_parallel(n, int64_t{1} << 20, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float pi = p[i] + g[i], mi = m[i] + v[i], vi = v[i] + g[i];
      p[i] = pi;
      m[i] = mi;
      v[i] = vi;
      uint32_t bits;
      std::memcpy(&bits, &pi, sizeof bits);
      c[i] = static_cast<uint16_t>(bits >> 16);
    }
  });
}

int bench_cpu_adam(int64_t n) {
  const int threads = at::get_num_threads();
  at::manual_seed(0);
  at::Tensor p = at::randn({n}), g = at::randn({n}) * 1e-2, m = at::zeros({n}), v = at::zeros({n});
  at::Tensor copy = at::empty({n}, at::kBFloat16);
  auto report = [&](const char* what, double bytes_per_element, double seconds, double floor_seconds) {
    const double gbps = bytes_per_element * static_cast<double>(n) / seconds / 1e9;
    fmt::print("RESULT {{\"bench\": \"cpu_adam\", \"run\": \"{}\", \"threads\": {}, \"numel\": {}, \"ms\": {:.2f}, "
               "\"GBps\": {:.1f}, \"of_floor\": {:.3f}}}\n",
               what, threads, n, seconds * 1e3, gbps, floor_seconds > 0 ? floor_seconds / seconds : 1.0);
  };
  // A host copy of 4 bytes an element (read + write), ATen's own parallel copy.
  const at::Tensor src = at::randn({n}), dst = at::empty({n});
  const double copy_s = time_host([&] { dst.copy_(src); });
  const double copy_gbps = 8.0 * static_cast<double>(n) / copy_s / 1e9;
  fmt::print("RESULT {{\"bench\": \"cpu_adam\", \"run\": \"host_copy\", \"threads\": {}, \"numel\": {}, "
             "\"ms\": {:.2f}, \"GBps\": {:.1f}}}\n", threads, n, copy_s * 1e3, copy_gbps);
  const double floor_s = time_host([&] {
    adam_traffic_host(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(),
                      reinterpret_cast<uint16_t*>(copy.data_ptr()), n);
  });
  report("adam_traffic_floor_bf16copy", 30, floor_s, floor_s);
  m.zero_(), v.zero_();
  const zerotrain::detail::AdamKernelArgs args{1e-4f, 0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 0.01f, 0.1f, 0.001f, true, 1.f};
  const double ours_s = time_host([&] {
    zerotrain::detail::adam_step_host(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(),
                                      v.data_ptr<float>(), n, args,
                                      {copy.data_ptr(), zerotrain::detail::CopyDtype::kBFloat16});
  });
  report("zerotrain_adam_bf16copy", 30, ours_s, floor_s);
  // ATen's fused AdamW on the CPU (no copy: 28 bytes; a cast pass would add 6 more)
  const std::vector<at::Tensor> ps{p}, gs{g}, ms{m}, vs{v}, steps{at::ones({})};
  const double aten_s = time_host([&] {
    at::_fused_adamw_(ps, gs, ms, vs, {}, steps, 1e-4, 0.9, 0.999, 0.01, 1e-8, false, false);
  });
  report("aten_fused_adamw_nocopy", 28, aten_s, floor_s * 28.0 / 30.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "";
  // engine_cpu: waiting for the GPU sleeps instead of spinning, so the process CPU time counts work only (set
  // before anything creates the CUDA context).
  if (what == "engine_cpu" && cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync) != cudaSuccess) {
    (void)cudaGetLastError();  // no device: the CPU smoke run
  }
  if (what == "engine_cpu") {
    // on CPU only as a smoke test of the benchmark itself: the figures mean nothing there
    return bench_engine_cpu(std::stoll(arg(argc, argv, "--blocks", "256")), std::stoll(arg(argc, argv, "--width", "1024")),
                            std::stoll(arg(argc, argv, "--tokens", "8192")),
                            std::stoi(arg(argc, argv, "--count-ops", "0")),
                            std::stoll(arg(argc, argv, "--persistence", "-1")), arg(argc, argv, "--stages", "0123a"),
                            arg(argc, argv, "--comm", "single"), std::stoi(arg(argc, argv, "--sample", "0")),
                            arg(argc, argv, "--zero-extra", ""));
  }
  if (what == "cpu_adam") return bench_cpu_adam(std::stoll(arg(argc, argv, "--numel", "268435456")));
  if (!at::hasCUDA()) {
    fmt::print(stderr, "micro_bench {}: needs a CUDA device\n", what);
    return 2;
  }
  if (what == "opt") return bench_opt(std::stoll(arg(argc, argv, "--numel", "1000000000")));
  if (what == "comm") return bench_comm();
  if (what == "layers") return bench_layers();
  if (what == "unit_floor") return bench_unit_floor(std::stoll(arg(argc, argv, "--units", "256")));
  fmt::print(stderr, "micro_bench: first argument {}: allowed opt, comm, engine_cpu, layers, cpu_adam, unit_floor\n",
             what.empty() ? "(none)" : what);
  return 2;
}
