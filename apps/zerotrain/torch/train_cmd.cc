// `zerotrain train`: the main job. Trains a built-in model on the bundled byte corpus with a DeepSpeed config.
// Started by hand it launches itself: one rank per GPU, or --ranks CPU ranks through mpirun when there is no GPU.
// Each rank prints nothing but rank 0's progress lines:
//   step 20/200 | loss 2.8412 | lr 3.00e-04 | 10,240 tok/s | scale 1 | mem 0.41 GiB
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Context.h>
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "../commands.h"
#include "zerotrain/comm.h"
#include "zerotrain/comms_logging.h"
#include "zerotrain/data.h"
#include "zerotrain/engine.h"
#include "zerotrain/memory.h"
#include "zerotrain/models.h"

namespace zerotrain::cli {
namespace {

struct TrainOptions {
  std::string config;
  std::string model = "llama-byte-small";
  int64_t steps = 200;
  int ranks = 2;               // CPU ranks when there is no GPU
  int64_t seq = 0;             // 0: the model's max_seq
  int64_t micro_batch = 0;     // resolves "auto" train_micro_batch_size_per_gpu
  int64_t log_every = 0;       // 0: steps_per_print, else 10
  uint64_t seed = 1234;
  std::string device = "auto";  // auto, cpu or cuda
  bool activation_checkpointing = false;
  std::string save_model;       // directory for model.safetensors at the end ("" = none)
  std::string checkpoint_dir;   // save_checkpoint / load_checkpoint directory ("" = none)
  int64_t save_every = 0;       // steps between checkpoints (0: one at the end)
  std::string resume;           // tag to resume from ("latest": the newest), "" = start fresh
  std::string init_from;        // Hugging Face safetensors weights to start from ("" = random initialization)
};

bool launched() {
  return std::getenv("RANK") != nullptr || std::getenv("OMPI_COMM_WORLD_RANK") != nullptr ||
         std::getenv("SLURM_PROCID") != nullptr;
}

std::string self_exe() {
  std::vector<char> buf(4096);
  const ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) throw std::runtime_error("cannot find the zerotrain executable (/proc/self/exe)");
  return std::string(buf.data(), static_cast<size_t>(n));
}

// Re-executes `zerotrain launch ... zerotrain train <args>` so that every rank runs this command.
[[noreturn]] void relaunch(const std::vector<std::string>& train_args, bool gpu, int cpu_ranks) {
  const std::string exe = self_exe();
  std::vector<std::string> argv{exe, "launch", "--no_local_rank"};
  if (!gpu) {
    argv.insert(argv.end(), {"--launcher", "openmpi", "--num_gpus", std::to_string(cpu_ranks)});
  }
  argv.push_back(exe);
  argv.push_back("train");
  argv.insert(argv.end(), train_args.begin(), train_args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  execv(exe.c_str(), cargv.data());
  throw std::runtime_error(std::string("cannot execute ") + exe + ": " + std::strerror(errno));
}

int run_rank(const TrainOptions& o) {
  const bool use_cuda = o.device == "cuda" || (o.device == "auto" && at::hasCUDA());
  CommOptions copts;
  copts.backend = use_cuda ? "auto" : (rank_info_from_env().world_size > 1 ? "mpi" : "single");
  auto comm = make_comm(copts);
  const bool lead = comm->rank() == 0;
  if (!use_cuda) at::set_num_threads(1);  // CPU ranks share the machine's cores

  const ModelSpec spec = model_spec(o.model);
  const int64_t seq = o.seq > 0 ? o.seq : spec.max_seq;
  if (seq > spec.max_seq) {
    throw std::invalid_argument("--seq " + std::to_string(seq) + " exceeds model " + o.model + "'s max_seq " +
                                std::to_string(spec.max_seq));
  }
  torch::manual_seed(o.seed);
  auto model = make_model(spec);
  if (!o.init_from.empty()) load_hf_weights(*model, o.init_from);  // before the engine: rank 0's values win

  EngineOptions eopts;
  eopts.comm = comm;
  eopts.device = use_cuda ? c10::Device(c10::kCUDA, rank_info_from_env().local_rank) : c10::Device(c10::kCPU);
  eopts.run.hidden_size = spec.hidden;
  if (o.micro_batch > 0) eopts.run.micro_batch_per_gpu = o.micro_batch;
  eopts.run.total_num_steps = o.steps;
  eopts.activation_checkpointing = o.activation_checkpointing;
  // Training FLOPs of a sample (PaLM's count: 6 N per token for the matrix products forward and backward, with N
  // every parameter, plus 12 L h s per token for attention's scores and values), for autotuning's FLOPS metric.
  eopts.flops_per_sample = static_cast<double>(seq) * (6.0 * static_cast<double>(num_parameters(spec)) +
                                                       12.0 * static_cast<double>(spec.num_layers * spec.hidden * seq));
  auto engine = initialize(model, o.config, eopts);

  const ByteCorpus corpus(default_corpus_path());
  BatchGeometry geo;
  geo.seq = seq;
  geo.micro_batch = engine.train_micro_batch_size_per_gpu();
  geo.grad_accum = engine.gradient_accumulation_steps();
  geo.world_size = comm->world_size();
  geo.seed = o.seed;
  const int64_t log_every =
      o.log_every > 0 ? o.log_every : engine.config().logging().steps_per_print.value_or(10);
  if (lead) {
    fmt::print("zerotrain train: model {} ({:.1f}M parameters), {} rank(s) on {}, ZeRO stage {}, {}, batch {} = {} x {} "
               "x {}, seq {}, corpus {} ({} bytes)\n",
               o.model, num_parameters(spec) / 1e6, comm->world_size(), eopts.device->str(),
               engine.config().zero().stage,
               engine.config().precision() == Precision::kBf16   ? "bf16"
               : engine.config().precision() == Precision::kFp16 ? "fp16"
                                                                 : "fp32",
               engine.train_batch_size(), engine.train_micro_batch_size_per_gpu(),
               engine.gradient_accumulation_steps(), comm->world_size(), seq, corpus.source(), corpus.size());
    std::fflush(stdout);
  }
  if (!o.resume.empty()) {
    engine.load_checkpoint(o.checkpoint_dir, o.resume == "latest" ? "" : o.resume);
    if (lead) fmt::print("resumed from {} ({}) at step {}\n", o.checkpoint_dir, o.resume, engine.global_steps());
  }
  auto window_start = std::chrono::steady_clock::now();
  double loss_sum = 0;
  int64_t loss_count = 0;
  for (int64_t step = engine.global_steps(); step < o.steps; ++step) {
    for (int64_t m = 0; m < engine.gradient_accumulation_steps(); ++m) {
      const Batch b = corpus.sample_batch(step, static_cast<int>(m), comm->rank(), geo);
      engine.begin_forward();  // the engine's forward bracket: its timers and the flops profiler see the forward
      at::Tensor loss = model->loss(b.tokens.to(*eopts.device), b.targets.to(*eopts.device));
      engine.end_forward();
      engine.backward(loss);
      engine.step();
      loss_sum += loss.detach().item<double>();
      ++loss_count;
    }
    if ((step + 1) % log_every == 0 || step + 1 == o.steps) {
      at::Tensor l = at::tensor({loss_sum / static_cast<double>(loss_count)}, at::kDouble).to(*eopts.device);
      comm->all_reduce(l, ReduceOp::kAvg);
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      const double tokens = static_cast<double>(log_every) * engine.train_batch_size() * seq;
      const auto mem = memory_stats(*eopts.device);
      if (lead) {
        fmt::print("step {}/{} | loss {:.4f} | lr {:.2e} | {:.0f} tok/s | scale {:g} | mem {:.2f} GiB (peak {:.2f})\n",
                   step + 1, o.steps, l.item<double>(), engine.get_lr(), tokens / secs, engine.loss_scale(),
                   mem.current_bytes / 1073741824.0, mem.peak_bytes / 1073741824.0);
        std::fflush(stdout);
      }
      loss_sum = 0;
      loss_count = 0;
      window_start = std::chrono::steady_clock::now();
    }
    if (!o.checkpoint_dir.empty() &&
        ((o.save_every > 0 && (step + 1) % o.save_every == 0) || (o.save_every == 0 && step + 1 == o.steps))) {
      // The model's Hugging Face config travels in the client state: `zerotrain convert` writes it as config.json.
      const std::string client =
          "{\"model\": \"" + o.model + "\", \"hf_config\": " + hf_config_json(spec, "float32") + "}";
      const std::string path = engine.save_checkpoint(o.checkpoint_dir, "", client);
      if (lead) fmt::print("checkpoint {}\n", path);
    }
  }
  // comms_logger: the summary of the collectives the engine issued (every rank takes part; rank 0 prints).
  if (engine.config().logging().comms_logger.enabled) comms_log_summary();
  if (lead) {
    fmt::print("done: {} steps, {} samples, {} skipped\n", engine.global_steps(), engine.global_samples(),
               engine.skipped_steps());
  }
  if (!o.save_model.empty()) {
    if (!engine.save_16bit_model(o.save_model, "model.safetensors")) return 1;
    if (lead) fmt::print("saved {}/model.safetensors\n", o.save_model);
  }
  return 0;
}

}  // namespace

void add_train_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("train", "Train a built-in model on the bundled corpus with a DeepSpeed config");
  auto o = std::make_shared<TrainOptions>();
  cmd->add_option("--config", o->config, "DeepSpeed JSON config (file or JSON text)")->required();
  cmd->add_option("--model", o->model, "Built-in model: " + [] {
    std::string names;
    for (const auto& n : model_names()) names += (names.empty() ? "" : ", ") + n;
    return names;
  }())->capture_default_str();
  cmd->add_option("--steps", o->steps, "Optimizer steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--ranks", o->ranks, "CPU ranks when there is no GPU (started through mpirun)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--seq", o->seq, "Tokens per sample (default: the model's max_seq)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--micro-batch", o->micro_batch, "Resolves \"auto\" train_micro_batch_size_per_gpu")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--log-every", o->log_every, "Steps between progress lines (default: steps_per_print, else 10)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", o->seed, "Initialization and data-order seed")->capture_default_str();
  cmd->add_option("--device", o->device, "auto, cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_flag("--activation-checkpointing", o->activation_checkpointing,
                "Recompute each transformer block in backward instead of keeping its activations");
  cmd->add_option("--save-model", o->save_model,
                  "After training, write the 16-bit weights to DIR/model.safetensors (Hugging Face names; at ZeRO "
                  "stage 3 needs zero_optimization.stage3_gather_16bit_weights_on_model_save)");
  cmd->add_option("--init-from", o->init_from,
                  "Start from Hugging Face weights: a directory with model.safetensors (or a sharded index), or a "
                  ".safetensors file, e.g. what `zerotrain convert` writes");
  cmd->add_option("--checkpoint-dir", o->checkpoint_dir,
                  "Save checkpoints here (DIR/global_step<N>, DIR/latest); loadable at any rank count and stage");
  cmd->add_option("--save-every", o->save_every, "Steps between checkpoints (default: one at the end)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--resume", o->resume, "Resume from this checkpoint tag of --checkpoint-dir (\"latest\": the newest)")
      ->needs("--checkpoint-dir");
  cmd->callback([o, cmd, &exit_code] {
    if (!launched()) {
      const bool gpu = o->device != "cpu" && at::hasCUDA();
      const int ranks = gpu ? static_cast<int>(at::getNumGPUs()) : o->ranks;
      if (ranks > 1) {
        std::vector<std::string> args;
        for (const auto& r : cmd->get_options()) {
          if (r->count() == 0 || r->get_name() == "--help") continue;
          if (r->get_expected_min() == 0) {  // a flag
            args.push_back(r->get_name());
            continue;
          }
          for (const auto& v : r->results()) args.insert(args.end(), {r->get_name(), v});
        }
        relaunch(args, gpu, ranks);
      }
    }
    try {
      exit_code = run_rank(*o);
    } catch (const AutotuningExit& e) {  // an autotuning experiment measured what it was started for
      if (rank_info_from_env().rank == 0) fmt::print(stderr, "zerotrain train: {}\n", e.what());
      exit_code = 0;
    }
  });
}

}  // namespace zerotrain::cli
