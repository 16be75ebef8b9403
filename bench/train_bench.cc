// End-to-end training throughput of zerotrain on a built-in model, measured like bench/peers/train_anchor.py
// (random tokens, median step time after warmup, tokens/s per GPU, TFLOP/s per GPU with 6N + 6*L*h*s FLOPs per
// token, peak allocated memory). Prints one `RESULT {json}` line on rank 0.
//
//   zerotrain launch --no_local_rank build/bench/train_bench --model llama-1.1b --stage 2 --seq 2048 --mb 4
//   zerotrain launch --no_local_rank build/bench/train_bench --model llama-3-8b --stage 3 --seq 8192 --mb 2 --ckpt 1
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "zerotrain/comm.h"
#include "zerotrain/engine.h"
#include "zerotrain/memory.h"
#include "zerotrain/models.h"

#ifdef ZEROTRAIN_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace {

void sync(const c10::Device& d) {
#ifdef ZEROTRAIN_WITH_CUDA
  if (d.is_cuda()) c10::cuda::device_synchronize();
#endif
  (void)d;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_name = "llama-1.1b", precision = "bf16";
  int stage = 2, steps = 12, warmup = 4;
  bool ckpt = false, deferred = false;
  std::string attention = "default", zero_extra, tag;
  int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, ffn = 0, vocab = 0;  // 0: the preset's
  int64_t seq = 2048, mb = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--model") model_name = v;
    else if (a == "--stage") stage = std::stoi(v);
    else if (a == "--steps") steps = std::stoi(v);
    else if (a == "--warmup") warmup = std::stoi(v);
    else if (a == "--seq") seq = std::stoll(v);
    else if (a == "--mb") mb = std::stoll(v);
    else if (a == "--precision") precision = v;
    else if (a == "--ckpt") ckpt = v == "1" || v == "true";
    else if (a == "--deferred") deferred = v == "1" || v == "true";
    else if (a == "--attention") attention = v;
    else if (a == "--layers") layers = std::stoll(v);
    else if (a == "--hidden") hidden = std::stoll(v);
    else if (a == "--heads") heads = std::stoll(v);
    else if (a == "--kv-heads") kv_heads = std::stoll(v);
    else if (a == "--ffn") ffn = std::stoll(v);
    else if (a == "--vocab") vocab = std::stoll(v);
    else if (a == "--zero-extra") zero_extra = v;
    else if (a == "--tag") tag = v;
    else {
      fmt::print(stderr, "train_bench: unknown argument {} (allowed: --model --stage --steps --warmup --seq --mb "
                         "--precision --ckpt 0|1 --deferred 0|1 --attention default|cudnn|fa3, --zero-extra '\"key\": value, ...' (more "
                         "zero_optimization keys), --tag NAME (in the RESULT line), and --layers --hidden --heads "
                         "--kv-heads --ffn --vocab to change the preset's shape)\n", a);
      return 2;
    }
  }
  auto comm = zerotrain::make_comm();
  const bool cuda = at::hasCUDA();
  const c10::Device device = cuda ? c10::Device(c10::kCUDA, zerotrain::rank_info_from_env().local_rank)
                                  : c10::Device(c10::kCPU);
  zerotrain::ModelSpec spec = zerotrain::model_spec(model_name);
  spec.max_seq = std::max(spec.max_seq, seq);
  for (auto [field, value] : {std::pair{&spec.num_layers, layers}, std::pair{&spec.hidden, hidden},
                              std::pair{&spec.num_heads, heads}, std::pair{&spec.num_kv_heads, kv_heads},
                              std::pair{&spec.ffn, ffn}, std::pair{&spec.vocab, vocab}}) {
    if (value > 0) *field = value;
  }
  zerotrain::validate_model_spec(spec);
  if (attention == "cudnn") {
    using B = at::SDPBackend;
    at::globalContext().setSDPPriorityOrder(
        {static_cast<int64_t>(B::cudnn_attention), static_cast<int64_t>(B::flash_attention),
         static_cast<int64_t>(B::efficient_attention), static_cast<int64_t>(B::math),
         static_cast<int64_t>(B::overrideable)});
  } else if (attention == "fa3") {
    at::globalContext().setSDPUseFA3(true);
  } else if (attention != "default") {
    fmt::print(stderr, "train_bench: --attention {}: allowed default, cudnn, fa3\n", attention);
    return 2;
  }
  torch::manual_seed(0);
  auto model = deferred ? zerotrain::make_model_deferred(spec) : zerotrain::make_model(spec);
  const std::string config = fmt::format(
      R"({{"train_micro_batch_size_per_gpu": {}, "gradient_accumulation_steps": 1,
          "optimizer": {{"type": "AdamW", "params": {{"lr": 1e-4}}}}, "gradient_clipping": 1.0,
          "{}": {{"enabled": {}}}, "zero_optimization": {{"stage": {}, "overlap_comm": true{}}}}})",
      mb, precision == "fp16" ? "fp16" : "bf16", precision == "fp32" ? "false" : "true", stage,
      zero_extra.empty() ? std::string() : ", " + zero_extra);
  zerotrain::EngineOptions opts;
  opts.comm = comm;
  opts.device = device;
  opts.activation_checkpointing = ckpt;
  auto engine = zerotrain::initialize(model, config, opts);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1234 + comm->rank());
  zerotrain::reset_peak_memory(device);
  std::vector<double> times;
  double first_loss = 0, last_loss = 0;
  // Peak memory of each phase of the last warmup step (the engine's state and the allocator are warm by then).
  std::string phases;
  int64_t earlier_peak = 0;
  auto phase_peak = [&](const char* name, bool on) {
    if (!on) return;
    phases += fmt::format("{}\"{}\": {:.2f}", phases.empty() ? "" : ", ", name,
                          static_cast<double>(zerotrain::memory_stats(device).peak_bytes) / 1073741824.0);
  };
  for (int s = 0; s < warmup + steps; ++s) {
    at::Tensor x = at::randint(spec.vocab, {mb, seq + 1}, gen, at::kLong).to(device);
    const bool trace = s == warmup - 1;
    sync(device);
    if (trace) {
      earlier_peak = zerotrain::memory_stats(device).peak_bytes;  // the run's peak so far, kept
      zerotrain::reset_peak_memory(device);
    }
    phase_peak("start", trace);
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor loss = model->loss(x.narrow(1, 0, seq), x.narrow(1, 1, seq));
    phase_peak("forward", trace);
    engine.backward(loss);
    phase_peak("backward", trace);
    engine.step();
    phase_peak("step", trace);
    sync(device);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_loss = loss.item<double>();
    if (s == 0) first_loss = last_loss;
    if (s >= warmup) times.push_back(dt);
  }
  std::sort(times.begin(), times.end());
  const double med = times[times.size() / 2];
  const double n = static_cast<double>(zerotrain::num_parameters(spec));
  const double tok_s = static_cast<double>(mb * seq) / med;
  const double flops_tok = 6 * n + 6.0 * spec.num_layers * spec.hidden * seq;
  const int64_t run_peak = std::max(earlier_peak, zerotrain::memory_stats(device).peak_bytes);
  at::Tensor peak = at::tensor({static_cast<double>(run_peak)}, at::kDouble).to(device);
  comm->all_reduce(peak, zerotrain::ReduceOp::kMax);
  if (comm->rank() == 0) {
    fmt::print("RESULT {{\"mode\": \"zerotrain_stage{}{}\", \"world\": {}, \"params_M\": {:.1f}, \"seq\": {}, \"mb\": {}, "
               "\"ckpt\": {}, \"precision\": \"{}\", \"step_s\": {:.4f}, \"tok_s_per_gpu\": {:.0f}, \"tflops_per_gpu\": {:.1f}, "
               "\"peak_mem_GiB_max_rank\": {:.2f}, \"loss_first\": {:.3f}, \"loss_last\": {:.3f}, "
               "\"rank0_peak_GiB_by_phase\": {{{}}}}}\n",
               stage, (attention == "default" ? "" : "_" + attention) + (tag.empty() ? "" : "_" + tag), comm->world_size(), n / 1e6, seq, mb, ckpt, precision, med, tok_s, flops_tok * tok_s / 1e12,
               peak.item<double>() / 1073741824.0, first_loss, last_loss, phases);
  }
  return 0;
}
