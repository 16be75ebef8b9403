// The engine's side of an autotuning experiment (src/engine/autotuning_probe.h): with autotuning.metric_path it times
// optimizer steps start_profile_step..end_profile_step, writes the metrics and ends the run with AutotuningExit; with
// model_info.profile it writes the model info at the first backward and ends; otherwise it trains as usual.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/nn/modules/linear.h>

#include <fstream>
#include <sstream>

#include "zerotrain/engine.h"

namespace zerotrain {
namespace {

struct RegImpl : torch::nn::Module {
  RegImpl() { fc = register_module("fc", torch::nn::Linear(8, 1)); }
  at::Tensor forward(const at::Tensor& x) { return fc->forward(x).pow(2).mean(); }
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Reg);

EngineOptions single_rank() {
  EngineOptions o;
  o.comm = make_single_comm();
  o.device = c10::Device(c10::kCPU);
  return o;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

std::string config(const std::string& autotuning, int gas = 1) {
  return R"({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": )" + std::to_string(gas) +
         R"(, "optimizer": {"type": "SGD", "params": {"lr": 0.01}}, "autotuning": )" + autotuning + "}";
}

TEST(AutotuningProbe, MeasuresTheProfileStepsWritesTheMetricsAndEndsTheRun) {
  const std::string path = ::testing::TempDir() + "probe_metrics.json";
  std::remove(path.c_str());
  Reg model;
  EngineOptions o = single_rank();
  o.flops_per_sample = 1e6;
  auto engine = initialize(model.ptr(),
                           config(R"({"enabled": true, "start_profile_step": 2, "end_profile_step": 4, "metric_path": ")" +
                                  path + "\"}", /*gas=*/2),
                           o);
  int64_t micro = 0;
  bool ended = false;
  while (micro < 100 && !ended) {
    engine.backward(engine.forward(at::randn({2, 8})));
    ++micro;
    try {
      engine.step();
    } catch (const AutotuningExit& e) {
      ended = true;
      EXPECT_NE(std::string(e.what()).find("steps 2-4"), std::string::npos) << e.what();
    }
  }
  ASSERT_TRUE(ended);
  EXPECT_EQ(micro, 8);  // 4 optimizer steps of 2 micro-steps
  EXPECT_EQ(engine.global_steps(), 4);
  const auto m = read_json(path);
  EXPECT_EQ(m.at("profiled_steps"), 3);
  EXPECT_EQ(m.at("train_batch_size"), 4);
  const double latency_ms = m.at("latency").get<double>();
  EXPECT_GT(latency_ms, 0);
  EXPECT_NEAR(m.at("throughput").get<double>(), 4 / (latency_ms / 1000), 1e-6 * m.at("throughput").get<double>());
  EXPECT_NEAR(m.at("FLOPS_per_gpu").get<double>(), 1e6 * 4 / (latency_ms / 1000), 1e-6 * m.at("FLOPS_per_gpu").get<double>());
  EXPECT_GT(m.at("peak_memory_bytes").get<int64_t>(), 0);
}

TEST(AutotuningProbe, AModelInfoRunWritesTheModelAtTheFirstBackwardAndEnds) {
  const std::string path = ::testing::TempDir() + "probe_info/model_info.json";
  Reg model;
  auto engine = initialize(model.ptr(),
                           config(R"({"enabled": true, "model_info": {"profile": true}, "model_info_path": ")" + path +
                                  "\"}"),
                           single_rank());
  const at::Tensor loss = engine.forward(at::randn({2, 8}));
  EXPECT_THROW(engine.backward(loss), AutotuningExit);
  const auto info = read_json(path);
  EXPECT_EQ(info.at("num_params"), 9);  // 8 weights + 1 bias
  EXPECT_EQ(info.at("trainable_num_params"), 9);
  EXPECT_GE(info.at("activation_mem_per_gpu").get<int64_t>(), 0);
  EXPECT_GT(info.at("device_memory_bytes").get<int64_t>(), 0);
  EXPECT_EQ(info.at("device"), "cpu");
}

TEST(AutotuningProbe, OnAGpuTheModelInfoCountsTheDevicesMemoryAndActivations) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const std::string path = ::testing::TempDir() + "probe_info_cuda.json";
  struct WideImpl : torch::nn::Module {
    WideImpl() { fc = register_module("fc", torch::nn::Linear(1024, 1024)); }
    at::Tensor forward(const at::Tensor& x) { return fc->forward(fc->forward(x).relu()).pow(2).mean(); }
    torch::nn::Linear fc{nullptr};
  };
  auto model = std::make_shared<WideImpl>();
  EngineOptions o = single_rank();
  o.device = c10::Device(c10::kCUDA, 0);
  auto engine = initialize(model, R"({"train_micro_batch_size_per_gpu": 256, "optimizer": {"type": "AdamW",
      "params": {"lr": 0.01}}, "autotuning": {"enabled": true, "model_info": {"profile": true},
      "model_info_path": ")" + path + "\"}}", o);
  const at::Tensor loss = engine.forward(at::randn({256, 1024}, at::kCUDA));
  EXPECT_THROW(engine.backward(loss), AutotuningExit);
  const auto info = read_json(path);
  EXPECT_EQ(info.at("device"), "cuda:0");
  EXPECT_GT(info.at("device_memory_bytes").get<int64_t>(), int64_t{8} << 30);
  // Saved for backward: the input, two 256 x 1024 fp32 activations and the relu mask, at least 3 MiB.
  EXPECT_GE(info.at("activation_mem_per_gpu").get<int64_t>(), 3 << 20);
}

TEST(AutotuningProbe, EnabledWithoutAnExperimentTrainsAsUsual) {
  Reg model;
  auto engine = initialize(model.ptr(), config(R"({"enabled": true, "start_profile_step": 1, "end_profile_step": 2})"), single_rank());
  for (int i = 0; i < 6; ++i) {
    engine.backward(engine.forward(at::randn({2, 8})));
    EXPECT_NO_THROW(engine.step());
  }
  EXPECT_EQ(engine.global_steps(), 6);
}

}  // namespace
}  // namespace zerotrain
