// Optimizer offload to the CPU (ZeRO-Offload, stages 1-3) and to NVMe: training is the same as without it (exactly on
// the CPU, where both run the same optimizer code; within fp32 rounding on a GPU, whose step runs the CUDA kernel), a
// checkpoint resumes exactly, and the settings it does not cover are errors naming the key.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <dirent.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "zero/swap_file.h"
#include "zerotrain/config.h"
#include "zerotrain/engine.h"

#ifdef ZEROTRAIN_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace zerotrain {
namespace {

struct MlpImpl : torch::nn::Module {
  MlpImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(16, 32));
    fc2 = register_module("fc2", torch::nn::Linear(32, 1));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& y) {
    return (fc2->forward(at::gelu(fc1->forward(x))) - y).pow(2).mean();
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

// Where `offload` sends the optimizer: "cpu", or an NVMe directory (UseNvme below).
std::string g_nvme_path;

// The names in a directory (POSIX: std::filesystem misbehaves in programs linked to the torch wheel).
std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    closedir(d);
  }
  return names;
}

// While alive: offloaded configs put the optimizer on NVMe, in a fresh directory under the test's temporary one.
struct UseNvme {
  UseNvme() {
    std::string tmp = testing::TempDir();
    while (tmp.size() > 1 && tmp.back() == '/') tmp.pop_back();  // as the kernel names it in /proc/self/smaps
    g_nvme_path = tmp + "/zt_nvme_" + std::to_string(getpid());
    mkdir(g_nvme_path.c_str(), 0700);
  }
  ~UseNvme() { g_nvme_path.clear(); }
};

std::string config(int stage, const std::string& precision, bool offload, const std::string& optimizer = "AdamW",
                   bool offload_param = false) {
  std::string c = R"({"train_micro_batch_size_per_gpu": 4, "gradient_clipping": 1.0, "optimizer": {"type": ")" +
                  optimizer + R"(", "params": {"lr": 0.01, "weight_decay": 0.01}}, "zero_optimization": {"stage": )" +
                  std::to_string(stage) + R"(, "reduce_bucket_size": 200)";
  if (offload && g_nvme_path.empty()) c += R"(, "offload_optimizer": {"device": "cpu", "pin_memory": true})";
  if (offload && !g_nvme_path.empty()) {
    c += R"(, "offload_optimizer": {"device": "nvme", "nvme_path": ")" + g_nvme_path + R"(", "pin_memory": true})";
  }
  if (offload_param && g_nvme_path.empty()) c += R"(, "offload_param": {"device": "cpu", "pin_memory": true})";
  if (offload_param && !g_nvme_path.empty()) {
    c += R"(, "offload_param": {"device": "nvme", "nvme_path": ")" + g_nvme_path + R"(", "pin_memory": true})";
  }
  c += "}";
  if (precision == "bf16") c += R"(, "bf16": {"enabled": true})";
  if (precision == "fp16") c += R"(, "fp16": {"enabled": true, "initial_scale_power": 8})";
  return c + "}";
}

EngineOptions options(c10::Device device) {
  EngineOptions o;
  o.comm = make_single_comm();
  o.device = device;
  return o;
}

// The swap files of this process under g_nvme_path that are mapped now, and the kB of them in memory (/proc/self/smaps:
// a mapping's header line names its file, "(deleted)" once unlinked; its Rss line follows).
std::pair<int, int64_t> swap_mappings() {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  int count = 0;
  int64_t rss_kb = 0;
  bool in_swap = false;
  while (std::getline(smaps, line)) {
    const bool header = !line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
                        line.find('-') != std::string::npos && line.find(':') > line.find(' ');
    if (header) {
      in_swap = !g_nvme_path.empty() && line.find(g_nvme_path + "/zerotrain-") != std::string::npos;
      count += in_swap;
    } else if (in_swap && line.rfind("Rss:", 0) == 0) {
      rss_kb += std::stoll(line.substr(4));
    }
  }
  return {count, rss_kb};
}

bool on_tmpfs(const std::string& dir) {
  struct statfs fs {};
  return statfs(dir.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

struct Trained {
  std::vector<double> losses;
  std::vector<at::Tensor> params;  // fp32 copies on the CPU
};

// `steps` steps from the same initial model and data; with `save_at`, saves a checkpoint there into `dir`.
Trained train(int stage, const std::string& precision, bool offload, c10::Device device, int steps,
          const std::string& dir = "", int save_at = -1, bool resume = false, bool offload_param = false) {
  torch::manual_seed(0);
  Mlp model;
  Engine engine = initialize(model.ptr(), config(stage, precision, offload, "AdamW", offload_param), options(device));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  Trained run;
  int first = 0;
  if (resume) {
    engine.load_checkpoint(dir);
    first = save_at;
  }
  for (int s = 0; s < steps; ++s) {
    const at::ScalarType dtype = precision == "bf16" ? at::kBFloat16 : precision == "fp16" ? at::kHalf : at::kFloat;
    const at::Tensor x = at::randn({4, 16}, gen).to(device, dtype), y = at::randn({4, 1}, gen).to(device, dtype);
    if (s < first) continue;  // the data a resumed run has already seen
    at::Tensor loss = engine.forward(x, y);
    engine.backward(loss);
    engine.step();
    run.losses.push_back(loss.item<double>());
    if (s + 1 == save_at && !resume) engine.save_checkpoint(dir, "step" + std::to_string(save_at));
    if (offload && !g_nvme_path.empty()) {
      // NVMe: the master (unless it is the offloaded parameters' fp32 shard), Adam's two moments and, with the
      // parameters offloaded, their shard are mapped swap files, and between steps none of them is in memory (tmpfs
      // keeps its pages: not checked there)
      const auto [files, rss_kb] = swap_mappings();
      // (an fp32 stage-3 master is the units' shard itself when that is on the host: CPU ranks, parameter offload)
      const bool master_is_shard = stage == 3 && precision == "fp32" && (device.is_cpu() || offload_param);
      EXPECT_EQ(files, 2 + (offload_param ? 1 : 0) + (master_is_shard ? 0 : 1))
          << "stage " << stage << " " << precision << (offload_param ? " +param" : "") << " step " << s;
      if (!on_tmpfs(g_nvme_path)) EXPECT_EQ(rss_kb, 0) << "kB of optimizer state in memory after step " << s;
    }
  }
  for (const auto& p : model->parameters()) run.params.push_back(p.detach().to(at::kCPU, at::kFloat).clone());
  return run;
}

TEST(Offload, TrainsExactlyAsWithoutOnTheCpu) {
  for (int stage : {1, 2, 3}) {
    for (const std::string precision : {"fp32", "bf16", "fp16"}) {
      const Trained plain = train(stage, precision, false, c10::kCPU, 6);
      const Trained offloaded = train(stage, precision, true, c10::kCPU, 6);
      const std::string what = "stage " + std::to_string(stage) + " " + precision;
      ASSERT_EQ(plain.losses.size(), offloaded.losses.size());
      for (size_t i = 0; i < plain.losses.size(); ++i) EXPECT_EQ(plain.losses[i], offloaded.losses[i]) << what;
      for (size_t i = 0; i < plain.params.size(); ++i) {
        EXPECT_TRUE(at::equal(plain.params[i], offloaded.params[i])) << what << ", parameter " << i;
      }
      if (stage != 3) continue;
      // ZeRO-Infinity on the CPU: the parameters' shard offloaded too
      const Trained both = train(stage, precision, true, c10::kCPU, 6, "", -1, false, /*offload_param=*/true);
      for (size_t i = 0; i < plain.losses.size(); ++i) EXPECT_EQ(plain.losses[i], both.losses[i]) << what << " +param";
      for (size_t i = 0; i < plain.params.size(); ++i) {
        EXPECT_TRUE(at::equal(plain.params[i], both.params[i])) << what << " +param, parameter " << i;
      }
      // Parameter offload alone (a DeepSpeed config that offloads only the parameters): it trains, as without offload
      const Trained param_only = train(stage, precision, false, c10::kCPU, 6, "", -1, false, /*offload_param=*/true);
      for (size_t i = 0; i < plain.losses.size(); ++i) {
        EXPECT_EQ(plain.losses[i], param_only.losses[i]) << what << " param only";
      }
      for (size_t i = 0; i < plain.params.size(); ++i) {
        EXPECT_TRUE(at::equal(plain.params[i], param_only.params[i])) << what << " param only, parameter " << i;
      }
    }
  }
}

TEST(Offload, ParameterOffloadAloneIsAcceptedWithAWarningThatSaysWhy) {
  // DeepSpeed's offload_param moves the 16-bit parameter partition to the host; zerotrain's stage 3 has none on the
  // device, so the config trains unchanged and says so.
  const Config cfg = Config::from_string(config(3, "bf16", false, "AdamW", /*offload_param=*/true));
  EXPECT_TRUE(cfg.unsupported_features().empty());
  std::string all;
  for (const auto& w : cfg.warnings()) all += w + "\n";
  EXPECT_NE(all.find("zero_optimization.offload_param.device"), std::string::npos) << all;
  EXPECT_NE(all.find("nothing to move"), std::string::npos) << all;
  EXPECT_NE(all.find("offload_optimizer.device"), std::string::npos) << all;
  // With the optimizer offloaded too there is something to move: no such warning.
  const Config both = Config::from_string(config(3, "bf16", true, "AdamW", /*offload_param=*/true));
  for (const auto& w : both.warnings()) EXPECT_EQ(w.find("nothing to move"), std::string::npos) << w;
}

TEST(Offload, TrainsAsWithoutOnAGpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no GPU";
  for (int stage : {1, 2, 3}) {
    const Trained plain = train(stage, "bf16", false, c10::Device(c10::kCUDA, 0), 6);
    const Trained offloaded = train(stage, "bf16", true, c10::Device(c10::kCUDA, 0), 6);
    for (size_t i = 0; i < plain.losses.size(); ++i) {
      EXPECT_NEAR(plain.losses[i], offloaded.losses[i], 1e-2 * std::abs(plain.losses[i])) << "stage " << stage;
    }
    for (size_t i = 0; i < plain.params.size(); ++i) {
      // the CPU optimizer and the CUDA kernel round differently; bf16 parameters: within a few bf16 ulps
      EXPECT_LT((plain.params[i] - offloaded.params[i]).abs().max().item<double>(), 2e-2)
          << "stage " << stage << ", parameter " << i;
    }
    {
      UseNvme nvme;  // the same host step on the same values, its state in swap files
      const Trained swapped = train(stage, "bf16", true, c10::Device(c10::kCUDA, 0), 6);
      for (size_t i = 0; i < plain.params.size(); ++i) {
        EXPECT_TRUE(at::equal(offloaded.params[i], swapped.params[i])) << "stage " << stage << " nvme, parameter " << i;
      }
    }
    if (stage != 3) continue;
    const Trained both =
        train(stage, "bf16", true, c10::Device(c10::kCUDA, 0), 6, "", -1, false, /*offload_param=*/true);
    UseNvme nvme;  // ZeRO-Infinity on NVMe: the units' shard in a swap file, read per gather
    const Trained both_nvme =
        train(stage, "bf16", true, c10::Device(c10::kCUDA, 0), 6, "", -1, false, /*offload_param=*/true);
    for (size_t i = 0; i < plain.params.size(); ++i) {
      // the same host step as `offloaded`; the shard reaches the units from pinned memory instead of the device
      EXPECT_TRUE(at::equal(offloaded.params[i], both.params[i])) << "stage 3 +param, parameter " << i;
      EXPECT_TRUE(at::equal(offloaded.params[i], both_nvme.params[i])) << "stage 3 +param on nvme, parameter " << i;
    }
  }
}

#ifdef ZEROTRAIN_WITH_CUDA
// On a GPU the master shard and the optimizer's state leave device memory: at stage 2, 12 bytes per parameter (fp32
// master, Adam's two moments) on one rank; at stage 3 the device keeps a 16-bit shard instead of the fp32 master: 10.
TEST(Offload, MovesTheOptimizerStateOffTheGpu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no GPU";
  const c10::Device gpu(c10::kCUDA, 0);
  // {stage, parameters offloaded too, bytes per parameter saved at least}
  for (const auto& [stage, offload_param, saved_per_param] :
       {std::tuple{2, false, 11}, std::tuple{3, false, 9}, std::tuple{3, true, 11}}) {
    int64_t allocated[2] = {0, 0};
    int64_t numel = 0;
    for (bool offload : {false, true}) {
      torch::manual_seed(0);
      auto model = std::make_shared<torch::nn::LinearImpl>(512, 512);
      numel = model->weight.numel() + model->bias.numel();
      c10::cuda::CUDACachingAllocator::emptyCache();
      const int64_t before = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current;
      {
        Engine engine =
            initialize(model, config(stage, "bf16", offload, "AdamW", offload && offload_param), options(gpu));
        const at::Tensor x = at::randn({4, 512}, at::TensorOptions(gpu).dtype(at::kBFloat16));
        at::Tensor loss = engine.forward(x).to(at::kFloat).pow(2).mean();
        engine.backward(loss);
        engine.step();
        allocated[offload] = c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current - before;
      }
    }
    EXPECT_GE(allocated[0] - allocated[1], saved_per_param * numel)
        << "stage " << stage << (offload_param ? " +param" : "") << ": " << allocated[0] << " bytes without offload, "
        << allocated[1] << " with, "
        << numel << " parameters";
  }
}
#endif

TEST(Offload, CheckpointResumesExactly) {
  for (int stage : {2, 3, 4}) {  // 4: stage 3 with the parameters offloaded too
    const bool param = stage == 4;
    stage = std::min(stage, 3);
    const std::string dir = testing::TempDir() + "/zt_offload_ckpt" + std::to_string(stage) + (param ? "p" : "");
    const Trained full = train(stage, "bf16", true, c10::kCPU, 6, dir, 3, false, param);
    const Trained resumed = train(stage, "bf16", true, c10::kCPU, 6, dir, 3, /*resume=*/true, param);
    ASSERT_EQ(resumed.losses.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(full.losses[3 + i], resumed.losses[i]) << "stage " << stage << " step " << 3 + i;
    }
    for (size_t i = 0; i < full.params.size(); ++i) {
      EXPECT_TRUE(at::equal(full.params[i], resumed.params[i])) << "stage " << stage << " parameter " << i;
    }
  }
}

// Parameters changed under GatheredParameters (modifier rank 0) reach the offloaded master: training goes on from them
// exactly as without offload (stage 3, with and without the parameters offloaded too).
TEST(Offload, GatheredParameterChangesReachTheHostMaster) {
  auto run = [](bool offload, bool offload_param) {
    torch::manual_seed(0);
    Mlp model;
    Engine engine =
        initialize(model.ptr(), config(3, "bf16", offload, "AdamW", offload_param), options(c10::kCPU));
    {
      GatheredParameters full(engine, /*modifier_rank=*/0);
      at::NoGradGuard no_grad;
      model->fc1->weight.mul_(0.5).add_(0.25);
    }
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
    for (int s = 0; s < 3; ++s) {
      const at::Tensor x = at::randn({4, 16}, gen).to(at::kBFloat16), y = at::randn({4, 1}, gen).to(at::kBFloat16);
      engine.backward(engine.forward(x, y));
      engine.step();
    }
    GatheredParameters full(engine);
    std::vector<at::Tensor> out;
    for (const auto& p : model->parameters()) out.push_back(p.detach().to(at::kFloat).clone());
    return out;
  };
  const auto plain = run(false, false), offloaded = run(true, false), both = run(true, true);
  std::vector<at::Tensor> nvme;
  {
    UseNvme use;  // the optimizer and the parameters on NVMe
    nvme = run(true, true);
  }
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_TRUE(at::equal(plain[i], offloaded[i])) << "parameter " << i;
    EXPECT_TRUE(at::equal(plain[i], both[i])) << "+param, parameter " << i;
    EXPECT_TRUE(at::equal(plain[i], nvme[i])) << "nvme, parameter " << i;
  }
}

// A checkpoint written with the optimizer offloaded loads into a run without it, and back: the master and the state
// are the same tensors wherever they live.
TEST(Offload, CheckpointsMoveBetweenOffloadAndNot) {
  for (int stage : {2, 3}) {
    const std::string dir = testing::TempDir() + "/zt_offload_cross" + std::to_string(stage);
    const Trained full = train(stage, "bf16", false, c10::kCPU, 6, dir, 3);
    const Trained plain_from_plain = train(stage, "bf16", false, c10::kCPU, 6, dir, 3, /*resume=*/true);
    const Trained offloaded_from_plain = train(stage, "bf16", true, c10::kCPU, 6, dir, 3, /*resume=*/true);
    for (size_t i = 0; i < full.params.size(); ++i) {
      EXPECT_TRUE(at::equal(plain_from_plain.params[i], offloaded_from_plain.params[i]))
          << "stage " << stage << " " << i;
    }
  }
}

// NVMe offload (zero/swap_file.h): the same host step as offload to the CPU on the same values, so training is
// bit-identical to training without offload; the swap files leave nothing in nvme_path; checkpoints resume exactly
// and move between NVMe and the CPU.
TEST(OffloadNvme, TrainsExactlyAsWithoutOnTheCpu) {
  for (int stage : {1, 2, 3}) {
    for (const std::string precision : {"fp32", "bf16"}) {
      const Trained plain = train(stage, precision, false, c10::kCPU, 6);
      UseNvme nvme;
      const std::string what = "stage " + std::to_string(stage) + " " + precision;
      for (bool param : {false, true}) {
        if (param && stage != 3) continue;
        const Trained swapped = train(stage, precision, true, c10::kCPU, 6, "", -1, false, param);
        ASSERT_EQ(plain.losses.size(), swapped.losses.size());
        for (size_t i = 0; i < plain.losses.size(); ++i) EXPECT_EQ(plain.losses[i], swapped.losses[i]) << what;
        for (size_t i = 0; i < plain.params.size(); ++i) {
          EXPECT_TRUE(at::equal(plain.params[i], swapped.params[i])) << what << (param ? " +param" : "") << ", " << i;
        }
      }
      EXPECT_TRUE(names_in(g_nvme_path).empty()) << "swap files are unlinked when made";
    }
  }
}

TEST(OffloadNvme, CheckpointsResumeExactlyAndMoveToAndFromTheCpu) {
  for (int stage : {2, 3, 4}) {  // 4: stage 3 with the parameters on NVMe too
    const bool param = stage == 4;
    stage = std::min(stage, 3);
    const std::string dir = testing::TempDir() + "/zt_nvme_ckpt" + std::to_string(stage) + (param ? "p" : "");
    Trained full, resumed;
    {
      UseNvme nvme;
      full = train(stage, "bf16", true, c10::kCPU, 6, dir, 3, false, param);
      resumed = train(stage, "bf16", true, c10::kCPU, 6, dir, 3, /*resume=*/true, param);
    }
    const Trained on_cpu = train(stage, "bf16", true, c10::kCPU, 6, dir, 3, /*resume=*/true, param);
    ASSERT_EQ(resumed.losses.size(), 3u);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(full.losses[3 + i], resumed.losses[i]) << "stage " << stage;
    for (size_t i = 0; i < full.params.size(); ++i) {
      EXPECT_TRUE(at::equal(full.params[i], resumed.params[i])) << "stage " << stage << " parameter " << i;
      EXPECT_TRUE(at::equal(full.params[i], on_cpu.params[i])) << "stage " << stage << " from nvme to cpu " << i;
    }
  }
}

// The optimizers that step the whole shard at once (SGD with momentum, Lion, Adagrad): their state in swap files too,
// the same results as offload to the CPU, none of it in memory between steps.
TEST(OffloadNvme, EveryOffloadableOptimizerSwapsItsState) {
  for (const std::string optimizer : {"SGD", "Lion", "Adagrad"}) {
    auto run = [&](bool nvme) {
      std::optional<UseNvme> use;
      if (nvme) use.emplace();
      torch::manual_seed(0);
      Mlp model;
      std::string cfg = config(2, "fp32", true, optimizer);
      if (optimizer == "SGD") cfg.replace(cfg.find(R"("lr": 0.01)"), 10, R"("lr": 0.01, "momentum": 0.9)");
      Engine engine = initialize(model.ptr(), cfg, options(c10::kCPU));
      auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
      for (int s = 0; s < 3; ++s) {
        engine.backward(engine.forward(at::randn({4, 16}, gen), at::randn({4, 1}, gen)));
        engine.step();
        if (nvme) {
          const auto [files, rss_kb] = swap_mappings();
          EXPECT_EQ(files, 2) << optimizer << ": the master and one state tensor";
          if (!on_tmpfs(g_nvme_path)) EXPECT_EQ(rss_kb, 0) << optimizer << " step " << s;
        }
      }
      std::vector<at::Tensor> out;
      for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
      return out;
    };
    const auto cpu = run(false), nvme = run(true);
    for (size_t i = 0; i < cpu.size(); ++i) EXPECT_TRUE(at::equal(cpu[i], nvme[i])) << optimizer << " parameter " << i;
  }
}

TEST(SwapFile, HoldsItsValuesOnTheDriveNotInMemory) {
  const std::string dir = testing::TempDir();
  detail::SwapFile swap(dir, "test.nvme_path", "state", int64_t{1} << 20, at::kFloat);  // 4 MiB
  at::Tensor t = swap.tensor();
  ASSERT_EQ(t.numel(), int64_t{1} << 20);
  EXPECT_TRUE(at::equal(t, at::zeros_like(t))) << "a new file reads as zeros";
  const at::Tensor values = at::randn({t.numel()}, at::make_generator<at::CPUGeneratorImpl>(3));
  t.copy_(values);
  swap.evict(0, t.numel() / 2);
  swap.prefetch(0, t.numel() / 2);
  swap.write_back(t.numel() / 2, t.numel());
  swap.evict_all();
  if (!on_tmpfs(dir)) {  // tmpfs pages are the file: they cannot leave memory
    EXPECT_EQ(swap.resident_bytes(0, t.numel()), 0) << "evicted pages left memory";
  }
  EXPECT_TRUE(at::equal(t, values)) << "read back from the file";
  EXPECT_GT(swap.resident_bytes(0, t.numel()), 0) << "reading brought them back";
  for (const std::string& name : names_in(dir)) EXPECT_EQ(name.find(".swap"), std::string::npos) << name;
  try {
    detail::SwapFile bad(dir + "/no_such_dir", "zero_optimization.offload_optimizer.nvme_path", "master", 16,
                         at::kFloat);
    ADD_FAILURE() << "no error for a missing directory";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("zero_optimization.offload_optimizer.nvme_path \"" + dir + "/no_such_dir\""),
              std::string::npos)
        << e.what();
  }
}

std::string error_of(const std::string& cfg) {
  torch::manual_seed(0);
  Mlp model;
  try {
    initialize(model.ptr(), cfg, options(c10::kCPU));
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Offload, WhatItDoesNotCoverIsAnErrorNamingTheKey) {
  const std::string lamb = error_of(config(2, "fp32", true, "Lamb"));
  EXPECT_NE(lamb.find("zero_optimization.offload_optimizer.device"), std::string::npos) << lamb;
  EXPECT_NE(lamb.find("Lamb"), std::string::npos) << lamb;
  std::string nvme = config(3, "fp32", true);
  nvme.replace(nvme.find(R"("device": "cpu")"), 15, R"("device": "nvme", "nvme_path": "/nonexistent/zt_nvme")");
  const std::string en = error_of(nvme);
  EXPECT_NE(en.find("zero_optimization.offload_optimizer.nvme_path \"/nonexistent/zt_nvme\""), std::string::npos)
      << en;
  EXPECT_NE(en.find("No such file or directory"), std::string::npos) << en;
  std::string partial = config(3, "fp32", true);
  partial.replace(partial.find(R"("pin_memory": true)"), 18, R"("pin_memory": true, "ratio": 0.5)");
  const std::string ep = error_of(partial);
  EXPECT_NE(ep.find("partial optimizer offload"), std::string::npos) << ep;
  EXPECT_NE(ep.find("zero_optimization.offload_optimizer.ratio"), std::string::npos) << ep;
  std::string param_nvme = config(3, "fp32", true, "AdamW", true);
  param_nvme.replace(param_nvme.rfind(R"("device": "cpu")"), 15, R"("device": "nvme", "nvme_path": "/nonexistent/p")");
  const std::string epn = error_of(param_nvme);
  EXPECT_NE(epn.find("zero_optimization.offload_param.nvme_path \"/nonexistent/p\""), std::string::npos) << epn;
  const std::string e0 = error_of(config(0, "fp32", true));
  EXPECT_NE(e0.find("needs ZeRO stage 1, 2 or 3"), std::string::npos) << e0;
}

}  // namespace
}  // namespace zerotrain
