// The CUDA kernels of the shard optimizers (src/optim/*_kernels.cu) against ATen's fused kernels where ATen has
// the same rule, and against the CPU path on a shard large enough for many LAMB chunks and several grid-stride
// rounds. Skipped without a CUDA device. shard_optimizer_test.cc covers every option against a float64 reference.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "optim/shard_optimizer.h"

// The launchers exist only in CUDA builds; a CPU-only build has no kernels to test here.
#ifdef ZEROTRAIN_WITH_CUDA
#include <c10/cuda/CUDAStream.h>

#include "optim/optim_kernels.h"

namespace zerotrain::detail {
namespace {

struct Case {
  std::string name;
  OptimizerConfig cfg;
};

template <typename F>
Case make_case(std::string name, OptimizerKind kind, double lr, F edit) {
  Case c{std::move(name), {}};
  c.cfg.kind = kind;
  c.cfg.lr = lr;
  if (kind == OptimizerKind::kLion) c.cfg.betas = {0.9, 0.99};
  if (kind == OptimizerKind::kAdagrad) c.cfg.eps = 1e-10;
  edit(c.cfg);
  return c;
}

TEST(ShardOptimizerCudaKernels, AdamKernelMatchesAtenFusedAdam) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::TensorOptions cuda = at::TensorOptions(at::kFloat).device(at::kCUDA, 0);
  const int64_t n = 100'003;
  const double lr = 1e-3, eps = 1e-8, wd = 0.05;
  // betas as fp32 values (DeepSpeed's and ATen's CUDA kernels take them so): 1 - b is then exact in fp32
  const double b1 = 0.9f, b2 = 0.999f;
  for (bool adam_w_mode : {true, false}) {
    at::manual_seed(3);
    at::Tensor p1 = at::randn({n}, cuda), m1 = at::zeros({n}, cuda), v1 = at::zeros({n}, cuda);
    at::Tensor p2 = p1.clone(), m2 = m1.clone(), v2 = v1.clone(), step = at::zeros({}, cuda);
    for (int t = 1; t <= 5; ++t) {
      const at::Tensor g = at::randn({n}, cuda);
      const AdamKernelArgs args{static_cast<float>(lr),
                                static_cast<float>(b1),
                                static_cast<float>(1 - b1),
                                static_cast<float>(b2),
                                static_cast<float>(1 - b2),
                                static_cast<float>(eps),
                                static_cast<float>(wd),
                                static_cast<float>(1 - std::pow(b1, t)),
                                static_cast<float>(1 - std::pow(b2, t)),
                                adam_w_mode};
      adam_step_cuda(p1.data_ptr<float>(), g.data_ptr<float>(), m1.data_ptr<float>(), v1.data_ptr<float>(), n, args,
                     c10::cuda::getCurrentCUDAStream());
      step.fill_(t);
      if (adam_w_mode) {
        at::_fused_adamw_({p2}, {g}, {m2}, {v2}, {}, {step}, lr, b1, b2, wd, eps, false, false);
      } else {
        at::_fused_adam_({p2}, {g}, {m2}, {v2}, {}, {step}, lr, b1, b2, wd, eps, false, false);
      }
    }
    // ATen computes 1 - beta^t with fp32 powf on the device: ~1e-6 of the step.
    EXPECT_TRUE(at::allclose(p1, p2, 1e-6, 1e-4 * lr))
        << "adam_w_mode " << adam_w_mode << " max diff " << (p1 - p2).abs().max().item<float>();
    // moments: a few fp32 roundings per step, accumulated over 5 steps
    EXPECT_TRUE(at::allclose(m1, m2, 2e-6, 1e-7)) << (m1 - m2).abs().max().item<float>();
    EXPECT_TRUE(at::allclose(v1, v2, 2e-6, 1e-8)) << (v1 - v2).abs().max().item<float>();
  }
}

TEST(ShardOptimizerCudaKernels, SgdKernelMatchesAtenFusedSgd) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::TensorOptions cuda = at::TensorOptions(at::kFloat).device(at::kCUDA, 0);
  const int64_t n = 100'003;
  for (bool nesterov : {false, true}) {
    at::manual_seed(4);
    at::Tensor p1 = at::randn({n}, cuda), buf1 = at::zeros({n}, cuda);
    at::Tensor p2 = p1.clone(), buf2 = buf1.clone();
    const double lr = 0.05, momentum = 0.9, dampening = nesterov ? 0.0 : 0.2, wd = 1e-3;
    for (int t = 1; t <= 5; ++t) {
      const at::Tensor g = at::randn({n}, cuda);
      sgd_step_cuda(p1.data_ptr<float>(), g.data_ptr<float>(), buf1.data_ptr<float>(), n,
                    SgdKernelArgs{static_cast<float>(lr), static_cast<float>(wd), static_cast<float>(momentum),
                                  static_cast<float>(1 - dampening), nesterov, t == 1},
                    c10::cuda::getCurrentCUDAStream());
      at::_fused_sgd_({p2}, {g}, {buf2}, wd, momentum, lr, dampening, nesterov, false, t == 1);
    }
    EXPECT_TRUE(at::allclose(p1, p2, 1e-6, 1e-6)) << "nesterov " << nesterov;
    EXPECT_TRUE(at::allclose(buf1, buf2, 1e-6, 1e-6)) << "nesterov " << nesterov;
  }
}

TEST(ShardOptimizerCudaKernels, LargeShardMatchesCpu) {
  // 3M elements: LAMB parameters spanning ~70 chunks each, padding between them at odd offsets, and more elements
  // than one wave of the capped grid covers, so every grid-stride loop runs several rounds.
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const int64_t n = 3'000'013;
  const std::vector<ShardSegment> segments = {{0, 3, 1'200'000}, {1, 1'200'007, 1'000'000}, {2, 2'200'010, 800'000}};
  at::manual_seed(5);
  const at::Tensor init = at::randn({n});
  std::vector<at::Tensor> grads;
  for (int t = 0; t < 3; ++t) grads.push_back(at::randn({n}) + 0.2);
  using K = OptimizerKind;
  std::vector<Case> cases = {
      make_case("AdamW", K::kAdamW, 1e-3, [](auto& c) { c.weight_decay = 0.05; }),
      make_case("AdamW_no_bias_correction", K::kAdamW, 1e-3, [](auto& c) { c.bias_correction = false; }),
      make_case("SGD", K::kSGD, 0.05, [](auto& c) { c.momentum = 0.9, c.nesterov = true; }),
      make_case("Lion", K::kLion, 1e-3, [](auto& c) { c.weight_decay = 0.1; }),
      make_case("Adagrad", K::kAdagrad, 0.1, [](auto& c) { c.weight_decay = 0.01; }),
      make_case("Lamb", K::kLamb, 1e-2, [](auto& c) { c.weight_decay = 0.01, c.max_coeff = 1.02; }),
  };
  for (const Case& c : cases) {
    std::map<std::string, at::Tensor> results[2];
    for (int d = 0; d < 2; ++d) {
      const at::Device device = d == 0 ? at::Device(at::kCPU) : at::Device(at::kCUDA, 0);
      at::Tensor p = init.to(device, /*non_blocking=*/false, /*copy=*/true);  // init stays the starting point
      auto opt = make_shard_optimizer(c.cfg, p, segments, 3, nullptr);
      for (int t = 0; t < 3; ++t) opt->step(p, grads[t].to(device), StepArgs{c.cfg.lr, t + 1, {}});
      results[d]["param"] = p.cpu();
      for (const auto& [name, tensor] : opt->state()) results[d][name] = tensor.cpu();
    }
    for (const auto& [name, cpu] : results[0]) {
      const at::Tensor& gpu = results[1].at(name);
      const float diff = (gpu - cpu).abs().max().item<float>();
      // 3 fp32 steps with different rounding (FMA contraction, reduction order): a few ulps of O(1..10) values;
      // Lion may flip a sign where c is within rounding of 0, moving that element by 2 lr.
      const double atol = c.cfg.kind == K::kLion ? 2.5 * c.cfg.lr : 2e-5;
      EXPECT_LE(diff, atol) << c.name << " " << name;
      if (c.cfg.kind == K::kLion && name == "param")
        EXPECT_LE((gpu - cpu).abs().gt(2e-5).sum().item<int64_t>(), 30) << "too many Lion sign flips";
    }
  }
}

// step_and_copy's one-pass kernel (unscale, update, cast copy) against the same work done in passes on the same
// device: copy ranges with gaps between them and after them, every copy dtype, and misuse named in the error.
TEST(ShardOptimizerCudaKernels, AdamStepAndCopyMatchesPasses) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::TensorOptions cuda = at::TensorOptions(at::kFloat).device(at::kCUDA, 0);
  const int64_t n = 1'000'003;
  for (at::ScalarType dtype : {at::kBFloat16, at::kHalf, at::kFloat}) {
    for (bool bias_correction : {true, false}) {
      OptimizerConfig cfg;
      cfg.kind = OptimizerKind::kAdamW;
      cfg.lr = 1e-3;
      cfg.weight_decay = 0.05;
      cfg.bias_correction = bias_correction;
      at::manual_seed(7);
      at::Tensor p1 = at::randn({n}, cuda), p2 = p1.clone();
      auto fused = make_shard_optimizer(cfg, p1, {}, 1, nullptr);
      auto passes = make_shard_optimizer(cfg, p2, {}, 1, nullptr);
      // two ranges, one at an odd offset (the scalar path) and one aligned (the vector path), gaps around them
      at::Tensor d1 = at::zeros({300'001}, cuda.dtype(dtype)), d2 = at::zeros({400'000}, cuda.dtype(dtype));
      const std::vector<ParamCopyRange> copies{{600'000, d2}, {5, d1}};
      for (int t = 1; t <= 3; ++t) {
        at::Tensor g1 = at::randn({n}, cuda) * 8, g2 = g1.clone();
        fused->step_and_copy(p1, g1, StepArgs{cfg.lr, t, {}}, 0.125, copies);
        g2.mul_(0.125);
        passes->step(p2, g2, StepArgs{cfg.lr, t, {}});
      }
      const std::string what = std::string(c10::toString(dtype)) + " bias_correction " + std::to_string(bias_correction);
      EXPECT_TRUE(at::allclose(p1, p2, 1e-6, 1e-7)) << what << " " << (p1 - p2).abs().max().item<float>();
      EXPECT_TRUE(at::equal(d1, p1.narrow(0, 5, 300'001).to(dtype))) << what;
      EXPECT_TRUE(at::equal(d2, p1.narrow(0, 600'000, 400'000).to(dtype))) << what;
      // The split run takes the scalar path on the misaligned range where the whole-shard run vectorises: the two
      // instruction sequences round differently by an ulp, which the moments' cancellation (m near 0) exposes.
      const auto s1 = fused->state(), s2 = passes->state();
      for (size_t k = 0; k < s1.size(); ++k) {
        EXPECT_TRUE(at::allclose(s1[k].second, s2[k].second, 1e-5, 1e-6))
            << what << " " << s1[k].first << " max diff " << (s1[k].second - s2[k].second).abs().max().item<float>();
      }
    }
  }
  // The multiplier read from device memory by the kernel (a clip factor the host never saw) = the same number passed
  // as an argument, bit for bit.
  {
    OptimizerConfig cfg;
    cfg.kind = OptimizerKind::kAdamW;
    cfg.lr = 1e-3;
    at::manual_seed(8);
    at::Tensor p1 = at::randn({n}, cuda), p2 = p1.clone();
    auto by_tensor = make_shard_optimizer(cfg, p1, {}, 1, nullptr);
    auto by_number = make_shard_optimizer(cfg, p2, {}, 1, nullptr);
    at::Tensor d1 = at::zeros({300'001}, cuda.dtype(at::kBFloat16)), d2 = d1.clone();
    for (int t = 1; t <= 3; ++t) {
      at::Tensor g1 = at::randn({n}, cuda) * 8, g2 = g1.clone();
      by_tensor->step_and_copy(p1, g1, StepArgs{cfg.lr, t, {}}, GradMultiplier(1.0, at::full({}, 0.3f, cuda)),
                               {{5, d1}});
      by_number->step_and_copy(p2, g2, StepArgs{cfg.lr, t, {}}, double{0.3f}, {{5, d2}});
    }
    EXPECT_TRUE(at::equal(p1, p2)) << (p1 - p2).abs().max().item<float>();
    EXPECT_TRUE(at::equal(d1, d2));
    at::Tensor g = at::randn({n}, cuda);
    try {
      by_tensor->step_and_copy(p1, g, StepArgs{cfg.lr, 4, {}}, GradMultiplier(1.0, at::full({}, 0.3f)), {});
      ADD_FAILURE() << "a host multiplier accepted for a device shard";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("must be one fp32 element on cuda:0"), std::string::npos) << e.what();
    }
  }
  OptimizerConfig cfg;
  cfg.kind = OptimizerKind::kAdamW;
  at::Tensor p = at::randn({100}, cuda), g = at::randn({100}, cuda);
  auto opt = make_shard_optimizer(cfg, p, {}, 1, nullptr);
  const std::vector<ParamCopyRange> overlapping{{0, at::empty({60}, cuda)}, {50, at::empty({10}, cuda)}};
  try {
    opt->step_and_copy(p, g, StepArgs{1e-3, 1, {}}, 1.0, overlapping);
    ADD_FAILURE() << "overlapping copy ranges accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("copy range [50, 60)"), std::string::npos) << e.what();
  }
  const std::vector<ParamCopyRange> wrong_dtype{{0, at::empty({10}, cuda.dtype(at::kDouble))}};
  EXPECT_THROW(opt->step_and_copy(p, g, StepArgs{1e-3, 1, {}}, 1.0, wrong_dtype), c10::Error);
}

}  // namespace
}  // namespace zerotrain::detail

#endif  // ZEROTRAIN_WITH_CUDA
