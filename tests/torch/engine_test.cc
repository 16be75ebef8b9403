// The Engine API on one rank: counters and accumulation boundaries, lr schedule, grad norm, loss scaling and
// skipped steps, and the errors users hit.
#include "zerotrain/engine.h"
#include "zero/zero_optimizer.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#ifdef ZEROTRAIN_WITH_CUDA
#include <ATen/cuda/Sleep.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace zerotrain {
namespace {

struct LinearRegImpl : torch::nn::Module {
  LinearRegImpl() { fc = register_module("fc", torch::nn::Linear(4, 1)); }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& y) { return (fc->forward(x) - y).pow(2).mean(); }
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(LinearReg);

// Weights 0.5 and the given bias: steps that tests can compute by hand.
LinearReg filled_model(double bias = 0) {
  LinearReg model;
  at::NoGradGuard ng;
  model->fc->weight.fill_(0.5);
  model->fc->bias.fill_(bias);
  return model;
}

EngineOptions single_rank() {
  EngineOptions o;
  o.comm = make_single_comm();
  o.device = c10::Device(c10::kCPU);
  return o;
}

TEST(Engine, CountersAndAccumulationBoundaries) {
  LinearReg model;
  auto engine = initialize(model.ptr(), R"({"train_batch_size": 6, "train_micro_batch_size_per_gpu": 2,
      "optimizer": {"type": "SGD", "params": {"lr": 0.1}}})", single_rank());
  EXPECT_EQ(engine.gradient_accumulation_steps(), 3);
  EXPECT_EQ(engine.train_batch_size(), 6);
  const at::Tensor before = model->fc->weight.detach().clone();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(engine.is_gradient_accumulation_boundary(), i == 2);
    engine.backward(engine.forward(at::ones({2, 4}), at::zeros({2, 1})));
    engine.step();
    if (i < 2) EXPECT_TRUE(at::equal(model->fc->weight, before)) << "stepped before the boundary";
  }
  EXPECT_FALSE(at::equal(model->fc->weight, before));
  EXPECT_EQ(engine.global_steps(), 1);
  EXPECT_EQ(engine.global_samples(), 6);
  EXPECT_EQ(engine.micro_steps(), 3);
  ASSERT_TRUE(engine.get_global_grad_norm().has_value());
  EXPECT_GT(*engine.get_global_grad_norm(), 0);
}

TEST(Engine, SgdStepMatchesHandComputation) {
  LinearReg model = filled_model();
  auto engine = initialize(model.ptr(), R"({"train_batch_size": 1, "gradient_clipping": 0,
      "optimizer": {"type": "SGD", "params": {"lr": 0.1}}})", single_rank());
  // loss = (sum(0.5 * x) - y)^2 with x = 1, y = 0: prediction 2, d/dw = 2 * 2 * x = 4, d/db = 4.
  engine.backward(engine.forward(at::ones({1, 4}), at::zeros({1, 1})));
  engine.step();
  EXPECT_NEAR(model->fc->weight[0][0].item<double>(), 0.5 - 0.1 * 4, 1e-6);
  EXPECT_NEAR(model->fc->bias[0].item<double>(), -0.1 * 4, 1e-6);
  EXPECT_NEAR(*engine.get_global_grad_norm(), std::sqrt(5 * 16.0), 1e-5);
}

TEST(Engine, LrScaleGivesAParameterItsOwnLearningRate) {
  for (const char* optimizer : {R"({"type": "SGD", "params": {"lr": 0.1}})",
                                R"({"type": "AdamW", "params": {"lr": 0.1, "weight_decay": 0.5}})"}) {
    for (int stage : {0, 3}) {
      // One step with the bias at lr_scale 3 (the weight at 1, as if unset): the bias must move as in a run at lr
      // 0.3, the weight as in a run at lr 0.1 (the gradients of one step do not depend on the learning rate).
      const auto run = [&](double lr, bool scaled) {
        LinearReg model = filled_model(0.25);
        EngineOptions o = single_rank();
        if (scaled) o.lr_scale = {{model->fc->bias, 3.0}, {model->fc->weight, 1.0}};
        std::string opt = optimizer;
        opt.replace(opt.find("0.1"), 3, std::to_string(lr));
        auto engine = initialize(model.ptr(), R"({"train_batch_size": 1, "gradient_clipping": 0, "optimizer": )" +
                                     opt + R"(, "zero_optimization": {"stage": )" + std::to_string(stage) + "}}",
                                 o);
        engine.backward(engine.forward(at::ones({1, 4}), at::zeros({1, 1})));
        engine.step();
        return std::pair{model->fc->weight.detach().clone(), model->fc->bias.detach().clone()};
      };
      const auto [w_scaled, b_scaled] = run(0.1, true);
      const auto [w_base, b_base] = run(0.1, false);
      const auto [w_fast, b_fast] = run(0.3, false);
      EXPECT_TRUE(at::allclose(w_scaled, w_base, 1e-6, 1e-7)) << optimizer << " stage " << stage;
      EXPECT_TRUE(at::allclose(b_scaled, b_fast, 1e-6, 1e-7))
          << optimizer << " stage " << stage << ": " << b_scaled << " vs " << b_fast;
      EXPECT_FALSE(at::allclose(b_scaled, b_base, 1e-6, 1e-7)) << optimizer << " stage " << stage;
    }
  }
  LinearReg model;
  for (double bad : {0.0, -1.0, std::nan("")}) {
    EngineOptions o = single_rank();
    o.lr_scale = {{model->fc->bias, bad}};
    try {
      initialize(model.ptr(), R"({"train_batch_size": 1, "optimizer": {"type": "SGD", "params": {"lr": 0.1}}})", o);
      ADD_FAILURE() << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("allowed: a finite number > 0"), std::string::npos) << e.what();
    }
  }
  EngineOptions o = single_rank();
  o.lr_scale = {{at::ones({2}), 2.0}};
  try {
    initialize(model.ptr(), R"({"train_batch_size": 1, "optimizer": {"type": "SGD", "params": {"lr": 0.1}}})", o);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("EngineOptions::lr_scale: a tensor of shape [2] is not a parameter"),
              std::string::npos)
        << e.what();
  }
}

TEST(Engine, ManualAccumulationBoundaries) {
  // DeepSpeed's set_gradient_accumulation_boundary: with gradient_accumulation_steps 1, three micro-steps of which
  // only the last is a boundary step once, on the sum of the three gradients (the loss is scaled by 1/1).
  for (int stage : {0, 1, 2}) {
    LinearReg model = filled_model();
    auto engine = initialize(model.ptr(), R"({"train_batch_size": 1, "gradient_clipping": 0,
        "optimizer": {"type": "SGD", "params": {"lr": 0.1}}, "zero_optimization": {"stage": )" +
                                               std::to_string(stage) + "}}",
                             single_rank());
    for (int i = 0; i < 3; ++i) {
      engine.set_gradient_accumulation_boundary(i == 2);
      EXPECT_EQ(engine.is_gradient_accumulation_boundary(), i == 2);
      engine.backward(engine.forward(at::ones({1, 4}), at::zeros({1, 1})));
      engine.step();
      if (i == 0) {
        try {
          engine.save_checkpoint(testing::TempDir() + "/zt_manual_boundary");
          ADD_FAILURE() << "saved inside an accumulation";
        } catch (const std::invalid_argument& e) {
          EXPECT_NE(std::string(e.what()).find("1 micro-step(s) into a gradient accumulation"), std::string::npos)
              << e.what();
        }
      }
    }
    // Each micro-step's gradient is 4 per element (as in SgdStepMatchesHandComputation): 0.5 - 0.1 * 12.
    EXPECT_NEAR(model->fc->weight[0][0].item<double>(), 0.5 - 0.1 * 12, 1e-5) << "stage " << stage;
    EXPECT_EQ(engine.global_steps(), 1);
    EXPECT_EQ(engine.micro_steps(), 3);
    engine.set_gradient_accumulation_boundary(std::nullopt);  // back to counting: every micro-step with gas 1
    EXPECT_TRUE(engine.is_gradient_accumulation_boundary());
  }
}

TEST(Engine, ScheduleDrivesLearningRate) {
  LinearReg model;
  auto engine = initialize(model.ptr(), R"({"train_batch_size": 1,
      "optimizer": {"type": "AdamW", "params": {"lr": 0.01}},
      "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.01,
                                                   "warmup_num_steps": 10, "warmup_type": "linear"}}})",
                           single_rank());
  // DeepSpeed's warmup gives warmup_min_lr for the first two steps, then rises.
  std::vector<double> lrs{engine.get_lr()};
  for (int i = 0; i < 5; ++i) {
    engine.backward(engine.forward(at::ones({1, 4}), at::zeros({1, 1})));
    engine.step();
    lrs.push_back(engine.get_lr());
  }
  EXPECT_EQ(lrs[0], 0.0);
  for (size_t i = 2; i < lrs.size(); ++i) EXPECT_GT(lrs[i], lrs[i - 1]) << "step " << i;
  EXPECT_LT(lrs.back(), 0.01);
}

TEST(Engine, SetLrReplacesTheScheduleAndRejectsBadValues) {
  LinearReg model = filled_model();
  auto engine = initialize(model.ptr(), R"({"train_batch_size": 1, "gradient_clipping": 0,
      "optimizer": {"type": "SGD", "params": {"lr": 0.1}},
      "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.1,
                                                   "warmup_num_steps": 10}}})",
                           single_rank());
  engine.set_lr(0.05);
  EXPECT_EQ(engine.get_lr(), 0.05);
  engine.backward(engine.forward(at::ones({1, 4}), at::zeros({1, 1})));
  engine.step();
  // The same step as SgdStepMatchesHandComputation, at the set rate (the schedule would have given 0).
  EXPECT_NEAR(model->fc->bias[0].item<double>(), -0.05 * 4, 1e-6);
  EXPECT_EQ(engine.get_lr(), 0.05) << "stays until set again";
  for (double bad : {-1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    try {
      engine.set_lr(bad);
      ADD_FAILURE() << "no error for " << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("set_lr: learning rate"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("allowed: a finite number >= 0"), std::string::npos) << e.what();
    }
  }
}

TEST(Engine, Fp16OverflowSkipsTheStepAndHalvesTheScale) {
  LinearReg model;
  auto engine = initialize(model.ptr(), R"({"train_batch_size": 1, "fp16": {"enabled": true, "auto_cast": true,
      "initial_scale_power": 10, "hysteresis": 1}, "optimizer": {"type": "AdamW", "params": {"lr": 0.01}}})",
                           single_rank());
  EXPECT_EQ(engine.loss_scale(), 1024);
  const at::Tensor before = model->fc->weight.detach().clone();
  const at::Tensor x = at::full({1, 4}, std::numeric_limits<float>::infinity());
  engine.backward(engine.forward(x, at::zeros({1, 1})));
  engine.step();
  EXPECT_EQ(engine.skipped_steps(), 1);
  EXPECT_EQ(engine.global_steps(), 1);
  EXPECT_EQ(engine.loss_scale(), 512);
  EXPECT_TRUE(at::equal(model->fc->weight, before));
  engine.backward(engine.forward(at::ones({1, 4}), at::zeros({1, 1})));
  engine.step();
  EXPECT_EQ(engine.skipped_steps(), 1);
  EXPECT_FALSE(at::equal(model->fc->weight, before));
  EXPECT_EQ(model->fc->weight.scalar_type(), at::kHalf);
}

// The value reads (Tensor::item, whose kernel is `aten::_local_scalar_dense`: the host waits for the device there)
// that `fn` makes on this thread.
thread_local int64_t t_value_reads = 0;
std::unique_ptr<at::ObserverContext> count_value_read(const at::RecordFunction& fn) {
  if (std::string_view(fn.name()) == "aten::_local_scalar_dense") ++t_value_reads;
  return nullptr;
}
int64_t value_reads(const std::function<void()>& fn) {
  t_value_reads = 0;
  const at::CallbackHandle handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(count_value_read).scopes({at::RecordScope::FUNCTION}));
  fn();
  at::removeCallback(handle);
  return t_value_reads;
}

// "fp32", "bf16", "bf16_checked" (bf16.check_grad_overflow) or "fp16": the config's precision keys, with a comma.
std::string precision_keys(const std::string& precision) {
  if (precision == "fp16") return R"("fp16": {"enabled": true, "auto_cast": true}, )";
  if (precision == "bf16") return R"("bf16": {"enabled": true}, )";
  if (precision == "bf16_checked") return R"("bf16": {"enabled": true, "check_grad_overflow": true}, )";
  return "";
}

// [Note: a step the host does not wait for]: with bf16 or fp32 and Adam, step() reads no value back from the device
// (the clip factor is computed and read there); fp16's overflow check, and bf16's when asked for, read the norm.
TEST(Engine, AStepReadsNoValueBackUnlessItChecksOverflow) {
  for (int stage : {0, 1, 2, 3}) {
    for (const std::string precision : {"fp32", "bf16", "bf16_checked", "fp16"}) {
      LinearReg model;
      auto engine = initialize(model.ptr(), R"({"train_batch_size": 1, )" + precision_keys(precision) +
          R"("gradient_clipping": 1.0, "optimizer": {"type": "AdamW", "params": {"lr": 0.01}},
          "zero_optimization": {"stage": )" + std::to_string(stage) + "}}", single_rank());
      const auto dtype = precision.rfind("bf16", 0) == 0 ? at::kBFloat16 : at::kFloat;
      const std::string what = "stage " + std::to_string(stage) + " " + precision;
      for (int i = 0; i < 2; ++i) {
        engine.backward(engine.forward(at::ones({1, 4}, dtype) * (i + 1), at::zeros({1, 1}, dtype)));
        const int64_t reads = value_reads([&] { engine.step(); });
        if (precision == "fp32" || precision == "bf16") {
          EXPECT_EQ(reads, 0) << what << ": the step waited for the device";
        } else {
          EXPECT_GE(reads, 1) << what << ": the overflow check needs the norm on the host";
        }
        // The norm is there for whoever asks (then the host waits).
        ASSERT_TRUE(engine.get_global_grad_norm().has_value()) << what;
        EXPECT_GT(*engine.get_global_grad_norm(), 0) << what;
        const at::Tensor norm = engine.get_global_grad_norm_tensor();
        ASSERT_TRUE(norm.defined()) << what;
        EXPECT_EQ(norm.dim(), 0) << what;
        EXPECT_EQ(norm.item<double>(), *engine.get_global_grad_norm()) << what;
      }
    }
  }
}

// DeepSpeed's unscale-and-clip factor computed on the device = the host's double arithmetic cast to fp32, bit for bit,
// around the clip threshold, for clips whose reciprocal is inexact (a CUDA division by a number is a multiplication by
// its reciprocal: one bit off), with a loss scale, and for an infinite (everything to 0) or NaN norm (no clipping, as
// DeepSpeed's `if clip > 1`), on the CPU and on a GPU.
TEST(ClipMultiplier, TheDeviceFormIsTheHostFormBitForBit) {
  std::vector<c10::Device> devices{c10::Device(c10::kCPU)};
  if (at::hasCUDA()) devices.emplace_back(c10::kCUDA, 0);
  std::vector<double> norms{0, 1e-7, 0.05, 0.0500001, 0.3, 1, 1.0000005, 3.7, 5, 1e3, 6.02e23,
                            std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()};
  for (int i = 1; i < 200; ++i) norms.push_back(0.0137 * i * i);
  for (const c10::Device& device : devices) {
    for (double clip : {0.0, 0.05, 0.3, 1.0, 5.0, 7.1}) {
      for (double scale : {1.0, 1024.0, 3.0}) {
        for (double norm : norms) {
          const float host = static_cast<float>(detail::clip_multiplier(norm, clip, scale));
          const at::Tensor t = detail::clip_multiplier_tensor(
              at::full({}, norm, at::TensorOptions(at::kDouble).device(device)), clip, scale);
          ASSERT_EQ(t.scalar_type(), at::kFloat);
          const float dev = t.item<float>();
          EXPECT_EQ(std::memcmp(&host, &dev, sizeof(float)), 0)
              << device << " norm " << norm << " clip " << clip << " scale " << scale << ": " << host << " vs " << dev;
        }
      }
    }
  }
  EXPECT_EQ(detail::clip_multiplier(std::numeric_limits<double>::quiet_NaN(), 1.0, 2.0), 0.5);
  EXPECT_EQ(detail::clip_multiplier(std::numeric_limits<double>::infinity(), 1.0, 1.0), 0.0);
}

// The clip factor computed on the device is the host's, bit for bit: bf16 with check_grad_overflow (the host's path)
// trains to the same parameters and norms, with a clip that acts at every step and an eps that makes Adam feel it.
TEST(Engine, ClippingOnTheDeviceEqualsClippingOnTheHost) {
  for (int stage : {0, 1, 2, 3}) {
    const auto train = [&](const std::string& precision, double clip) {
      LinearReg model = filled_model(0.25);
      auto engine = initialize(model.ptr(), R"({"train_batch_size": 1, )" + precision_keys(precision) +
          R"("gradient_clipping": )" + std::to_string(clip) + R"(, "optimizer": {"type": "AdamW", "params":
          {"lr": 0.1, "eps": 0.1, "weight_decay": 0.01}}, "zero_optimization": {"stage": )" +
          std::to_string(stage) + "}}", single_rank());
      std::vector<double> norms;
      for (int i = 0; i < 4; ++i) {
        const at::Tensor x = (at::arange(4, at::kFloat) * 0.5 + i).reshape({1, 4}).to(at::kBFloat16);
        engine.backward(engine.forward(x, at::full({1, 1}, -1.0 * i).to(at::kBFloat16)));
        engine.step();
        norms.push_back(*engine.get_global_grad_norm());
      }
      std::vector<at::Tensor> params;
      for (const auto& p : model->parameters()) params.push_back(p.detach().to(at::kFloat).clone());
      return std::make_pair(params, norms);
    };
    const auto device = train("bf16", 0.05), host = train("bf16_checked", 0.05), unclipped = train("bf16", 0);
    const std::string what = "stage " + std::to_string(stage);
    EXPECT_EQ(device.second, host.second) << what;
    for (size_t i = 0; i < device.first.size(); ++i) {
      EXPECT_TRUE(at::equal(device.first[i], host.first[i])) << what << ", parameter " << i;
    }
    EXPECT_GT(device.second.front(), 0.05) << what << ": the clip must act";
    EXPECT_FALSE(at::equal(device.first[0], unclipped.first[0])) << what << ": clipping changed nothing";
  }
}

#ifdef ZEROTRAIN_WITH_CUDA
// On a GPU, step() returns while backward's kernels still run: a second of device work queued behind backward does
// not hold the host (the step's kernels queue behind it).
TEST(Engine, AStepOnAGpuReturnsBeforeBackwardEnds) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no GPU";
  for (int stage : {1, 3}) {
    LinearReg model = filled_model(0.25);
    EngineOptions opts;
    opts.comm = make_single_comm();
    opts.device = c10::Device(c10::kCUDA, 0);
    auto engine = initialize(model.ptr(), R"({"train_batch_size": 1, "bf16": {"enabled": true},
        "gradient_clipping": 1.0, "optimizer": {"type": "AdamW", "params": {"lr": 0.01}},
        "zero_optimization": {"stage": )" + std::to_string(stage) + "}}", opts);
    const auto bf = at::TensorOptions(at::kBFloat16).device(opts.device);
    const auto micro_step = [&](bool sleep) {
      engine.backward(engine.forward(at::ones({1, 4}, bf), at::zeros({1, 1}, bf)));
      if (sleep) at::cuda::sleep(int64_t{2'000'000'000});  // ~1 s at 2 GHz, on the current stream
      const auto t0 = std::chrono::steady_clock::now();
      engine.step();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    micro_step(false);
    c10::cuda::device_synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    const double step_s = micro_step(true);
    c10::cuda::device_synchronize();
    const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GT(total_s, 0.3) << "stage " << stage << ": the queued sleep was too short to tell";
    EXPECT_LT(step_s, total_s / 3) << "stage " << stage << ": step() waited " << step_s << " s of " << total_s;
    EXPECT_GT(*engine.get_global_grad_norm(), 0);
  }
}
#endif

TEST(Engine, Errors) {
  LinearReg model;
  try {
    initialize(model.ptr(), R"({"train_batch_size": 1})", single_rank());
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("no \"optimizer\" section"), std::string::npos) << e.what();
  }
  try {
    initialize(model.ptr(), R"({"train_batch_size": 1, "optimizer": {"type": "Adam"},
                                "sparse_attention": {"mode": "fixed"}})", single_rank());
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("zerotrain does not support sparse attention"), std::string::npos) << e.what();
  }
  auto engine = initialize(model.ptr(), R"({"train_batch_size": 1, "optimizer": {"type": "Adam"}})", single_rank());
  EXPECT_THROW(engine.backward(at::ones({2}, at::requires_grad())), c10::Error);
  EXPECT_THROW(engine.backward(at::ones({})), c10::Error);
}

// Counts the bytes of live CPU tensors: the CPU allocator wrapped while it is installed.
class CountingCpuAllocator final : public c10::Allocator {
 public:
  CountingCpuAllocator() : base_(c10::GetCPUAllocator()) { c10::SetCPUAllocator(this, kPriority); }
  ~CountingCpuAllocator() override { c10::SetCPUAllocator(base_, kPriority); }
  int64_t live() const { return live_.load(); }

  c10::DataPtr allocate(size_t n) override {
    auto* block = new Block{base_->allocate(n), n, this};
    live_ += static_cast<int64_t>(n);
    return {block->inner.get(), block, &release, c10::Device(c10::kCPU)};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

 private:
  static constexpr uint8_t kPriority = 100;
  struct Block {
    c10::DataPtr inner;
    size_t n;
    CountingCpuAllocator* owner;
  };
  static void release(void* ctx) {
    auto* block = static_cast<Block*>(ctx);
    block->owner->live_ -= static_cast<int64_t>(block->n);
    delete block;
  }
  c10::Allocator* base_;
  std::atomic<int64_t> live_{0};
};

struct WideImpl : torch::nn::Module {
  WideImpl() { fc = register_module("fc", torch::nn::Linear(256, 256)); }
  at::Tensor forward(const at::Tensor& x) { return fc->forward(x).pow(2).mean(); }
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Wide);

// Between optimizer steps stages 1-3 hold no reduced (fp32) gradient shard: it is made by the step's first
// reduction and freed after the step, so the model state held between steps is what the ZeRO table says.
TEST(EngineMemory, StagesOneToThreeFreeTheReducedGradientsBetweenSteps) {
  static CountingCpuAllocator counting;  // outlives every tensor it made (their deleters point at it)
  for (int stage : {1, 2, 3}) {
    Wide model;
    const int64_t numel = 256 * 256 + 256;
    auto engine = initialize(model.ptr(), R"({"train_batch_size": 2, "gradient_accumulation_steps": 2,
        "gradient_clipping": 0, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
        "zero_optimization": {"stage": )" + std::to_string(stage) + R"(, "stage3_max_reuse_distance": 0,
        "stage3_param_persistence_threshold": 0}})", single_rank());
    const auto micro_step = [&] {
      engine.backward(engine.forward(at::ones({4, 256})));
      engine.step();
    };
    for (int i = 0; i < 4; ++i) micro_step();  // two optimizer steps: Adam's states exist
    const int64_t between = counting.live();
    micro_step();  // not a boundary: stage 1 reduces nothing yet
    engine.backward(engine.forward(at::ones({4, 256})));  // the boundary's backward: the shard is made
    const int64_t after_reduction = counting.live();
    engine.step();
    EXPECT_GE(after_reduction - between, numel * 4 * 95 / 100)
        << "stage " << stage << ": the fp32 gradient shard (" << numel * 4 << " bytes) is held between steps";
    EXPECT_LE(counting.live() - between, numel * 4 / 20) << "stage " << stage << ": memory held after the step grew";
  }
}

}  // namespace
}  // namespace zerotrain
