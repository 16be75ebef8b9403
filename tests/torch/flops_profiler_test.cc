// DeepSpeed's flops profiler (src/engine/flops_profiler.h, [Note: flops profiler]): operator MACs, DeepSpeed's number
// formatting, and the profile of a built-in Llama at stages 0 and 3 against its MACs counted by hand.
#include "engine/flops_profiler.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "zerotrain/engine.h"
#include "zerotrain/models.h"

namespace zerotrain {
namespace {

TEST(FlopsProfiler, OperatorMacs) {
  using detail::operator_macs;
  EXPECT_EQ(operator_macs("aten::mm", {{8, 16}, {16, 4}}), 8 * 16 * 4);
  EXPECT_EQ(operator_macs("aten::addmm", {{4}, {8, 16}, {16, 4}}), 8 * 16 * 4);
  EXPECT_EQ(operator_macs("aten::bmm", {{3, 8, 16}, {3, 16, 4}}), 3 * 8 * 16 * 4);
  EXPECT_EQ(operator_macs("aten::baddbmm", {{3, 8, 4}, {3, 8, 16}, {3, 16, 4}}), 3 * 8 * 16 * 4);
  // attention: QK^T and PV, batch 2 x heads 4, 10 queries, 12 keys, head width 16
  EXPECT_EQ(operator_macs("aten::_scaled_dot_product_flash_attention", {{2, 4, 10, 16}, {2, 4, 12, 16}, {2, 4, 12, 16}}),
            2 * 4 * 10 * 12 * (16 + 16));
  // a 3x3 convolution, 8 -> 4 channels, 10 output pixels x 4 channels
  EXPECT_EQ(operator_macs("aten::convolution", {{1, 8, 5, 5}, {4, 8, 3, 3}}, 40), 40 * 8 * 3 * 3);
  EXPECT_EQ(operator_macs("aten::add", {{8}, {8}}), 0);
}

TEST(FlopsProfiler, DeepSpeedNumberStrings) {
  EXPECT_EQ(detail::ds_number(1.234e12), "1.23 T");
  EXPECT_EQ(detail::ds_number(2.5e9), "2.5 G");
  EXPECT_EQ(detail::ds_number(999), "999 ");
  EXPECT_EQ(detail::ds_number(0), "0 ");
  EXPECT_EQ(detail::ds_number(0.0123), "12.3 m");
  EXPECT_EQ(detail::ds_number(5e-4), "500 u");
}

// MACs of one forward of a Llama on (batch, seq) tokens: every projection, the MLP, the head, and attention's QK^T
// and PV over the full (causal, unmasked-count) score matrix, as the attention kernel is counted.
int64_t llama_macs(const ModelSpec& s, int64_t batch, int64_t seq, int64_t* per_block) {
  const int64_t kv = s.num_kv_heads * s.head_dim();
  const int64_t linear = s.hidden * s.hidden * 2 + s.hidden * kv * 2 + 3 * s.hidden * s.ffn;
  const int64_t attention = batch * s.num_heads * seq * seq * 2 * s.head_dim();
  *per_block = batch * seq * linear + attention;
  return s.num_layers * *per_block + batch * seq * s.hidden * s.vocab;
}

struct Profiled {
  int64_t total = 0, block0 = 0, head = 0;
  std::string report;
};

Profiled profile(int stage, const std::string& out_file, c10::Device device = c10::Device(c10::kCPU),
                 const std::string& precision = "") {
  const ModelSpec spec = model_spec("llama-tiny");
  auto model = make_model(spec);
  EngineOptions o;
  o.comm = make_single_comm();
  o.device = device;
  auto engine = initialize(model, R"({"train_micro_batch_size_per_gpu": 2, "gradient_clipping": 0, )" + precision + R"(
      "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "zero_optimization": {"stage": )" +
      std::to_string(stage) + R"(}, "flops_profiler": {"enabled": true, "profile_step": 1, "top_modules": 2,
      "output_file": ")" + out_file + R"("}})", o);
  const at::Tensor tokens = at::randint(0, spec.vocab, {2, 16}, at::kLong).to(device);
  Profiled p;
  for (int step = 0; step < 3; ++step) {
    engine.begin_forward();
    at::Tensor loss = model->loss(tokens, tokens);
    engine.end_forward();
    engine.backward(loss);
    engine.step();
    if (step == 0) EXPECT_EQ(engine.flops_profile_macs(), 0) << "profile_step 1 is the second optimizer step";
  }
  p.total = engine.flops_profile_macs();
  p.block0 = engine.flops_profile_macs("model.layers.0");
  p.head = engine.flops_profile_macs("lm_head");
  std::ifstream in(out_file);
  std::stringstream ss;
  ss << in.rdbuf();
  p.report = ss.str();
  return p;
}

TEST(FlopsProfiler, BuiltInLlamaAtStages0And3) {
  const ModelSpec spec = model_spec("llama-tiny");
  int64_t per_block = 0;
  const int64_t expected = llama_macs(spec, 2, 16, &per_block);
  for (int stage : {0, 3}) {
    SCOPED_TRACE(stage);
    const std::string file = ::testing::TempDir() + "flops_" + std::to_string(stage) + "/profile.txt";
    const Profiled p = profile(stage, file);
    EXPECT_EQ(p.total, expected);
    EXPECT_EQ(p.block0, per_block);  // attention (no parameters) is the block's: the segment running
    EXPECT_EQ(p.head, 2 * 16 * spec.hidden * spec.vocab);
    const std::string& r = p.report;
    EXPECT_NE(r.find("-------------------------- DeepSpeed Flops Profiler --------------------------\n"
                     "Profile Summary at step 1:\n"), std::string::npos) << r;
    EXPECT_NE(r.find(fmt::format("{:<70}  {:<8}\n", "fwd MACs per GPU: ",
                                 detail::ds_number(static_cast<double>(expected)) + "MACs")),
              std::string::npos) << r;
    EXPECT_NE(r.find("bwd FLOPS per GPU = 2 * fwd flops per GPU / bwd latency: "), std::string::npos) << r;
    EXPECT_NE(r.find("samples/second: "), std::string::npos) << r;
    EXPECT_NE(r.find("depth 0:\n    params      - {'LlamaLM': "), std::string::npos) << r;
    EXPECT_NE(r.find("(layers): ModuleList(\n"), std::string::npos) << r;
    EXPECT_NE(r.find("(q_proj): Linear("), std::string::npos) << r;
  }
}

// On a GPU in bf16: the attention runs as a fused kernel (flash / efficient), the products through cuBLAS; the count
// is the same.
TEST(FlopsProfiler, BuiltInLlamaOnCudaInBf16) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const ModelSpec spec = model_spec("llama-tiny");
  int64_t per_block = 0;
  const int64_t expected = llama_macs(spec, 2, 16, &per_block);
  for (int stage : {0, 3}) {
    SCOPED_TRACE(stage);
    const std::string file = ::testing::TempDir() + "flops_cuda_" + std::to_string(stage) + "/profile.txt";
    const Profiled p = profile(stage, file, c10::Device(c10::kCUDA, 0), R"("bf16": {"enabled": true},)");
    EXPECT_EQ(p.total, expected);
    EXPECT_EQ(p.block0, per_block);
    EXPECT_NE(p.report.find("fwd latency: "), std::string::npos) << p.report;
  }
}

TEST(FlopsProfiler, BadKeysAreConfigErrors) {
  auto model = make_model(model_spec("llama-tiny"));
  EngineOptions o;
  o.comm = make_single_comm();
  o.device = c10::Device(c10::kCPU);
  try {
    initialize(model, R"({"train_micro_batch_size_per_gpu": 1, "optimizer": {"type": "SGD", "params": {"lr": 0.1}},
        "flops_profiler": {"enabled": true, "profile_step": -1, "top_modules": 0}})", o);
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    for (const char* part : {"flops_profiler.profile_step", "-1 is invalid; allowed: an optimizer step >= 0",
                             "flops_profiler.top_modules", "0 is invalid; allowed: >= 1"}) {
      EXPECT_NE(what.find(part), std::string::npos) << part << "\n" << what;
    }
  }
}

}  // namespace
}  // namespace zerotrain
