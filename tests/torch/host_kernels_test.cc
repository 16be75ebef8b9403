// The shard optimizers' CPU kernels (src/optim/host_kernels.cc: what optimizer offload runs on the host, and CPU
// training's Adam): against float64, the same bits whatever the thread count, the 16-bit copy equal to ATen's cast.
// shard_optimizer_test.cc covers the optimizers built on them.
#include "optim/host_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace zerotrain::detail {
namespace {

// The CPU Adam kernel (what optimizer offload runs on the host): DeepSpeed's formula against float64 on a shard of
// several threads' slices, the same bits whatever the thread count, and the copy equal to ATen's cast.
TEST(AdamHostKernel, MatchesFloat64AndTheCopyIsAtensCast) {
  const int64_t n = (int64_t{3} << 20) + 37;  // 3+ slices of the kernel's 1M-element grain, a ragged tail
  for (const bool decoupled : {true, false}) {
    at::manual_seed(11);
    const at::Tensor p0 = at::randn({n}), g = at::randn({n}) * 1e-2;
    at::Tensor m0 = at::randn({n}) * 1e-3, v0 = at::rand({n}) * 1e-5;
    const AdamKernelArgs a{1e-3f, 0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 0.05f, 0.2f, 0.003f, decoupled, 0.5f};
    auto run = [&](int threads, at::ScalarType copy_dtype) {
      const int before = at::get_num_threads();
      at::set_num_threads(threads);
      at::Tensor p = p0.clone(), m = m0.clone(), v = v0.clone(), copy = at::empty({n}, at::TensorOptions(copy_dtype));
      const CopyDtype dtype = copy_dtype == at::kBFloat16 ? CopyDtype::kBFloat16
                              : copy_dtype == at::kHalf   ? CopyDtype::kHalf
                                                          : CopyDtype::kFloat;
      adam_step_host(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), n, a,
                     ParamCopy{copy.data_ptr(), dtype});
      at::set_num_threads(before);
      return std::vector<at::Tensor>{p, m, v, copy};
    };
    const auto one = run(1, at::kBFloat16), four = run(4, at::kBFloat16);
    for (int k = 0; k < 4; ++k) EXPECT_TRUE(at::equal(one[k], four[k])) << "thread count changed result " << k;
    EXPECT_TRUE(at::equal(one[3], one[0].to(at::kBFloat16)));
    EXPECT_TRUE(at::equal(run(2, at::kHalf)[3], one[0].to(at::kHalf)));
    EXPECT_TRUE(at::equal(run(2, at::kFloat)[3], one[0]));
    // float64 reference of the same formula, with the kernel's fp32 hyperparameters
    const auto d = [](float x) { return static_cast<double>(x); };
    const at::Tensor pd = p0.to(at::kDouble), gd = g.to(at::kDouble) * d(a.grad_multiplier), md = m0.to(at::kDouble),
                     vd = v0.to(at::kDouble);
    const at::Tensor ge = decoupled ? gd : gd + d(a.weight_decay) * pd;
    const at::Tensor m = d(a.beta1) * md + d(a.one_minus_beta1) * ge,
                     v = d(a.beta2) * vd + d(a.one_minus_beta2) * ge * ge;
    at::Tensor update = (m / d(a.bias_correction1)) / ((v / d(a.bias_correction2)).sqrt() + d(a.eps));
    if (decoupled) update = update + d(a.weight_decay) * pd;
    const at::Tensor p = pd - d(a.lr) * update;
    // a few fp32 roundings of each value (m ~ 1e-3, v ~ 1e-5)
    // the terms' sizes (they may cancel: the error is relative to them)
    const at::Tensor ge_terms = decoupled ? gd.abs() : gd.abs() + d(a.weight_decay) * pd.abs();
    const at::Tensor m_terms = (d(a.beta1) * md).abs() + d(a.one_minus_beta1) * ge_terms;
    EXPECT_LT(((one[1].to(at::kDouble) - m).abs() / m_terms).max().item<double>(), 1e-6);
    EXPECT_LT(((one[2].to(at::kDouble) - v).abs() / (v.abs() + 1e-12)).max().item<double>(), 1e-6);
    // per element within a few fp32 roundings of the parameter's value
    EXPECT_LT(((one[0].to(at::kDouble) - p).abs() / (p.abs() + 1e-3)).max().item<double>(), 1e-6);
  }
}

TEST(AdamHostKernel, NanStaysNanInTheCopy) {
  at::Tensor p = at::ones({8}), g = at::full({8}, std::nan("")), m = at::zeros({8}), v = at::zeros({8});
  at::Tensor copy = at::empty({8}, at::TensorOptions(at::kBFloat16));
  const AdamKernelArgs a{1e-3f, 0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 0.f, 1.f, 1.f, true, 1.f};
  adam_step_host(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), 8, a,
                 ParamCopy{copy.data_ptr(), CopyDtype::kBFloat16});
  EXPECT_TRUE(copy.to(at::kFloat).isnan().all().item<bool>());
}

}  // namespace
}  // namespace zerotrain::detail
