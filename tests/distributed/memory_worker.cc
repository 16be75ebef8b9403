// A model whose replicated training state does not fit in a rank's memory trains at stage 3 on several ranks.
//
//   mpirun -np 4 memory_worker --stage 3 --budget-mb 320
//
// Each rank caps its own data memory (RLIMIT_DATA: heap and private mappings, which is where tensors live) at what
// it uses after startup plus --budget-mb, then builds a ~26M-parameter Llama-shaped model in fp32 (105 MB) and
// trains it with AdamW. Replicated (stage 0) the training state is 16 bytes per parameter plus the fp32 gradient
// accumulation buffer, ~525 MB: over the budget, so stage 0 must fail with an allocation error. At stage 3 on 4
// ranks a rank holds 16/4 bytes per parameter (105 MB) plus one gathered block and the activations, and the model
// itself is built (105 MB) before the engine partitions it: inside the budget, with stage 3 set to keep few
// parameters gathered (one block prefetched, at most 10M elements live, nothing kept for reuse).
// With --deferred 1 the model is built without parameter data (make_model_deferred) and materialized unit by unit
// on the ranks, so not even the 105 MB of the whole model is ever needed: a smaller budget suffices.
// Run with MALLOC_MMAP_THRESHOLD_=65536 so that freed tensors go back to the system at once (glibc otherwise keeps
// freed heap memory, which still counts against the cap).
// Prints "MEMORY ... trained" on success, "MEMORY ... out of memory: <message>" and exits 1 on failure.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "zerotrain/comm.h"
#include "zerotrain/engine.h"
#include "zerotrain/models.h"

namespace {

// A field of /proc/self/status in kB (VmData, VmHWM, ...).
int64_t status_kb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  int stage = 3;
  int64_t budget_mb = 320;
  bool deferred = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--stage") stage = std::stoi(v);
    else if (a == "--budget-mb") budget_mb = std::stoll(v);
    else if (a == "--deferred") deferred = v == "1";
    else {
      std::fprintf(stderr, "unknown argument %s (allowed: --stage --budget-mb --deferred 0|1)\n", a.c_str());
      return 2;
    }
  }
  at::set_num_threads(1);
  const bool mpi = zerotrain::rank_info_from_env().world_size > 1;
  auto comm = zerotrain::make_comm({.backend = mpi ? "mpi" : "single", .timeout = std::chrono::seconds(120)});
  const int rank = comm->rank(), world = comm->world_size();

  zerotrain::ModelSpec spec = zerotrain::model_spec("llama-tiny");
  spec.name = "llama-26m";
  spec.num_layers = 8;
  spec.hidden = 512;
  spec.num_heads = 8;
  spec.num_kv_heads = 8;
  spec.ffn = 1376;
  spec.vocab = 1024;
  spec.max_seq = 64;
  const int64_t n = zerotrain::num_parameters(spec);

  const int64_t base_kb = status_kb("VmData");
  rlimit lim{};
  getrlimit(RLIMIT_DATA, &lim);
  lim.rlim_cur = static_cast<rlim_t>((base_kb + budget_mb * 1024) * 1024);
  if (setrlimit(RLIMIT_DATA, &lim) != 0) {
    std::perror("setrlimit(RLIMIT_DATA)");
    return 2;
  }
  const std::string what = "MEMORY stage=" + std::to_string(stage) + " world=" + std::to_string(world) +
                           " params=" + std::to_string(n) + " budget_mb=" + std::to_string(budget_mb) +
                           (deferred ? " deferred" : "");
  // ZT_MEMORY_TRACE=1 prints this rank's resident and peak memory along the way.
  auto trace = [rank, on = std::getenv("ZT_MEMORY_TRACE") != nullptr](const char* where) {
    if (on) {
      std::printf("rank %d %s: RSS %lld kB, peak %lld kB\n", rank, where, static_cast<long long>(status_kb("VmRSS")),
                  static_cast<long long>(status_kb("VmHWM")));
    }
  };
  try {
    torch::manual_seed(0);
    auto model = deferred ? zerotrain::make_model_deferred(spec) : zerotrain::make_model(spec);
    const std::string config = R"({"train_micro_batch_size_per_gpu": 1, "optimizer": {"type": "AdamW",
        "params": {"lr": 1e-3}}, "zero_optimization": {"stage": )" + std::to_string(stage) +
                               R"(, "stage3_prefetch_bucket_size": 4000000, "stage3_max_live_parameters": 10000000,
        "stage3_max_reuse_distance": 0}})";
    zerotrain::EngineOptions opts;
    opts.comm = comm;
    opts.device = c10::Device(c10::kCPU);
    trace("built");
    auto engine = zerotrain::initialize(model, config, opts);
    trace("engine ready");
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1 + rank);
    double first = 0, last = 0;
    for (int s = 0; s < 3; ++s) {
      at::Tensor x = at::randint(spec.vocab, {1, 33}, gen, at::kLong);
      at::Tensor loss = engine.module().as<zerotrain::CausalLM>()->loss(x.narrow(1, 0, 32), x.narrow(1, 1, 32));
      trace("forward");
      engine.backward(loss);
      trace("backward");
      engine.step();
      (s == 0 ? first : last) = loss.item<double>();
      trace("step");
    }
    const double peak_mb = static_cast<double>(status_kb("VmHWM")) / 1024.0;
    if (rank == 0) {
      std::printf("%s: trained 3 steps, loss %.3f -> %.3f; peak RSS %.0f MB on rank 0; 16 bytes x params / world = "
                  "%.0f MB\n",
                  what.c_str(), first, last, peak_mb, 16.0 * static_cast<double>(n) / world / 1e6);
    }
  } catch (const std::exception& e) {
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    std::printf("%s: rank %d out of memory: %s\n", what.c_str(), rank, msg.c_str());
    std::fflush(stdout);
    return 1;
  }
  return 0;
}
