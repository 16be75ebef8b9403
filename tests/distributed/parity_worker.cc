// The parity grid: ZeRO stage x precision x gradient accumulation on this world size, each run compared with a
// single-process unsharded reference that sees the same data in the same order. Run under mpirun (or alone for
// world size 1); every rank checks, rank 0 reports. Exit 0 when every configuration agrees.
//
//   mpirun -np 4 parity_worker [--stages 0,1,2,3] [--precisions fp32,bf16,fp16] [--gas 1,3] [--steps 5]
//                              [--models tiny,llama,gpt2] [--variants default,checkpoint,...]
//
// Models: "tiny" (below: tied, frozen and unused parameters; at stage 3 one unit gathered for forward and for
// backward), "shared" (a Segmented module running one layer twice and tying its head to its embedding: a unit per
// segment, and with checkpointing one parameter's gradient arrives in several recomputations), "llama" and "gpt2" (the built-in llama-tiny and gpt2-tiny: at stage 3 a unit per block plus the
// embedding and head, prefetched; gpt2 ties the head to the embedding). Stage 3 runs with a persistence threshold
// of 100 elements and a small prefetch bucket, so most parameters are partitioned and prefetch is bounded.
//
// Tolerances (why): fp32 losses agree within 1e-5 relative and parameters within 1e-5 of their scale: the only
// differences are summation order in the reductions. bf16 and fp16 reduce gradients in the 16-bit communication
// dtype across ranks while the reference sums them in fp32 in one process, and the forward runs in 16 bits on a
// different batch split (per-rank micro-batches vs one), so each step's gradients differ by about one 16-bit
// rounding (2^-8 for bf16, 2^-11 for fp16) relative; over a few Adam steps (whose update size is ~lr regardless of
// gradient scale) that bounds loss differences near 5e-3 (bf16) / 1e-3 (fp16) relative and parameter differences
// near 3e-2 / 1e-2 of the parameter's scale (measured: about a third of each bound on 2 and 4 CPU ranks). The
// built-in models get 8e-2 for bf16 parameters: their embeddings have rows (tokens the data never uses) whose only
// gradients come through the head and sit near Adam's eps, where one bf16 rounding of the gradient moves the update
// most: such an element can end up to about lr x steps / (the tensor's scale) apart. Measured: 0.039 for gpt2-tiny's
// tied embedding at every stage (stage 0 on one rank included); 0.062 for llama-tiny's embedding at stage 3 on 4 CPU
// ranks with the CPU Adam in DeepSpeed's formula (0.014 with ATen's, which rounds differently); fp32 runs agree
// within 1e-5 with either.
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "precision/loss_scaler.h"
#include "zerotrain/comm.h"
#include "zerotrain/engine.h"
#include "zerotrain/models.h"
#include "zerotrain/segmented.h"

namespace {

constexpr int64_t kVocab = 64, kSeq = 8, kMicroBatch = 2, kHidden = 24;
// Adam's eps is large on purpose: with the usual 1e-8, an element whose gradient is ~0 moves by +-lr depending on
// the sign of rounding noise, which would turn 16-bit rounding into O(lr) parameter differences and blunt the
// parameter comparison. With eps near the gradients' scale, updates stay proportional to gradient differences.
constexpr double kLr = 1e-2, kWeightDecay = 0.01, kClip = 1.0, kEps = 1e-3;

// A small model with the patterns that matter to gradient reduction: a tied weight (embedding = output head), a
// frozen parameter, an unused parameter, and parameters of very different sizes across several buckets.
struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    embed = register_module("embed", torch::nn::Embedding(kVocab, kHidden));
    fc1 = register_module("fc1", torch::nn::Linear(kHidden, 2 * kHidden));
    fc2 = register_module("fc2", torch::nn::Linear(2 * kHidden, kHidden));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kHidden})));
    unused = register_module("unused", torch::nn::Linear(kHidden, 3));
    frozen_bias = register_parameter("frozen_bias", torch::randn({kHidden}) * 0.1, /*requires_grad=*/false);
  }
  // tokens, targets: (B, S) int64 -> mean cross-entropy (fp32).
  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& targets) {
    at::Tensor h = embed->forward(tokens) + frozen_bias;
    h = h + fc2->forward(at::gelu(fc1->forward(h)));
    h = norm->forward(h);
    at::Tensor logits = at::matmul(h, embed->weight.t());  // tied head
    return at::cross_entropy_loss(logits.reshape({-1, kVocab}).to(at::kFloat), targets.reshape({-1}));
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, unused{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  at::Tensor frozen_bias;
};
TORCH_MODULE(TinyNet);

// A Segmented module with the patterns that stress stage 3 and activation checkpointing together: a layer run
// twice in one forward (segments 1, 3, 2, 3), and a head tied to the embedding (segment 4 reads segment 0's weight).
struct SharedNetImpl : torch::nn::Module, zerotrain::Segmented {
  SharedNetImpl() {
    embed = register_module("embed", torch::nn::Embedding(kVocab, kHidden));
    for (int i = 0; i < 3; ++i) {
      layers.push_back(register_module("layer" + std::to_string(i), torch::nn::Linear(kHidden, kHidden)));
    }
  }
  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& targets) {
    at::Tensor h = run_segment(0, [this](const at::Tensor& t) { return embed->forward(t); }, tokens);
    for (int64_t s : {1, 3, 2, 3}) {
      torch::nn::LinearImpl* layer = layers[s - 1].get();
      h = run_segment(s, [layer](const at::Tensor& x) { return x + at::gelu(layer->forward(x)); }, h);
    }
    at::Tensor logits = run_segment(4, [this](const at::Tensor& x) { return at::matmul(x, embed->weight.t()); }, h);
    return at::cross_entropy_loss(logits.reshape({-1, kVocab}).to(at::kFloat), targets.reshape({-1}));
  }
  std::vector<std::vector<at::Tensor>> segment_parameters() const override {
    std::vector<std::vector<at::Tensor>> out{{embed->weight}};
    for (const auto& l : layers) out.push_back(l->parameters());
    out.push_back({embed->weight});
    return out;
  }
  bool checkpointable(int64_t index) const override { return index >= 1 && index <= 3; }
  torch::nn::Embedding embed{nullptr};
  std::vector<torch::nn::Linear> layers;
};

struct RunConfig {
  int stage;
  std::string precision;
  int gas;
  std::string optimizer;  // "adamw" or "sgd" (SGD with momentum is sensitive to gradient scale; Adam is not)
  std::string variant;    // "default", or a setting that must not change the result:
                          // "prescale" (prescale_gradients), "predivide" (gradient_predivide_factor 2),
                          // "comm_fp32" (communication_data_type fp32), "no_overlap" (overlap_comm false),
                          // "checkpoint" (activation checkpointing of every block; built-in models),
                          // "no_prefetch" (stage3_prefetch_bucket_size 0, stage3_max_reuse_distance 0),
                          // "offload" (offload_optimizer to the CPU; stages 1-3, stage 0 skipped),
                          // "offload_param" (offload_optimizer and offload_param to the CPU; stage 3 only),
                          // "offload_nvme", "offload_param_nvme" (the same to NVMe: swap files in $TMPDIR or /tmp),
                          // "joined" (stage3_module_granularity_threshold 100000: neighbouring blocks share a unit;
                          // stage 3 only)
  std::string model;      // "tiny", "shared", "llama" or "gpt2"
};

// A model and how a micro-step computes its loss from (tokens, targets).
struct Net {
  std::shared_ptr<torch::nn::Module> module;
  std::shared_ptr<TinyNetImpl> tiny;             // set for "tiny"
  std::shared_ptr<zerotrain::CausalLM> lm;      // set for the built-in models
  std::shared_ptr<SharedNetImpl> shared;         // set for "shared"

  at::Tensor loss(const at::Tensor& tokens, const at::Tensor& targets) const {
    if (tiny) return tiny->forward(tokens, targets);
    if (shared) return shared->forward(tokens, targets);
    return lm->loss(tokens, targets);
  }
};

Net make_net(const std::string& name) {
  if (name == "tiny") {
    auto m = std::make_shared<TinyNetImpl>();
    return {m, m, nullptr, nullptr};
  }
  if (name == "shared") {
    auto m = std::make_shared<SharedNetImpl>();
    return {m, nullptr, nullptr, m};
  }
  if (name != "llama" && name != "gpt2") throw std::invalid_argument("--models: unknown model " + name);
  auto lm = zerotrain::make_model(zerotrain::model_spec(name == "llama" ? "llama-tiny" : "gpt2-tiny"));
  return {lm, nullptr, lm, nullptr};
}

constexpr double kSgdLr = 0.1, kSgdMomentum = 0.9;

// SGD runs without clipping: clipping to a norm would hide a wrong gradient scale (e.g. averaging over ranks
// missing), and SGD exists in the grid precisely to expose one.
double clip_of(const RunConfig& rc) { return rc.optimizer == "sgd" ? 0.0 : kClip; }

std::string ds_config(const RunConfig& rc, int world) {
  std::ostringstream c;
  c << R"({"train_micro_batch_size_per_gpu": )" << kMicroBatch << R"(, "gradient_accumulation_steps": )" << rc.gas
    << R"(, "gradient_clipping": )" << clip_of(rc)
    << R"(, "optimizer": )";
  if (rc.optimizer == "sgd") {
    c << R"({"type": "SGD", "params": {"lr": )" << kSgdLr << R"(, "momentum": )" << kSgdMomentum
      << R"(, "weight_decay": )" << kWeightDecay << "}}";
  } else {
    c << R"({"type": "AdamW", "params": {"lr": )" << kLr << R"(, "eps": )" << kEps << R"(, "weight_decay": )"
      << kWeightDecay << "}}";
  }
  c << R"(, "zero_optimization": {"stage": )" << rc.stage
    << R"(, "reduce_bucket_size": 1500, "allgather_bucket_size": 700, "overlap_comm": )"
    << (rc.gas == 1 && rc.variant != "no_overlap" ? "true" : "false");
  if (rc.stage == 3) {
    c << R"(, "stage3_param_persistence_threshold": 100, "stage3_prefetch_bucket_size": )"
      << (rc.variant == "no_prefetch" ? 0 : 5000);
    if (rc.variant == "no_prefetch") c << R"(, "stage3_max_reuse_distance": 0)";
    if (rc.variant == "joined") c << R"(, "stage3_module_granularity_threshold": 100000)";
  }
  if (rc.variant == "offload" || rc.variant == "offload_param") {
    c << R"(, "offload_optimizer": {"device": "cpu", "pin_memory": true})";
  }
  if (rc.variant == "offload_param") c << R"(, "offload_param": {"device": "cpu", "pin_memory": true})";
  const char* tmp = std::getenv("TMPDIR");
  const std::string nvme = std::string(R"("device": "nvme", "nvme_path": ")") + (tmp != nullptr ? tmp : "/tmp") + "\"";
  if (rc.variant == "offload_nvme" || rc.variant == "offload_param_nvme") c << R"(, "offload_optimizer": {)" << nvme << "}";
  if (rc.variant == "offload_param_nvme") c << R"(, "offload_param": {)" << nvme << "}";
  c << "}";
  if (rc.variant == "prescale") c << R"(, "prescale_gradients": true)";
  if (rc.variant == "predivide") c << R"(, "gradient_predivide_factor": 2.0)";
  if (rc.variant == "comm_fp32") c << R"(, "communication_data_type": "fp32")";
  if (rc.precision == "bf16") c << R"(, "bf16": {"enabled": true})";
  if (rc.precision == "fp16") c << R"(, "fp16": {"enabled": true, "initial_scale_power": 12})";
  c << "}";
  (void)world;
  return c.str();
}

// All samples: (steps, gas, world * micro, seq) tokens and next-token targets, the same on every rank.
std::pair<at::Tensor, at::Tensor> make_data(int steps, int gas, int world) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  at::Tensor seq = at::randint(kVocab, {steps, gas, world * kMicroBatch, kSeq + 1}, gen, at::kLong);
  return {seq.narrow(3, 0, kSeq).contiguous(), seq.narrow(3, 1, kSeq).contiguous()};
}

at::ScalarType dtype_of(const std::string& p) {
  return p == "bf16" ? at::kBFloat16 : p == "fp16" ? at::kHalf : at::kFloat;
}

// The unsharded reference: one process, the whole global micro-batch at once, fp32 master weights updated by
// torch's AdamW (DeepSpeed's AdamW mode is the same update), the model in the training dtype.
struct Reference {
  std::vector<double> losses;
  std::vector<at::Tensor> params;  // fp32, final
};

Reference run_reference(const RunConfig& rc, int steps, const at::Tensor& tokens, const at::Tensor& targets,
                        c10::Device device) {
  torch::manual_seed(7);
  Net net = make_net(rc.model);
  auto& model = net.module;
  model->to(device);
  std::vector<at::Tensor> trainable;
  for (auto& p : model->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  // Master copies in fp32; the model runs in the training dtype.
  std::vector<at::Tensor> master;
  for (auto& p : trainable) master.push_back(p.detach().clone().to(at::kFloat).set_requires_grad(true));
  model->to(dtype_of(rc.precision));
  std::unique_ptr<torch::optim::Optimizer> opt;
  if (rc.optimizer == "sgd") {
    opt = std::make_unique<torch::optim::SGD>(
        master, torch::optim::SGDOptions(kSgdLr).momentum(kSgdMomentum).weight_decay(kWeightDecay));
  } else {
    opt = std::make_unique<torch::optim::AdamW>(
        master, torch::optim::AdamWOptions(kLr).weight_decay(kWeightDecay).eps(kEps));
  }
  zerotrain::Fp16Config fp16;
  fp16.enabled = rc.precision == "fp16";
  fp16.initial_scale_power = 12;
  fp16.dynamic_args_given = true;
  zerotrain::detail::LossScaler scaler(fp16, /*zero_optimizer=*/rc.stage >= 1);
  Reference ref;
  std::vector<at::Tensor> acc(master.size());
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < acc.size(); ++i) acc[i] = at::zeros_like(master[i]);
    for (int m = 0; m < rc.gas; ++m) {
      const at::Tensor tok = tokens[s][m].to(device), tgt = targets[s][m].to(device);
      at::Tensor loss = net.loss(tok, tgt);
      ref.losses.push_back(loss.item<double>());
      (loss.to(at::kFloat) * (scaler.scale() / rc.gas)).backward();
      for (size_t i = 0; i < trainable.size(); ++i) {
        if (trainable[i].grad().defined()) acc[i].add_(trainable[i].grad().to(at::kFloat));
        trainable[i].mutable_grad().reset();
      }
    }
    double sq = 0;
    for (auto& a : acc) sq += a.pow(2).sum().item<double>();
    const double norm = std::sqrt(sq) / scaler.scale();
    if (fp16.enabled && scaler.update(!std::isfinite(norm))) continue;
    double combined = scaler.scale();
    if (clip_of(rc) > 0 && (norm + 1e-6) / clip_of(rc) > 1) combined *= (norm + 1e-6) / clip_of(rc);
    for (size_t i = 0; i < master.size(); ++i) master[i].mutable_grad() = acc[i] / combined;
    opt->step();
    at::NoGradGuard ng;
    for (size_t i = 0; i < master.size(); ++i) trainable[i].copy_(master[i]);
  }
  for (auto& m : master) ref.params.push_back(m.detach().clone());
  return ref;
}

struct Outcome {
  double max_loss_rel = 0;
  double max_param_err = 0;  // max |p - p_ref| / (max |p_ref| of that tensor)
  std::string worst_param;   // the parameter with max_param_err
};

Outcome run_engine(const RunConfig& rc, int steps, const at::Tensor& tokens, const at::Tensor& targets,
                   const std::shared_ptr<zerotrain::Comm>& comm, const Reference& ref, c10::Device device) {
  torch::manual_seed(7 + comm->rank());  // different init per rank: the engine must broadcast rank 0's
  if (comm->rank() == 0) torch::manual_seed(7);
  Net net = make_net(rc.model);
  auto& model = net.module;
  zerotrain::EngineOptions opts;
  opts.comm = comm;
  opts.device = device;
  opts.activation_checkpointing = rc.variant == "checkpoint";
  const std::string cfg = ds_config(rc, comm->world_size());
  auto engine = net.tiny     ? zerotrain::initialize(net.tiny, cfg, opts)
                : net.shared ? zerotrain::initialize(net.shared, cfg, opts)
                             : zerotrain::initialize(net.lm, cfg, opts);
  Outcome out;
  const int r = comm->rank();
  size_t k = 0;
  for (int s = 0; s < steps; ++s) {
    for (int m = 0; m < rc.gas; ++m) {
      at::Tensor tok = tokens[s][m].narrow(0, r * kMicroBatch, kMicroBatch).to(device);
      at::Tensor tgt = targets[s][m].narrow(0, r * kMicroBatch, kMicroBatch).to(device);
      // Segmented models run through the engine's segment runner whichever way they are called.
      at::Tensor loss = net.tiny ? engine.forward(tok, tgt) : net.loss(tok, tgt);
      engine.backward(loss);
      engine.step();
      at::Tensor l = loss.detach().to(at::kDouble).reshape({1});
      comm->all_reduce(l, zerotrain::ReduceOp::kAvg);
      const double rel = std::abs(l.item<double>() - ref.losses[k]) / std::max(1e-12, std::abs(ref.losses[k]));
      out.max_loss_rel = std::max(out.max_loss_rel, rel);
      ++k;
    }
  }
  zerotrain::GatheredParameters full(engine);  // stage 3: parameters hold no data between uses
  std::vector<at::Tensor> trainable;
  std::vector<std::string> names;
  for (auto& item : model->named_parameters()) {
    if (item.value().requires_grad()) {
      trainable.push_back(item.value());
      names.push_back(item.key());
    }
  }
  for (size_t i = 0; i < trainable.size(); ++i) {
    const at::Tensor& want = ref.params[i];
    const double scale = std::max(1e-6, want.abs().max().item<double>());
    const double err = (trainable[i].detach().to(at::kFloat) - want.to(trainable[i].device())).abs().max().item<double>() / scale;
    if (err > out.max_param_err) {
      out.max_param_err = err;
      out.worst_param = names[i];
    }
  }
  return out;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string stages = "0,1,2,3", precisions = "fp32,bf16,fp16", gas_list = "1,3", optimizers = "adamw,sgd",
              variants = "default", device_name = "cpu", models = "tiny";
  int steps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--stages") stages = v;
    else if (a == "--precisions") precisions = v;
    else if (a == "--gas") gas_list = v;
    else if (a == "--steps") steps = std::stoi(v);
    else if (a == "--device") device_name = v;
    else if (a == "--optimizers") optimizers = v;
    else if (a == "--variants") variants = v;
    else if (a == "--models") models = v;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  at::set_num_threads(1);
  const bool cpu_ranks = device_name == "cpu" && zerotrain::rank_info_from_env().world_size > 1;
  auto comm = zerotrain::make_comm({.backend = cpu_ranks ? "mpi" : "auto", .timeout = std::chrono::seconds(120)});
  const int world = comm->world_size();
  const c10::Device device = device_name == "cpu" ? c10::Device(c10::kCPU)
                                                  : c10::Device(c10::kCUDA, zerotrain::rank_info_from_env().local_rank);
  int failures = 0, runs = 0;
  for (const auto& model_name : split(models)) {
  for (const auto& st : split(stages)) {
    for (const auto& prec : split(precisions)) {
      for (const auto& g : split(gas_list)) {
       for (const auto& optname : split(optimizers)) {
       for (const auto& variant : split(variants)) {
        const RunConfig rc{std::stoi(st), prec, std::stoi(g), optname, variant, model_name};
        if ((variant == "offload" || variant == "offload_nvme") && rc.stage == 0) continue;  // offload: stages 1-3
        if ((variant == "offload_param" || variant == "offload_param_nvme" || variant == "joined") && rc.stage != 3) {
          continue;  // stage 3 only
        }
        const auto [tokens, targets] = make_data(steps, rc.gas, world);
        // The reference sees the global micro-batch: all ranks' samples at once.
        const Reference ref = run_reference(rc, steps, tokens, targets, device);
        const Outcome o = run_engine(rc, steps, tokens, targets, comm, ref, device);
        const double loss_tol = prec == "fp32" ? 1e-5 : prec == "bf16" ? 5e-3 : 1e-3;
        const double param_tol = prec == "fp32" ? 1e-5 : prec == "bf16" ? (model_name == "tiny" ? 3e-2 : 8e-2) : 1e-2;
        const bool ok = o.max_loss_rel <= loss_tol && o.max_param_err <= param_tol;
        failures += ok ? 0 : 1;
        ++runs;
        if (comm->rank() == 0) {
          std::printf("PARITY world=%d model=%s stage=%d precision=%s gas=%d optimizer=%s variant=%s: max loss rel diff "
                      "%.3g (tol %.0e), max param err %.3g (tol %.0e, %s): %s\n",
                      world, rc.model.c_str(), rc.stage, prec.c_str(), rc.gas, rc.optimizer.c_str(), rc.variant.c_str(),
                      o.max_loss_rel, loss_tol,
                      o.max_param_err, param_tol,
                      o.worst_param.c_str(), ok ? "ok" : "FAIL");
          std::fflush(stdout);
        }
       }
       }
      }
    }
  }
  }
  if (comm->rank() == 0) std::printf("%d passed, %d failed\n", runs - failures, failures);
  return failures == 0 ? 0 : 1;
}
