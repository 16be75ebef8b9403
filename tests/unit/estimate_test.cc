// The memory estimator against DeepSpeed's formulas (stage_1_and_2.py, stage3.py and the numbers printed in
// DeepSpeed's docs/code-docs/source/memory.rst), the seed's select_zero_stage, published parameter counts,
// and the Korthikanti et al. activation formula. Expected values are worked out by hand in the comments.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>

#include "estimate/report.h"
#include "zerotrain/estimate.h"

namespace zerotrain {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

// DeepSpeed prints GiB with 2 decimals; check our byte count prints the same.
std::string gib2(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(bytes) / kGiB);
  return buf;
}

// Expects std::invalid_argument whose message names `argument`.
void expect_invalid(const std::function<void()>& fn, const std::string& argument) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one naming " << argument;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(argument), std::string::npos)
        << "message '" << e.what() << "' does not name " << argument;
  }
}

EstimateInput params_input(int64_t params, int gpus_per_node, int nodes = 1) {
  EstimateInput in;
  in.num_params = params;
  in.gpus_per_node = gpus_per_node;
  in.num_nodes = nodes;
  return in;
}

const StageEstimate& row(const Estimate& e, int stage, OffloadKind offload) {
  for (const auto& s : e.stages)
    if (s.stage == stage && s.offload == offload) return s;
  throw std::logic_error("no such row");
}

// ---- DeepSpeed's formulas ------------------------------------------------------------------------------

// memory.rst, estimate_zero2_model_states_mem_needs_all_cold(total_params=2851e6, num_gpus_per_node=8).
TEST(DeepSpeedZero2, DocsExampleOneNodeEightGpus) {
  // offload: gpu = 2 P = 5,702,000,000 (docs: 5.31GB); cpu = P * max(4 * 8, 16) * 1.5 = 136,848,000,000
  // (docs: 127.45GB).
  const auto off = deepspeed_zero2_model_states(2'851'000'000, 8, 1, /*cpu_offload=*/true);
  EXPECT_EQ(off.gpu_bytes, 5'702'000'000);
  EXPECT_EQ(off.cpu_bytes_per_node, 136'848'000'000);
  EXPECT_EQ(gib2(off.gpu_bytes), "5.31");
  EXPECT_EQ(gib2(off.cpu_bytes_per_node), "127.45");
  // no offload: gpu = 2 P + int(18 P / 8) = 5,702,000,000 + 6,414,750,000 = 12,116,750,000 (11.28 GiB; the
  // docs' 15.93GB is the older formula 4 P + 16 P / N, the code changed since); cpu = P * 4 * 8 * 1.5.
  const auto on = deepspeed_zero2_model_states(2'851'000'000, 8, 1, /*cpu_offload=*/false);
  EXPECT_EQ(on.gpu_bytes, 12'116'750'000);
  EXPECT_EQ(on.cpu_bytes_per_node, 136'848'000'000);
  EXPECT_EQ(gib2(on.gpu_bytes), "11.28");
}

TEST(DeepSpeedZero2, MultiNodeAndTruncation) {
  // 2 nodes x 8: offload cpu = P * max(4 * 16, 16) * 1.5 = 2851e6 * 64 * 1.5 = 273,696,000,000 (DeepSpeed
  // multiplies by all GPUs here, not GPUs per node); gpu = 2 P + int(18 P / 16) = 5,702,000,000 + 3,207,375,000.
  EXPECT_EQ(deepspeed_zero2_model_states(2'851'000'000, 8, 2, true).cpu_bytes_per_node, 273'696'000'000);
  EXPECT_EQ(deepspeed_zero2_model_states(2'851'000'000, 8, 2, false).gpu_bytes, 8'909'375'000);
  // int() truncates: 18e9 / 7 = 2,571,428,571.43 -> 2,571,428,571; gpu = 2e9 + that.
  EXPECT_EQ(deepspeed_zero2_model_states(1'000'000'000, 7, 1, false).gpu_bytes, 4'571'428'571);
  // One GPU, offload: max(4, 16) = 16 -> cpu = 1e9 * 16 * 1.5.
  EXPECT_EQ(deepspeed_zero2_model_states(1'000'000'000, 1, 1, true).cpu_bytes_per_node, 24'000'000'000);
}

// memory.rst, estimate_zero3_model_states_mem_needs_all_cold(total_params=2851e6, largest_layer_params=32e6,
// num_gpus_per_node=8, num_nodes=1). largest_layer_memory = 4 * 32e6 = 128,000,000.
TEST(DeepSpeedZero3, DocsExampleOneNodeEightGpus) {
  const int64_t p = 2'851'000'000, l = 32'000'000;
  struct Case {
    bool offload, offload_params, zero_init;
    int64_t gpu, cpu;
    const char *gpu_gib, *cpu_gib;
  };
  const Case cases[] = {
      // offload_param=cpu, offload_optimizer=cpu, zero_init=1: gpu = 4 L; cpu = P * 18 * 1 * 1.5.
      {true, true, true, 128'000'000, 76'977'000'000, "0.12", "71.69"},
      // zero_init=0: cpu = P * max(4 * 8, 18) * 1.5.
      {true, true, false, 128'000'000, 136'848'000'000, "0.12", "127.45"},
      // offload_param=none, offload_optimizer=cpu: gpu = 4 L + int(2 P / 8) = 128e6 + 712,750,000;
      // zero_init=1: cpu = P * 16 * 1.5; zero_init=0: P * max(32, 16) * 1.5.
      {true, false, true, 840'750'000, 68'424'000'000, "0.78", "63.72"},
      {true, false, false, 840'750'000, 136'848'000'000, "0.78", "127.45"},
      // no offload: gpu = 4 L + int(18 P / 8) = 128e6 + 6,414,750,000; zero_init=1: cpu = L * 4 * 8 * 1.5;
      // zero_init=0: cpu = P * 4 * 8 * 1.5.
      {false, false, true, 6'542'750'000, 1'536'000'000, "6.09", "1.43"},
      {false, false, false, 6'542'750'000, 136'848'000'000, "6.09", "127.45"},
  };
  for (const auto& c : cases) {
    const auto r = deepspeed_zero3_model_states(p, l, 8, 1, c.offload, c.offload_params, c.zero_init);
    EXPECT_EQ(r.gpu_bytes, c.gpu) << c.offload << c.offload_params << c.zero_init;
    EXPECT_EQ(r.cpu_bytes_per_node, c.cpu) << c.offload << c.offload_params << c.zero_init;
    EXPECT_EQ(gib2(r.gpu_bytes), c.gpu_gib);
    EXPECT_EQ(gib2(r.cpu_bytes_per_node), c.cpu_gib);
  }
}

TEST(DeepSpeedZero3, MultiNode) {
  // 2 nodes x 8, gpus_factor = 1/2. Offload both, zero_init: cpu = P * 18 * 0.5 * 1.5 = 38,488,500,000.
  // Without zero_init: max(4 * 8, 18 * 0.5) = 32 -> P * 32 * 1.5. No offload: gpu = 4 L + int(18 P / 16).
  const int64_t p = 2'851'000'000, l = 32'000'000;
  EXPECT_EQ(deepspeed_zero3_model_states(p, l, 8, 2, true, true, true).cpu_bytes_per_node, 38'488'500'000);
  EXPECT_EQ(deepspeed_zero3_model_states(p, l, 8, 2, true, true, false).cpu_bytes_per_node, 136'848'000'000);
  EXPECT_EQ(deepspeed_zero3_model_states(p, l, 8, 2, false, false, true).gpu_bytes, 3'335'375'000);
  // One GPU on each of 2 nodes, offload both, no zero_init: max(4 * 1, 18 * 0.5 = 9.0) = 9.0 (the float
  // wins) -> cpu = 1e9 * 9 * 1.5.
  EXPECT_EQ(deepspeed_zero3_model_states(1'000'000'000, 0, 1, 2, true, true, false).cpu_bytes_per_node,
            13'500'000'000);
}

// The estimator's rows carry DeepSpeed's figure for stage 2 and stage 3 (cpu / none offload).
TEST(Estimate, CarriesDeepSpeedFigures) {
  EstimateInput in = params_input(2'851'000'000, 8);
  in.largest_layer_params = 32'000'000;
  const Estimate e = estimate_memory(in);
  EXPECT_EQ(row(e, 2, OffloadKind::kOptimizerCpu).deepspeed->gpu_bytes, 5'702'000'000);
  EXPECT_EQ(row(e, 2, OffloadKind::kNone).deepspeed->gpu_bytes, 12'116'750'000);
  EXPECT_EQ(row(e, 3, OffloadKind::kNone).deepspeed->gpu_bytes, 6'542'750'000);
  EXPECT_EQ(row(e, 3, OffloadKind::kNone).deepspeed->cpu_bytes_per_node, 1'536'000'000);
  EXPECT_EQ(row(e, 3, OffloadKind::kOptimizerCpu).deepspeed->gpu_bytes, 840'750'000);
  EXPECT_EQ(row(e, 3, OffloadKind::kOptimizerAndParamCpu).deepspeed->cpu_bytes_per_node, 76'977'000'000);
  EXPECT_FALSE(row(e, 0, OffloadKind::kNone).deepspeed.has_value());
  EXPECT_FALSE(row(e, 1, OffloadKind::kNone).deepspeed.has_value());
  EXPECT_FALSE(row(e, 3, OffloadKind::kOptimizerNvme).deepspeed.has_value());
}

// With fp32 gradients (--grad-bytes 4) the estimator's stage-3 model states are DeepSpeed's 18 bytes/param
// exactly; DeepSpeed adds 4 x largest layer (gathered 16-bit params + grads), which the estimator counts
// under buffers. The CPU side is DeepSpeed's figure without its 1.5 factor.
TEST(Estimate, Stage3AgreesWithDeepSpeedAtFp32Gradients) {
  EstimateInput in = params_input(8'000'000'000, 8);  // P divisible by N: no partition padding
  in.largest_layer_params = 500'000'000;
  in.grad_bytes = 4;
  const Estimate e = estimate_memory(in);
  const int64_t four_l = 4 * in.largest_layer_params;
  const auto& none = row(e, 3, OffloadKind::kNone);
  EXPECT_EQ(none.model_states_gpu_bytes + four_l, none.deepspeed->gpu_bytes);  // 18e9 + 2e9
  const auto& opt = row(e, 3, OffloadKind::kOptimizerCpu);
  EXPECT_EQ(opt.model_states_gpu_bytes + four_l, opt.deepspeed->gpu_bytes);  // 2e9 + 2e9
  EXPECT_EQ(opt.model_states_cpu_bytes * 3 / 2, opt.deepspeed->cpu_bytes_per_node);  // 16 P x 1.5
  const auto& both = row(e, 3, OffloadKind::kOptimizerAndParamCpu);
  EXPECT_EQ(both.model_states_gpu_bytes + four_l, both.deepspeed->gpu_bytes);  // 0 + 2e9
  EXPECT_EQ(both.model_states_cpu_bytes * 3 / 2, both.deepspeed->cpu_bytes_per_node);  // 18 P x 1.5
  // Stage 2 with offload: both 2 P on the GPU. Without offload DeepSpeed counts 2 bytes/param more per
  // partition (its 16-bit gradient partition next to the fp32 one): 2 P + 18 P / N vs 2 P + 16 P / N.
  EXPECT_EQ(row(e, 2, OffloadKind::kOptimizerCpu).model_states_gpu_bytes,
            row(e, 2, OffloadKind::kOptimizerCpu).deepspeed->gpu_bytes);
  const auto& s2 = row(e, 2, OffloadKind::kNone);
  EXPECT_EQ(s2.deepspeed->gpu_bytes - s2.model_states_gpu_bytes, 2 * 8'000'000'000 / 8);
}

// ---- the seed's select_zero_stage -------------------------------------------------------------------

// Expected values from running the seed's Python function.
TEST(SelectZeroStage, EveryBranch) {
  struct Case {
    double params_b, memory_gb;
    int gpus, stage;
    const char* advice;
  };
  const Case cases[] = {
      {0.1, 80, 8, 0, "Use DDP"},               // zero0 = 1.6 < 56
      {7, 80, 8, 1, "Use ZeRO-1"},              // zero0 = 112; zero1 = 14 + 10.5 + 14 = 38.5
      {7, 40, 8, 2, "Use ZeRO-2"},              // zero1 = 38.5 >= 28; zero2 = 14 + 10.5 + 1.75 = 26.25
      {70, 80, 64, 3, "Use ZeRO-3"},            // zero2 = 155.3; zero3 = 1120 / 64 = 17.5
      {70, 80, 8, 3, "Use ZeRO-3 with CPU offload"},  // zero3 = 140 >= 56
      {3.5, 80, 1, 3, "Use ZeRO-3 with CPU offload"},  // all 56.0, and 56 < 56 is false
      {3.5, 80, 2, 1, "Use ZeRO-1"},            // zero1 = 7 + 21 + 7 = 35
      {1.1, 24, 1, 3, "Use ZeRO-3 with CPU offload"},  // 17.6 >= 16.8 on one GPU
      {1.1, 24, 2, 1, "Use ZeRO-1"},
      {8.030261248, 80, 8, 1, "Use ZeRO-1"},
      {8.030261248, 80, 2, 3, "Use ZeRO-3 with CPU offload"},
      {13, 80, 4, 3, "Use ZeRO-3"},
      {13, 40, 4, 3, "Use ZeRO-3 with CPU offload"},
  };
  for (const auto& c : cases) {
    const SelectResult r = select_zero_stage(c.params_b, c.memory_gb, c.gpus);
    EXPECT_EQ(r.stage, c.stage) << c.params_b << " " << c.memory_gb << " " << c.gpus;
    EXPECT_EQ(r.advice, c.advice) << c.params_b << " " << c.memory_gb << " " << c.gpus;
  }
  const SelectResult r = select_zero_stage(7, 40, 8);
  EXPECT_DOUBLE_EQ(r.per_gpu_gb[0], 112.0);
  EXPECT_DOUBLE_EQ(r.per_gpu_gb[1], 38.5);
  EXPECT_DOUBLE_EQ(r.per_gpu_gb[2], 26.25);
  EXPECT_DOUBLE_EQ(r.per_gpu_gb[3], 14.0);
  EXPECT_DOUBLE_EQ(r.threshold_gb, 28.0);
}

// The estimator's no-offload model states are the seed's per-GPU figures (16 bytes/param split by stage).
TEST(Estimate, ModelStatesAreTheSeedsAccounting) {
  const Estimate e = estimate_memory(params_input(7'000'000'000, 8));
  const SelectResult seed = select_zero_stage(7, 80, 8);
  for (int stage = 0; stage < 4; ++stage) {
    EXPECT_NEAR(static_cast<double>(row(e, stage, OffloadKind::kNone).model_states_gpu_bytes),
                seed.per_gpu_gb[stage] * 1e9, 1.0)
        << "stage " << stage;
  }
  EXPECT_EQ(e.recommendation.seed.stage, 1);
  EXPECT_EQ(e.recommendation.seed.advice, "Use ZeRO-1");
  EXPECT_NE(e.recommendation.reason.find("ZeRO-1 38.5 GB < 56.0"), std::string::npos) << e.recommendation.reason;
}

TEST(Estimate, RecommendationFollowsTheSeed) {
  const struct {
    int64_t params;
    int gpus;
    double memory;
  } cases[] = {{100'000'000, 8, 80}, {7'000'000'000, 8, 40}, {70'000'000'000, 64, 80}, {70'000'000'000, 8, 80}};
  for (const auto& c : cases) {
    EstimateInput in = params_input(c.params, c.gpus);
    in.gpu_memory_gb = c.memory;
    const Estimate e = estimate_memory(in);
    const SelectResult seed = select_zero_stage(static_cast<double>(c.params) / 1e9, c.memory, c.gpus);
    EXPECT_EQ(e.recommendation.seed.stage, seed.stage);
    EXPECT_EQ(e.recommendation.seed.advice, seed.advice);
  }
}

TEST(Estimate, OffloadMovesStatesToTheHost) {
  // 8e9 params, 8 GPUs, 16-bit gradients: shard = 1e9.
  const Estimate e = estimate_memory(params_input(8'000'000'000, 8));
  // Stage 2 + cpu: GPU keeps 2 P; each rank's host holds 12 + 2 bytes x shard; 8 ranks per node.
  EXPECT_EQ(row(e, 2, OffloadKind::kOptimizerCpu).model_states_gpu_bytes, 16'000'000'000);
  EXPECT_EQ(row(e, 2, OffloadKind::kOptimizerCpu).model_states_cpu_bytes, 14'000'000'000 * 8);
  // Stage 1 + cpu: the full 16-bit gradient stays on the GPU (accumulated there).
  EXPECT_EQ(row(e, 1, OffloadKind::kOptimizerCpu).model_states_gpu_bytes, 32'000'000'000);
  // Stage 3 + cpu/cpu: nothing persistent on the GPU; 16 bytes x shard on the host.
  EXPECT_EQ(row(e, 3, OffloadKind::kOptimizerAndParamCpu).model_states_gpu_bytes, 0);
  EXPECT_EQ(row(e, 3, OffloadKind::kOptimizerAndParamCpu).model_states_cpu_bytes, 16'000'000'000 * 8);
  // Stage 3 + nvme: 14 bytes x shard on NVMe; host staging = 4 buffers x min(1e9 sub-group, 1e9) x 4 bytes.
  const auto& nvme = row(e, 3, OffloadKind::kOptimizerNvme);
  EXPECT_EQ(nvme.model_states_gpu_bytes, 2'000'000'000);
  EXPECT_EQ(nvme.model_states_nvme_bytes, 14'000'000'000 * 8);
  EXPECT_EQ(nvme.model_states_cpu_bytes, 16'000'000'000 * 8);
  // + params on NVMe: 16 bytes x shard on NVMe; host adds the 5 x 1e8 x 2-byte parameter swap pool.
  const auto& nvme2 = row(e, 3, OffloadKind::kOptimizerAndParamNvme);
  EXPECT_EQ(nvme2.model_states_nvme_bytes, 16'000'000'000 * 8);
  EXPECT_EQ(nvme2.model_states_cpu_bytes, (16'000'000'000 + 1'000'000'000) * 8);
  // Start-up host memory: fp32 model per rank (4 P x 8), except stage 3 under zero.Init (largest layer = 0).
  EXPECT_EQ(row(e, 0, OffloadKind::kNone).init_cpu_bytes_per_node, 32'000'000'000 * 8);
  EXPECT_EQ(row(e, 3, OffloadKind::kNone).init_cpu_bytes_per_node, 0);
}

// ---- parameter counts ---------------------------------------------------------------------------------

TEST(CountParameters, Gpt2) {
  // wte 50257 x 768 = 38,597,376; wpe 1024 x 768 = 786,432; per block 4h^2 + 2hf + 9h + f
  // = 2,359,296 + 4,718,592 + 6,912 + 3,072 = 7,087,872, x 12 = 85,054,464; ln_f 2h = 1,536.
  // Total (tied head) 124,439,808, what Hugging Face reports for "gpt2".
  EXPECT_EQ(count_parameters(model_preset("gpt2")), 124'439'808);
  EXPECT_EQ(count_parameters(model_preset("gpt2-medium")), 354'823'168);
  EXPECT_EQ(count_parameters(model_preset("gpt2-large")), 774'030'080);
  EXPECT_EQ(count_parameters(model_preset("gpt2-xl")), 1'557'611'200);
  ModelShape untied = model_preset("gpt2");
  untied.tie_embeddings = false;
  EXPECT_EQ(count_parameters(untied), 124'439'808 + 38'597'376);
  EXPECT_EQ(largest_layer_parameters(model_preset("gpt2")), 38'597'376);  // wte
}

TEST(CountParameters, Llama) {
  // TinyLlama: embed 32000 x 2048 = 65,536,000; per block q, o 2 x 2048^2 = 8,388,608, k, v 2 x 2048 x 256 =
  // 1,048,576, MLP 3 x 2048 x 5632 = 34,603,008, norms 4,096: 44,044,288, x 22 = 968,974,336; final norm
  // 2,048; LM head 65,536,000. Total 1,100,048,384.
  EXPECT_EQ(count_parameters(model_preset("llama-1.1b")), 1'100'048'384);
  EXPECT_EQ(count_parameters(model_preset("llama-2-7b")), 6'738'415'616);
  EXPECT_EQ(count_parameters(model_preset("llama-3-8b")), 8'030'261'248);
  EXPECT_EQ(largest_layer_parameters(model_preset("llama-3-8b")), 525'336'576);  // 128256 x 4096
  ModelShape tied = model_preset("llama-1.1b");
  tied.tie_embeddings = true;
  EXPECT_EQ(count_parameters(tied), 1'100'048'384 - 65'536'000);
}

TEST(ModelPreset, NamesAllResolve) {
  const auto names = model_preset_names();
  EXPECT_EQ(names.size(), 7u);
  for (const auto& name : names) EXPECT_GT(count_parameters(model_preset(name)), 0);
}

// ---- activations --------------------------------------------------------------------------------------

// Korthikanti et al.: s b h (34 + 5 a s / h) bytes per layer for GPT (f = 4h, dropout, scores materialized).
TEST(Activations, ReducesToKorthikanti) {
  ModelShape s = model_preset("gpt2");
  s.dropout = true;
  s.micro_batch = 2;
  const int64_t sbh = 1024 * 2 * 768, a = 12, sq = 1024, b = 2;
  const auto math = estimate_activations(s, false, AttentionKind::kMath);
  EXPECT_EQ(math.per_layer_bytes, 34 * sbh + 5 * a * sq * sq * b);
  // Flash: the a s^2 term is gone; the fp32 log-sum-exp (4 a s b bytes) remains.
  const auto flash = estimate_activations(s, false, AttentionKind::kFlash);
  EXPECT_EQ(flash.per_layer_bytes, 34 * sbh + 4 * a * sq * b);
  // Kept after forward: 12 layers + embedding dropout mask (1 sbh) + final norm and head inputs (4 sbh).
  EXPECT_EQ(flash.saved_bytes, 12 * flash.per_layer_bytes + 5 * sbh);
  // Loss: 3 fp32 copies of (s, b, V).
  EXPECT_EQ(flash.loss_peak_bytes, 3 * 4 * sq * b * 50257);
  EXPECT_EQ(flash.peak_bytes, flash.saved_bytes + flash.loss_peak_bytes);
}

TEST(Activations, LlamaWithAndWithoutCheckpointing) {
  // TinyLlama, s = 2048, b = 1: sbh = 4,194,304. Attention: norm in, qkv in, Q, out 8 sbh = 33,554,432;
  // K, V at kv width 4 x 2048 x 256 = 2,097,152; log-sum-exp 4 x 32 x 2048 = 262,144. MLP: norm in, MLP in
  // 4 sbh = 16,777,216; gate, up, SiLU out, product 8 sbf = 8 x 2048 x 5632 = 92,274,688.
  // Per layer 144,965,632.
  const ModelShape s = model_preset("llama-1.1b");
  const int64_t sbh = 4'194'304;
  const auto full = estimate_activations(s, false, AttentionKind::kFlash);
  EXPECT_EQ(full.per_layer_bytes, 144'965'632);
  EXPECT_EQ(full.saved_bytes, 22 * int64_t{144'965'632} + 4 * sbh);
  EXPECT_EQ(full.recompute_bytes, 0);
  // Checkpointing keeps each block's input (2 sbh) and rebuilds one block (less its input) in backward.
  const auto ckpt = estimate_activations(s, true, AttentionKind::kFlash);
  EXPECT_EQ(ckpt.saved_bytes, 22 * 2 * sbh + 4 * sbh);
  EXPECT_EQ(ckpt.recompute_bytes, 144'965'632 - 2 * sbh);
  const int64_t loss = 3 * 4 * 2048 * int64_t{32000};  // 786,432,000 > recompute
  EXPECT_EQ(ckpt.loss_peak_bytes, loss);
  EXPECT_EQ(ckpt.peak_bytes, ckpt.saved_bytes + loss);
}

// ---- buffers --------------------------------------------------------------------------------------------

TEST(Buffers, PerStage) {
  EstimateInput in;
  in.shape = model_preset("gpt2");
  const Estimate e = estimate_memory(in);
  const int64_t p = 124'439'808;
  // Stages 0-2: one 16-bit bucket of min(5e8, P) elements; the stage 1/2 all-gather is in place.
  EXPECT_EQ(row(e, 0, OffloadKind::kNone).buffers_gpu_bytes, 2 * p);
  EXPECT_EQ(row(e, 2, OffloadKind::kNone).buffers_gpu_bytes, 2 * p);
  // Stage 3: largest unit = embedding (wte + wpe) 39,383,808; prefetch 5e7 rounded up to whole blocks of
  // 7,087,872 = 8 blocks = 56,702,976; gathered 96,086,784 (under max_live 1e9) x 2 bytes, plus the running
  // unit's 16-bit gradient 2 x 39,383,808, plus the bucket 2 x P.
  EXPECT_EQ(row(e, 3, OffloadKind::kNone).buffers_gpu_bytes, 2 * 96'086'784 + 2 * 39'383'808 + 2 * p);
  EXPECT_EQ(e.largest_unit_params, 39'383'808);
  // overlap_comm double-buffers the stage 1/2 bucket.
  in.overlap_comm = true;
  in.reduce_bucket_size = 10'000'000;
  const Estimate o = estimate_memory(in);
  EXPECT_EQ(row(o, 1, OffloadKind::kNone).buffers_gpu_bytes, 2 * 2 * 10'000'000);
  EXPECT_EQ(row(o, 0, OffloadKind::kNone).buffers_gpu_bytes, 2 * 10'000'000);
}

TEST(Estimate, TotalsAndFit) {
  EstimateInput in;
  in.shape = model_preset("gpt2");
  in.gpus_per_node = 4;
  const Estimate e = estimate_memory(in);
  for (const auto& s : e.stages) {
    EXPECT_EQ(s.total_gpu_bytes, s.model_states_gpu_bytes + s.buffers_gpu_bytes + s.activations_gpu_bytes);
    EXPECT_EQ(s.total_gpu_bytes_per_node, 4 * s.total_gpu_bytes);
    EXPECT_EQ(s.activations_gpu_bytes, e.activations->peak_bytes);
    EXPECT_TRUE(s.fits);
  }
  EXPECT_EQ(e.stages.size(), 10u);
  EXPECT_EQ(e.recommendation.seed.stage, 0);
  EXPECT_TRUE(e.recommendation.full_estimate_fits);
  ASSERT_TRUE(e.recommendation.first_fit_stage.has_value());
  EXPECT_EQ(*e.recommendation.first_fit_stage, 0);
  // A GPU too small for anything.
  in.gpu_memory_gb = 0.001;
  const Estimate tiny = estimate_memory(in);
  EXPECT_FALSE(tiny.recommendation.first_fit_stage.has_value());
  EXPECT_FALSE(tiny.recommendation.full_estimate_fits);
}

// ---- bad input ------------------------------------------------------------------------------------------

TEST(BadInput, EstimateArguments) {
  auto with = [](auto edit) {
    return [edit] {
      EstimateInput in = params_input(7'000'000'000, 8);
      edit(in);
      estimate_memory(in);
    };
  };
  expect_invalid(with([](EstimateInput& in) { in.num_params = 0; }), "num_params");
  expect_invalid(with([](EstimateInput& in) { in.num_params = -1; }), "num_params");
  expect_invalid(with([](EstimateInput& in) { in.num_params = int64_t{1} << 62; }), "num_params");
  expect_invalid(with([](EstimateInput& in) { in.shape = model_preset("gpt2"); }), "num_params");
  expect_invalid(with([](EstimateInput& in) { in.largest_layer_params = 8'000'000'000; }), "largest_layer_params");
  expect_invalid(with([](EstimateInput& in) { in.largest_layer_params = -1; }), "largest_layer_params");
  expect_invalid(with([](EstimateInput& in) { in.gpus_per_node = 0; }), "gpus_per_node");
  expect_invalid(with([](EstimateInput& in) { in.num_nodes = 0; }), "num_nodes");
  expect_invalid(with([](EstimateInput& in) { in.gpu_memory_gb = 0; }), "gpu_memory_gb");
  expect_invalid(with([](EstimateInput& in) { in.gpu_memory_gb = std::nan(""); }), "gpu_memory_gb");
  expect_invalid(with([](EstimateInput& in) { in.reduce_bucket_size = -1; }), "reduce_bucket_size");
  expect_invalid(with([](EstimateInput& in) { in.allgather_bucket_size = -1; }), "allgather_bucket_size");
  expect_invalid(with([](EstimateInput& in) { in.prefetch_bucket_size = -1; }), "prefetch_bucket_size");
  expect_invalid(with([](EstimateInput& in) { in.max_live_parameters = -1; }), "max_live_parameters");
  expect_invalid(with([](EstimateInput& in) { in.sub_group_size = 0; }), "sub_group_size");
  expect_invalid(with([](EstimateInput& in) { in.grad_bytes = 3; }), "grad_bytes");
  expect_invalid(with([](EstimateInput& in) { in.additional_buffer_factor = 0.5; }), "additional_buffer_factor");
  // A shape and a largest layer: the shape defines it.
  expect_invalid(
      [] {
        EstimateInput in;
        in.shape = model_preset("gpt2");
        in.largest_layer_params = 5;
        estimate_memory(in);
      },
      "largest_layer_params");
}

TEST(BadInput, ShapeArguments) {
  auto with = [](auto edit) {
    return [edit] {
      ModelShape s = model_preset("llama-1.1b");
      edit(s);
      count_parameters(s);
    };
  };
  expect_invalid(with([](ModelShape& s) { s.num_layers = 0; }), "num_layers");
  expect_invalid(with([](ModelShape& s) { s.hidden = 0; }), "hidden");
  expect_invalid(with([](ModelShape& s) { s.num_heads = 0; }), "num_heads");
  expect_invalid(with([](ModelShape& s) { s.num_heads = 30; }), "num_heads");     // 2048 % 30 != 0
  expect_invalid(with([](ModelShape& s) { s.num_kv_heads = 5; }), "num_kv_heads");  // 32 % 5 != 0
  expect_invalid(with([](ModelShape& s) { s.num_kv_heads = 64; }), "num_kv_heads");
  expect_invalid(with([](ModelShape& s) { s.num_kv_heads = -1; }), "num_kv_heads");
  expect_invalid(with([](ModelShape& s) { s.ffn = 0; }), "ffn");
  expect_invalid(with([](ModelShape& s) { s.vocab = -3; }), "vocab");
  expect_invalid(with([](ModelShape& s) { s.seq = 0; }), "seq");
  expect_invalid(with([](ModelShape& s) { s.micro_batch = 0; }), "micro_batch");
  expect_invalid(with([](ModelShape& s) { s.max_positions = 4096; }), "max_positions");  // gated: rotary
  expect_invalid(
      [] {
        ModelShape s = model_preset("gpt2");
        s.max_positions = -1;
        count_parameters(s);
      },
      "max_positions");
  expect_invalid(
      [] {
        ModelShape s = model_preset("gpt2");
        s.seq = 2048;  // more than the 1024 learned positions
        count_parameters(s);
      },
      "seq");
  // Overflowing shapes are rejected, not wrapped.
  expect_invalid(
      [] {
        ModelShape s = model_preset("llama-3-8b");
        s.seq = int64_t{1} << 40;
        s.micro_batch = int64_t{1} << 20;
        estimate_activations(s, false, AttentionKind::kFlash);
      },
      "overflows");
  expect_invalid([] { model_preset("llama-4"); }, "model");
}

TEST(BadInput, SeedAndDeepSpeedArguments) {
  expect_invalid([] { select_zero_stage(7, 80, 0); }, "num_gpus");
  expect_invalid([] { select_zero_stage(7, 0, 8); }, "gpu_memory_gb");
  expect_invalid([] { select_zero_stage(-1, 80, 8); }, "params_billions");
  expect_invalid([] { deepspeed_zero2_model_states(1000, 0, 1, true); }, "gpus_per_node");
  expect_invalid([] { deepspeed_zero2_model_states(-1, 1, 1, true); }, "total_params");
  expect_invalid([] { deepspeed_zero3_model_states(1000, 10, 1, 0, true, true, true); }, "num_nodes");
  expect_invalid([] { deepspeed_zero3_model_states(1000, -1, 1, 1, true, true, true); }, "largest_layer_params");
}

TEST(BadInput, MessageHasValueAndAllowed) {
  try {
    EstimateInput in = params_input(7'000'000'000, 8);
    in.grad_bytes = 3;
    estimate_memory(in);
    FAIL();
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("grad_bytes (--grad-bytes): got 3"), std::string::npos) << m;
    EXPECT_NE(m.find("allowed: 2"), std::string::npos) << m;
  }
}

// ---- rendering -------------------------------------------------------------------------------------------

TEST(Report, JsonHasTheKeys) {
  EstimateInput in;
  in.shape = model_preset("llama-3-8b");
  in.gpus_per_node = 8;
  const Estimate e = estimate_memory(in);
  const auto j = nlohmann::json::parse(detail::render_estimate_json(e, "llama-3-8b"));
  EXPECT_EQ(j.at("model"), "llama-3-8b");
  EXPECT_EQ(j.at("num_params"), 8'030'261'248);
  ASSERT_EQ(j.at("stages").size(), 10u);
  for (const auto& s : j.at("stages")) {
    for (const char* key :
         {"stage", "offload_optimizer", "offload_param", "model_states_gpu_bytes", "model_states_cpu_bytes",
          "model_states_nvme_bytes", "buffers_gpu_bytes", "activations_gpu_bytes", "total_gpu_bytes",
          "total_gpu_bytes_per_node", "init_cpu_bytes_per_node", "cpu_peak_bytes_per_node", "fits", "deepspeed"}) {
      EXPECT_TRUE(s.contains(key)) << key;
    }
  }
  EXPECT_EQ(j.at("stages")[0].at("model_states_gpu_bytes"), 16 * int64_t{8'030'261'248});
  const auto& rec = j.at("recommendation");
  for (const char* key : {"stage", "advice", "reason", "seed_per_gpu_gb", "threshold_gb", "full_estimate_fits",
                          "first_fit"}) {
    EXPECT_TRUE(rec.contains(key)) << key;
  }
  EXPECT_EQ(rec.at("stage"), 1);
  EXPECT_EQ(rec.at("advice"), "Use ZeRO-1");
  EXPECT_TRUE(j.at("activations").contains("peak_bytes"));
  EXPECT_TRUE(j.at("notes").is_array());

  // Without a shape, activations are null and a note says so.
  const Estimate counted = estimate_memory(params_input(1'000'000'000, 2));
  const auto p = nlohmann::json::parse(detail::render_estimate_json(counted, ""));
  EXPECT_TRUE(p.at("activations").is_null());
  EXPECT_TRUE(p.at("model").is_null());
}

TEST(Report, TextHasTableAndRecommendation) {
  EstimateInput in;
  in.shape = model_preset("gpt2");
  const std::string text = detail::render_estimate_text(estimate_memory(in), "gpt2");
  EXPECT_NE(text.find("124,439,808 parameters"), std::string::npos) << text;
  EXPECT_NE(text.find("recommendation: ZeRO-0: Use DDP"), std::string::npos) << text;
  EXPECT_NE(text.find("nvme"), std::string::npos) << text;
}

}  // namespace
}  // namespace zerotrain
