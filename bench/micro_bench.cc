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
//                                    25M elements, h / i = stages 3 / 2 with bf16.check_grad_overflow: the step
//                                    reads the norm on the host first, as every bf16 step did before session 13;
//                                    --count-ops: the
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
#include "micro_bench.h"

#include <cuda_runtime.h>

namespace zt_micro {

double time_cuda(const std::function<void()>& fn, int reps, int trials) {
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


// The built-in Llama's fused elementwise layers (models/layers.h: rope_heads, swiglu) against their ATen forms, forward
// and backward on one GPU at the 8B and 1.1B training shapes; GB/s counts the bytes the fused kernels must move
// (rope: x read and y written, both ways; swiglu: gate, up read and out written forward, d_out, gate, up read and
// d_gate, d_up written backward).
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

}  // namespace zt_micro

using namespace zt_micro;

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
