// Shard optimizers (src/optim/) against an independent float64 reference written with plain per-element loops,
// against torch's own optimizers where torch has one, and, with a GPU, the CUDA kernels against the CPU path.
//
// The problem: six parameters laid out ZeRO-style in a padded flat buffer (each at an 8-aligned offset, padding
// between and after them), cut into 1 or 2 rank shards, so one parameter is split across ranks; 20 steps with a
// varying lr (a schedule) and, where the case asks, a cycled beta1 (OneCycle). Two ranks run on two threads whose
// AllReduceSum sums their tensors.
#include "optim/shard_optimizer.h"


#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <exception>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace zerotrain::detail {
namespace {

constexpr int kSteps = 20;

// ---------------------------------------------------------------------------------------------------------------
// The problem
// ---------------------------------------------------------------------------------------------------------------

struct ParamSpec {
  int64_t numel;
  double init_scale;  // of the first half; the second half uses init_scale_tail
  double init_scale_tail;
  double grad_scale;  // 0: the parameter never gets a gradient
};

// Chosen so that LAMB sees every regime of the trust ratio with its default clamps [0.01, 10]: ~0.5 and ~1
// (unclamped; parameter 2 is split across the ranks and its halves have different scales, so a rank-local ratio
// would be wrong), ~15 (clamped to max), ~0.003 (clamped to min), an all-zero parameter (ratio 1 at step 1, then
// tiny: clamped to min) and a parameter without gradient. Lion's zero-gradient parameter exercises c == 0.
const std::vector<ParamSpec> kParams = {
    {700, 0.5, 0.5, 1.0},   {1, 1.0, 1.0, 0.0},  {1300, 2.0, 0.5, 0.1},
    {513, 50.0, 50.0, 1.0}, {64, 0.0, 0.0, 1.0}, {1029, 0.003, 0.003, 10.0},
};

struct Layout {
  std::vector<int64_t> starts;  // offset of each parameter in the padded flat buffer
  int64_t shard_numel = 0;
  int world = 1;
  int64_t flat_numel() const { return shard_numel * world; }
  // The rank's pieces of the parameters, deliberately not in offset order (the optimizer must sort them).
  std::vector<ShardSegment> segments(int rank) const {
    std::vector<ShardSegment> out;
    const int64_t lo = rank * shard_numel, hi = lo + shard_numel;
    for (size_t q = 0; q < kParams.size(); ++q) {
      const int64_t b = std::max(lo, starts[q]), e = std::min(hi, starts[q] + kParams[q].numel);
      if (b < e) out.push_back({static_cast<int64_t>(q), b - lo, e - b});
    }
    std::reverse(out.begin(), out.end());
    return out;
  }
  // param index of each flat element, -1 for padding
  std::vector<int> owner() const {
    std::vector<int> o(flat_numel(), -1);
    for (size_t q = 0; q < kParams.size(); ++q)
      for (int64_t i = 0; i < kParams[q].numel; ++i) o[starts[q] + i] = static_cast<int>(q);
    return o;
  }
};

Layout make_layout(int world) {
  Layout l;
  l.world = world;
  int64_t cursor = 0;
  for (const ParamSpec& p : kParams) {
    cursor = (cursor + 7) / 8 * 8;
    l.starts.push_back(cursor);
    cursor += p.numel;
  }
  l.shard_numel = (cursor + world - 1) / world + 3;  // trailing padding on the last rank
  return l;
}

struct Problem {
  at::Tensor init;                // (flat,) fp32 CPU, zero padding
  std::vector<at::Tensor> grads;  // kSteps x (flat,) fp32 CPU, zero padding
  std::vector<double> lrs;        // per step
  std::vector<double> beta1s;     // per step, used by cases that cycle beta1
};

Problem make_problem(const Layout& layout, double base_lr, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  Problem pb;
  pb.init = at::zeros({layout.flat_numel()}, at::kFloat);
  for (size_t q = 0; q < kParams.size(); ++q) {
    const ParamSpec& s = kParams[q];
    const int64_t half = s.numel / 2;
    pb.init.narrow(0, layout.starts[q], half).copy_(at::randn({half}, gen) * s.init_scale);
    pb.init.narrow(0, layout.starts[q] + half, s.numel - half)
        .copy_(at::randn({s.numel - half}, gen) * s.init_scale_tail);
  }
  for (int t = 0; t < kSteps; ++t) {
    at::Tensor g = at::zeros({layout.flat_numel()}, at::kFloat);
    for (size_t q = 0; q < kParams.size(); ++q) {
      // a per-parameter mean keeps momentum from averaging to zero, so moments and signs are not all noise
      const at::Tensor noise = at::randn({kParams[q].numel}, gen) + 0.3;
      g.narrow(0, layout.starts[q], kParams[q].numel).copy_(noise * kParams[q].grad_scale);
    }
    pb.grads.push_back(g);
    pb.lrs.push_back(base_lr * (1.0 + 0.5 * std::sin(0.7 * t)));
    pb.beta1s.push_back(0.8 + 0.05 * (t % 4));
  }
  return pb;
}

// ---------------------------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------------------------

struct Case {
  std::string name;
  OptimizerConfig cfg;
  bool cycle_beta1 = false;
};

OptimizerConfig config(OptimizerKind kind, double lr) {
  OptimizerConfig c;
  c.kind = kind;
  c.lr = lr;
  if (kind == OptimizerKind::kLion) c.betas = {0.9, 0.99};
  if (kind == OptimizerKind::kAdagrad) c.eps = 1e-10;
  return c;
}

template <typename F>
Case make_case(std::string name, OptimizerKind kind, double lr, F edit, bool cycle = false) {
  Case c{std::move(name), config(kind, lr), cycle};
  edit(c.cfg);
  return c;
}

std::vector<Case> all_cases() {
  using K = OptimizerKind;
  auto none = [](OptimizerConfig&) {};
  return {
      make_case("AdamW_decay", K::kAdamW, 1e-2, [](auto& c) { c.weight_decay = 0.05; }),
      make_case("Adam_L2_large_eps", K::kAdam, 1e-2,
                [](auto& c) { c.adam_w_mode = false, c.weight_decay = 0.05, c.eps = 1e-3; }),
      make_case("Adam_decoupled_default", K::kAdam, 1e-2, none),
      make_case("AdamW_no_bias_correction", K::kAdamW, 1e-2,
                [](auto& c) { c.bias_correction = false, c.weight_decay = 0.05, c.eps = 1e-3; }),
      make_case("Adam_L2_no_bias_correction", K::kAdam, 1e-2,
                [](auto& c) { c.adam_w_mode = false, c.bias_correction = false, c.weight_decay = 0.05; }),
      make_case(
          "AdamW_beta1_cycled", K::kAdamW, 1e-2, [](auto& c) { c.weight_decay = 0.05; }, true),
      make_case("SGD_plain", K::kSGD, 0.05, none),
      make_case("SGD_momentum_dampening_decay", K::kSGD, 0.05,
                [](auto& c) { c.momentum = 0.9, c.dampening = 0.1, c.weight_decay = 1e-3; }),
      make_case("SGD_nesterov", K::kSGD, 0.05,
                [](auto& c) { c.momentum = 0.9, c.nesterov = true, c.weight_decay = 1e-3; }),
      make_case(
          "SGD_momentum_cycled", K::kSGD, 0.05, [](auto& c) { c.momentum = 0.9; }, true),
      make_case("Lion", K::kLion, 1e-3, none),
      make_case("Lion_decay", K::kLion, 1e-3, [](auto& c) { c.weight_decay = 0.5; }),
      make_case(
          "Lion_beta1_cycled", K::kLion, 1e-3, [](auto& c) { c.weight_decay = 0.5; }, true),
      make_case("Adagrad", K::kAdagrad, 0.1, none),
      make_case("Adagrad_lr_decay_decay_init", K::kAdagrad, 0.1,
                [](auto& c) { c.lr_decay = 0.05, c.weight_decay = 0.01, c.initial_accumulator_value = 0.1; }),
      make_case("Lamb", K::kLamb, 1e-2, none),
      make_case("Lamb_decay_eps_inside_tight_clamps", K::kLamb, 1e-2,
                [](auto& c) {
                  c.weight_decay = 0.01, c.eps_inside_sqrt = true, c.eps = 1e-6, c.min_coeff = 0.3, c.max_coeff = 0.6;
                }),
      make_case("Lamb_no_bias_correction", K::kLamb, 1e-2,
                [](auto& c) { c.bias_correction = false, c.weight_decay = 0.01; }),
      make_case(
          "Lamb_beta1_cycled", K::kLamb, 1e-2, [](auto& c) { c.weight_decay = 0.01; }, true),
  };
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::optional<double> beta1_at(const Case& c, const Problem& pb, int t) {
  return c.cycle_beta1 ? std::optional<double>(pb.beta1s[t]) : std::nullopt;
}

// ---------------------------------------------------------------------------------------------------------------
// The float64 reference: plain loops over the flat buffer, straight from the DeepSpeed / torch sources the
// optimizers follow (docs/optimizers.md), with betas rounded to fp32 as DeepSpeed hands them to its kernels.
// Padding elements are not touched.
// ---------------------------------------------------------------------------------------------------------------

struct Reference {
  std::vector<double> p, s1, s2;          // params and up to two state vectors, flat
  std::map<std::string, int> state_slot;  // state name -> 1 (s1) or 2 (s2)
  double min_lion_margin = INFINITY;      // smallest |c| / (|beta1 m| + |(1 - beta1) g|) over non-zero c
  int lamb_max_clamped = 0, lamb_min_clamped = 0, lamb_unclamped = 0, lamb_zero_norm = 0;
};

Reference run_reference(const Case& c, const Problem& pb, const Layout& layout) {
  const OptimizerConfig& o = c.cfg;
  const std::vector<int> owner = layout.owner();
  const int64_t n = layout.flat_numel();
  Reference r;
  r.p.resize(n);
  const float* init = pb.init.const_data_ptr<float>();
  r.p.assign(init, init + n);
  r.s1.assign(n, o.kind == OptimizerKind::kAdagrad ? o.initial_accumulator_value : 0.0);
  r.s2.assign(n, 0.0);
  switch (o.kind) {
    case OptimizerKind::kAdam:
    case OptimizerKind::kAdamW:
    case OptimizerKind::kLamb:
      r.state_slot = {{"exp_avg", 1}, {"exp_avg_sq", 2}};
      break;
    case OptimizerKind::kSGD:
      if (o.momentum != 0) r.state_slot = {{"momentum_buffer", 1}};
      break;
    case OptimizerKind::kLion:
      r.state_slot = {{"exp_avg", 1}};
      break;
    case OptimizerKind::kAdagrad:
      r.state_slot = {{"sum", 1}};
      break;
    default:
      break;
  }
  for (int t = 0; t < kSteps; ++t) {
    const int step = t + 1;
    const double lr = pb.lrs[t], wd = o.weight_decay;
    // Betas as DeepSpeed's kernels receive them: fp32 values, 1 - beta and bias corrections derived from those.
    // (float variables: GCC 12's SLP vectoriser drops adjacent double -> float -> double round trips)
    const float b1f =
        static_cast<float>(c.cycle_beta1 ? pb.beta1s[t] : (o.kind == OptimizerKind::kSGD ? o.momentum : o.betas[0]));
    const float b2f = static_cast<float>(o.betas[1]);
    const double b1 = b1f, b2 = b2f;
    const float* g = pb.grads[t].const_data_ptr<float>();
    if (o.kind == OptimizerKind::kLamb) {
      std::vector<double> w2(kParams.size(), 0), u2(kParams.size(), 0), u(n, 0);
      for (int64_t i = 0; i < n; ++i) {
        if (owner[i] < 0) continue;
        r.s1[i] = b1 * r.s1[i] + (1 - b1) * g[i];
        r.s2[i] = b2 * r.s2[i] + (1 - b2) * g[i] * g[i];
        const double denom = o.eps_inside_sqrt ? std::sqrt(r.s2[i] + o.eps) : std::sqrt(r.s2[i]) + o.eps;
        u[i] = r.s1[i] / denom + wd * r.p[i];
        w2[owner[i]] += r.p[i] * r.p[i];
        u2[owner[i]] += u[i] * u[i];
      }
      std::vector<double> ratio(kParams.size(), 1.0);
      for (size_t q = 0; q < kParams.size(); ++q) {
        const double wn = std::sqrt(w2[q]), un = std::sqrt(u2[q]);
        if (wn == 0 || un == 0) {
          ++r.lamb_zero_norm;
          continue;
        }
        ratio[q] = wn / un;
        if (ratio[q] > o.max_coeff) {
          ratio[q] = o.max_coeff;
          ++r.lamb_max_clamped;
        } else if (ratio[q] < o.min_coeff) {
          ratio[q] = o.min_coeff;
          ++r.lamb_min_clamped;
        } else {
          ++r.lamb_unclamped;
        }
      }
      const double step_size =
          o.bias_correction ? lr * std::sqrt(1 - std::pow(b2, step)) / (1 - std::pow(b1, step)) : lr;
      for (int64_t i = 0; i < n; ++i)
        if (owner[i] >= 0) r.p[i] -= step_size * ratio[owner[i]] * u[i];
      continue;
    }
    for (int64_t i = 0; i < n; ++i) {
      if (owner[i] < 0) continue;
      double& p = r.p[i];
      double& s1 = r.s1[i];
      double& s2 = r.s2[i];
      switch (o.kind) {
        case OptimizerKind::kAdam:
        case OptimizerKind::kAdamW: {
          const bool decoupled = o.kind == OptimizerKind::kAdamW || o.adam_w_mode;
          const double gi = decoupled ? g[i] : g[i] + wd * p;
          s1 = b1 * s1 + (1 - b1) * gi;
          s2 = b2 * s2 + (1 - b2) * gi * gi;
          const double bc1 = o.bias_correction ? 1 - std::pow(b1, step) : 1;
          const double bc2 = o.bias_correction ? 1 - std::pow(b2, step) : 1;
          double update = (s1 / bc1) / (std::sqrt(s2 / bc2) + o.eps);
          if (decoupled) update += wd * p;
          p -= lr * update;
          break;
        }
        case OptimizerKind::kSGD: {
          double d = g[i] + wd * p;
          if (b1 != 0) {
            s1 = step == 1 ? d : b1 * s1 + (1 - o.dampening) * d;
            d = o.nesterov ? d + b1 * s1 : s1;
          }
          p -= lr * d;
          break;
        }
        case OptimizerKind::kLion: {
          const double cval = b1 * s1 + (1 - b1) * g[i];
          if (cval != 0)
            r.min_lion_margin =
                std::min(r.min_lion_margin, std::abs(cval) / (std::abs(b1 * s1) + std::abs((1 - b1) * g[i])));
          p = p * (1 - lr * wd) + (cval > 0 ? -lr : lr);
          s1 = b2 * s1 + (1 - b2) * g[i];
          break;
        }
        case OptimizerKind::kAdagrad: {
          const double d = g[i] + wd * p;
          s1 += d * d;
          p -= lr / (1 + (step - 1) * o.lr_decay) * d / (std::sqrt(s1) + o.eps);
          break;
        }
        default:
          ADD_FAILURE() << "no reference for " << c.name;
      }
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------------
// Running the shard optimizers over 1 or 2 simulated ranks
// ---------------------------------------------------------------------------------------------------------------

// AllReduceSum for ranks stepping on their own threads: every rank adds all slots in rank order (so all get the
// same bits), a second barrier keeps the slots alive until everyone has read them.
class ThreadAllReduce {
 public:
  explicit ThreadAllReduce(int world) : barrier_(world), slots_(world), calls_(world, 0) {}
  AllReduceSum for_rank(int rank) {
    return [this, rank](at::Tensor& t) {
      ++calls_[rank];
      last_numel_ = t.numel();
      last_dtype_ = t.scalar_type();
      slots_[rank] = t;
      barrier_.arrive_and_wait();
      at::Tensor sum = slots_[0].clone();
      for (size_t r = 1; r < slots_.size(); ++r) sum.add_(slots_[r]);
      barrier_.arrive_and_wait();
      t.copy_(sum);
    };
  }
  int calls(int rank) const { return calls_[rank]; }
  int64_t last_numel() const { return last_numel_; }
  at::ScalarType last_dtype() const { return last_dtype_; }

 private:
  std::barrier<> barrier_;
  std::vector<at::Tensor> slots_;
  std::vector<int> calls_;
  int64_t last_numel_ = -1;
  at::ScalarType last_dtype_ = at::kByte;
};

struct RunResult {
  at::Tensor params;                        // (flat,) fp32 CPU
  std::map<std::string, at::Tensor> state;  // name -> (flat,) fp32 CPU
  std::vector<int> allreduce_calls;         // per rank
  int64_t allreduce_numel = -1;
  at::ScalarType allreduce_dtype = at::kByte;
};

// `misalign` shifts every param shard by that many floats inside a larger buffer (a view at an odd offset), which
// sends the CUDA kernels down their unaligned path.
RunResult run_ours(const Case& c, const Problem& pb, const Layout& layout, at::Device device, int64_t misalign = 0) {
  const int world = layout.world;
  const int64_t s = layout.shard_numel;
  ThreadAllReduce allreduce(world);
  std::vector<at::Tensor> params(world);
  std::vector<std::vector<at::Tensor>> grads(world);
  std::vector<std::unique_ptr<ShardOptimizer>> opts(world);
  for (int r = 0; r < world; ++r) {
    at::Tensor storage = at::zeros({s + misalign}, at::TensorOptions(at::kFloat).device(device));
    params[r] = storage.narrow(0, misalign, s);
    params[r].copy_(pb.init.narrow(0, r * s, s));
    for (int t = 0; t < kSteps; ++t) grads[r].push_back(pb.grads[t].narrow(0, r * s, s).to(device));
    opts[r] = make_shard_optimizer(c.cfg, params[r], layout.segments(r), static_cast<int64_t>(kParams.size()),
                                   allreduce.for_rank(r));
  }
  std::vector<std::exception_ptr> errors(world);
  auto rank_loop = [&](int r) {
    try {
      for (int t = 0; t < kSteps; ++t) {
        const at::Tensor before = grads[r][t].clone();
        opts[r]->step(params[r], grads[r][t], StepArgs{pb.lrs[t], t + 1, beta1_at(c, pb, t)});
        TORCH_CHECK(at::equal(before, grads[r][t]), c.name, ": step ", t + 1, " modified the gradient");
      }
    } catch (...) {
      errors[r] = std::current_exception();
    }
  };
  if (world == 1) {
    rank_loop(0);
  } else {
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r) threads.emplace_back(rank_loop, r);
    for (std::thread& th : threads) th.join();
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  RunResult out;
  std::vector<at::Tensor> pieces;
  for (int r = 0; r < world; ++r) pieces.push_back(params[r].cpu());
  out.params = at::cat(pieces);
  for (const auto& [name, unused] : opts[0]->state()) {
    std::vector<at::Tensor> parts;
    for (int r = 0; r < world; ++r)
      for (const auto& [n2, tensor] : opts[r]->state())
        if (n2 == name) parts.push_back(tensor.cpu());
    out.state[name] = at::cat(parts);
  }
  for (int r = 0; r < world; ++r) out.allreduce_calls.push_back(allreduce.calls(r));
  out.allreduce_numel = allreduce.last_numel();
  out.allreduce_dtype = allreduce.last_dtype();
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Comparisons
// ---------------------------------------------------------------------------------------------------------------

// Tolerance of an fp32 implementation against the float64 reference after 20 steps. Each fp32 step rounds the
// parameter once (relative 6e-8) and its update through ~10 operations (relative ~6e-7 of lr * |update|); over 20
// steps that accumulates to ~1.2e-6 |p| + ~1.2e-5 lr |update|; ATen's fp32 bias corrections on CUDA add ~1e-6
// relative to the step. The worst error measured over all cases (CPU and H200) is 0.37 of this bound; a wrong rule
// (a missing bias correction, L2 instead of decoupled decay, eps inside the root, a rank-local LAMB norm) is off by
// 1e-3 or more.
constexpr double kRtol = 4e-6;
constexpr double kAtolPerLr = 1e-4;  // absolute tolerance, times the case's base lr (update magnitudes are ~lr)

// How the relative part of a tolerance scales: with the element itself (parameters: each step rounds p and an
// update much smaller than p), or with the largest magnitude within its parameter (states: a momentum buffer or a
// moment sums terms of both signs, so an element near zero still carries the rounding of the large terms).
enum class Scale { kElement, kParameter };

void expect_close(const at::Tensor& got, const std::vector<double>& want, const std::vector<int>& owner, double atol,
                  Scale scale, const std::string& what) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  std::vector<double> param_scale(kParams.size(), 0.0);
  for (size_t i = 0; i < want.size(); ++i)
    if (owner[i] >= 0) param_scale[owner[i]] = std::max(param_scale[owner[i]], std::abs(want[i]));
  const float* g = got.const_data_ptr<float>();
  double worst = 0;
  int64_t worst_i = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    if (owner[i] < 0) continue;
    const double tol = atol + kRtol * (scale == Scale::kElement ? std::abs(want[i]) : param_scale[owner[i]]);
    const double err = std::abs(g[i] - want[i]);
    if (!(err - tol <= worst)) worst = err - tol, worst_i = static_cast<int64_t>(i);
  }
  EXPECT_EQ(worst_i, -1) << what << ": element " << worst_i << " (parameter " << (worst_i >= 0 ? owner[worst_i] : -1)
                         << ") is " << (worst_i >= 0 ? g[worst_i] : 0.f) << ", reference "
                         << (worst_i >= 0 ? want[worst_i] : 0.0) << ", beyond tolerance by " << worst;
}

// fp32 against fp32 (two implementations, or CPU against CUDA): both are within the reference bound, so within
// twice of each other.
void expect_close_fp32(const at::Tensor& got, const at::Tensor& want, const std::vector<int>& owner, double atol,
                       const std::string& what) {
  std::vector<double> w(want.numel());
  for (int64_t i = 0; i < want.numel(); ++i) w[i] = want.const_data_ptr<float>()[i];
  expect_close(got, w, owner, 2 * atol, Scale::kElement, what);
}

void expect_matches_reference(const Case& c, const RunResult& got, const Reference& ref, const Layout& layout,
                              const std::string& where) {
  const std::vector<int> owner = layout.owner();
  const double atol = kAtolPerLr * c.cfg.lr;
  expect_close(got.params, ref.p, owner, atol, Scale::kElement, where + " params");
  ASSERT_EQ(got.state.size(), ref.state_slot.size()) << where;
  for (const auto& [name, slot] : ref.state_slot) {
    ASSERT_TRUE(got.state.count(name)) << where << ": no state '" << name << "'";
    expect_close(got.state.at(name), slot == 1 ? ref.s1 : ref.s2, owner, 0.0, Scale::kParameter,
                 where + " state " + name);
  }
  // Padding stays zero: zero gradient and zero weight give a zero step, except Lion's sign step of +lr at c == 0.
  if (c.cfg.kind != OptimizerKind::kLion) {
    for (int64_t i = 0; i < layout.flat_numel(); ++i)
      if (owner[i] < 0) ASSERT_EQ(got.params.const_data_ptr<float>()[i], 0.f) << where << ": padding " << i;
  }
}

class ShardOptimizerCase : public ::testing::TestWithParam<Case> {};

TEST_P(ShardOptimizerCase, MatchesFloat64ReferenceOnOneAndTwoRanks) {
  const Case& c = GetParam();
  for (int world : {1, 2}) {
    const Layout layout = make_layout(world);
    const Problem pb = make_problem(layout, c.cfg.lr, 1234);
    const Reference ref = run_reference(c, pb, layout);
    const RunResult got = run_ours(c, pb, layout, at::kCPU);
    expect_matches_reference(c, got, ref, layout, c.name + " cpu world " + std::to_string(world));
    if (c.cfg.kind == OptimizerKind::kLion) {
      // sign ties would make the test depend on rounding; the data has none closer than 1e-5 relative
      EXPECT_GT(ref.min_lion_margin, 1e-5) << "choose another seed";
    }
    if (c.cfg.kind == OptimizerKind::kLamb) {
      for (int r = 0; r < world; ++r) EXPECT_EQ(got.allreduce_calls[r], kSteps) << "one all-reduce per step";
      EXPECT_EQ(got.allreduce_numel, 2 * static_cast<int64_t>(kParams.size()));
      EXPECT_EQ(got.allreduce_dtype, at::kFloat);
    } else {
      EXPECT_EQ(got.allreduce_calls[0], 0) << "only LAMB communicates";
    }
  }
}

TEST_P(ShardOptimizerCase, MatchesOnCuda) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const Case& c = GetParam();
  for (int world : {1, 2}) {
    for (int64_t misalign : {0, 1}) {
      const Layout layout = make_layout(world);
      const Problem pb = make_problem(layout, c.cfg.lr, 1234);
      const Reference ref = run_reference(c, pb, layout);
      const std::string where =
          c.name + " cuda world " + std::to_string(world) + " misalign " + std::to_string(misalign);
      const RunResult gpu = run_ours(c, pb, layout, at::Device(at::kCUDA, 0), misalign);
      expect_matches_reference(c, gpu, ref, layout, where);
      const RunResult cpu = run_ours(c, pb, layout, at::kCPU);
      expect_close_fp32(gpu.params, cpu.params, layout.owner(), kAtolPerLr * c.cfg.lr, where + " vs cpu");
      if (c.cfg.kind == OptimizerKind::kLamb) {
        // fixed-order reductions: a second run gives the same bits
        const RunResult again = run_ours(c, pb, layout, at::Device(at::kCUDA, 0), misalign);
        EXPECT_TRUE(at::equal(gpu.params, again.params)) << where << ": LAMB on CUDA is not deterministic";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllOptimizers, ShardOptimizerCase, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(ShardOptimizerLamb, ReferenceCoversEveryTrustRatioRegime) {
  // Guards the LAMB tests above against data that never clamps or never hits a zero norm.
  const Layout layout = make_layout(2);
  for (const Case& c : all_cases()) {
    if (c.cfg.kind != OptimizerKind::kLamb) continue;
    const Reference ref = run_reference(c, make_problem(layout, c.cfg.lr, 1234), layout);
    EXPECT_GT(ref.lamb_zero_norm, 0) << c.name;
    EXPECT_GT(ref.lamb_max_clamped, 0) << c.name;
    EXPECT_GT(ref.lamb_min_clamped, 0) << c.name;
    EXPECT_GT(ref.lamb_unclamped, 0) << c.name;
  }
}

TEST(ShardOptimizerLamb, RankLocalNormsWouldBeDetected) {
  // The same two-rank run with an all-reduce that does nothing must fail the reference comparison: the split
  // parameter's halves have different scales, so local trust ratios differ from the global one.
  const Case c = all_cases()[15];
  ASSERT_EQ(c.cfg.kind, OptimizerKind::kLamb);
  const Layout layout = make_layout(2);
  const Problem pb = make_problem(layout, c.cfg.lr, 1234);
  const Reference ref = run_reference(c, pb, layout);
  std::vector<at::Tensor> params;
  for (int r = 0; r < 2; ++r) {
    at::Tensor p = pb.init.narrow(0, r * layout.shard_numel, layout.shard_numel).clone();
    auto opt = make_shard_optimizer(c.cfg, p, layout.segments(r), kParams.size(), [](at::Tensor&) {});
    for (int t = 0; t < kSteps; ++t)
      opt->step(p, pb.grads[t].narrow(0, r * layout.shard_numel, layout.shard_numel), StepArgs{pb.lrs[t], t + 1, {}});
    params.push_back(p);
  }
  const at::Tensor got = at::cat(params);
  double worst = 0;
  const std::vector<int> owner = layout.owner();
  for (int64_t i = 0; i < got.numel(); ++i)
    if (owner[i] == 2)
      worst = std::max(worst, std::abs(got.const_data_ptr<float>()[i] - ref.p[i]) / (kAtolPerLr * c.cfg.lr));
  EXPECT_GT(worst, 10.0) << "rank-local norms stay within tolerance: the test could not catch a missing all-reduce";
}

// ---------------------------------------------------------------------------------------------------------------
// Against torch's own optimizers (fp32 against fp32)
// ---------------------------------------------------------------------------------------------------------------

at::Tensor run_torch(const Case& c, const Problem& pb) {
  const OptimizerConfig& o = c.cfg;
  at::Tensor p = pb.init.clone().set_requires_grad(true);
  std::unique_ptr<torch::optim::Optimizer> opt;
  const bool decoupled = o.kind == OptimizerKind::kAdamW || o.adam_w_mode;
  if (o.kind == OptimizerKind::kAdam && !decoupled) {
    opt = std::make_unique<torch::optim::Adam>(
        std::vector<at::Tensor>{p},
        torch::optim::AdamOptions(o.lr).betas({o.betas[0], o.betas[1]}).eps(o.eps).weight_decay(o.weight_decay));
  } else if (o.kind == OptimizerKind::kAdam || o.kind == OptimizerKind::kAdamW) {
    opt = std::make_unique<torch::optim::AdamW>(
        std::vector<at::Tensor>{p},
        torch::optim::AdamWOptions(o.lr).betas({o.betas[0], o.betas[1]}).eps(o.eps).weight_decay(o.weight_decay));
  } else if (o.kind == OptimizerKind::kSGD) {
    opt = std::make_unique<torch::optim::SGD>(std::vector<at::Tensor>{p}, torch::optim::SGDOptions(o.lr)
                                                                              .momentum(o.momentum)
                                                                              .dampening(o.dampening)
                                                                              .weight_decay(o.weight_decay)
                                                                              .nesterov(o.nesterov));
  } else {
    opt = std::make_unique<torch::optim::Adagrad>(std::vector<at::Tensor>{p},
                                                  torch::optim::AdagradOptions(o.lr)
                                                      .lr_decay(o.lr_decay)
                                                      .weight_decay(o.weight_decay)
                                                      .initial_accumulator_value(o.initial_accumulator_value)
                                                      .eps(o.eps));
  }
  for (int t = 0; t < kSteps; ++t) {
    auto& options = opt->param_groups()[0].options();
    options.set_lr(pb.lrs[t]);
    if (c.cycle_beta1) {
      if (auto* adam = dynamic_cast<torch::optim::AdamOptions*>(&options)) adam->betas({pb.beta1s[t], o.betas[1]});
      if (auto* adamw = dynamic_cast<torch::optim::AdamWOptions*>(&options)) adamw->betas({pb.beta1s[t], o.betas[1]});
      if (auto* sgd = dynamic_cast<torch::optim::SGDOptions*>(&options)) sgd->momentum(pb.beta1s[t]);
    }
    p.mutable_grad() = pb.grads[t].clone();
    opt->step();
  }
  return p.detach();
}

TEST(ShardOptimizerTorch, MatchesTorchOptimizers) {
  const Layout layout = make_layout(1);
  int compared = 0;
  for (const Case& c : all_cases()) {
    const OptimizerKind k = c.cfg.kind;
    const bool torch_has_it = ((k == OptimizerKind::kAdam || k == OptimizerKind::kAdamW) && c.cfg.bias_correction) ||
                              k == OptimizerKind::kSGD || k == OptimizerKind::kAdagrad;
    if (!torch_has_it) continue;
    const Problem pb = make_problem(layout, c.cfg.lr, 99);
    const RunResult ours = run_ours(c, pb, layout, at::kCPU);
    expect_close_fp32(ours.params, run_torch(c, pb), layout.owner(), kAtolPerLr * c.cfg.lr, c.name + " vs torch");
    ++compared;
  }
  EXPECT_EQ(compared, 10);
}

// ---------------------------------------------------------------------------------------------------------------
// Semantics pinned individually
// ---------------------------------------------------------------------------------------------------------------

TEST(ShardOptimizerLion, ZeroMomentumAndGradientStepsByPlusLr) {
  // FusedLion: c > 0 ? -lr : +lr, so c == 0 moves the weight up by lr (after the decoupled decay).
  for (bool cuda : {false, true}) {
    if (cuda && !at::hasCUDA()) continue;
    const at::Device device = cuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    OptimizerConfig cfg = config(OptimizerKind::kLion, 0.25);
    cfg.weight_decay = 0.5;
    at::Tensor p = at::tensor({1.0f, -2.0f, 0.0f, 4.0f}).to(device);
    const at::Tensor g = at::tensor({0.0f, 0.0f, 0.0f, 1.0f}).to(device);
    auto opt = make_shard_optimizer(cfg, p, {}, 0, nullptr);
    opt->step(p, g, StepArgs{0.25, 1, {}});
    // after_decay = 1 - 0.25 * 0.5 = 0.875; c = 0.1 for the last element
    const at::Tensor want = at::tensor({0.875f + 0.25f, -1.75f + 0.25f, 0.25f, 3.5f - 0.25f});
    EXPECT_TRUE(at::allclose(p.cpu(), want, 0, 1e-7)) << p.cpu();
  }
}

TEST(ShardOptimizerState, CheckpointRoundTripIsBitwise) {
  // Checkpoint round trip for every optimizer: copy state() into a fresh optimizer after 10 steps, run 10 more on
  // both; the results must be bitwise equal (state() hands out the live tensors).
  const Layout layout = make_layout(1);
  for (const Case& c : all_cases()) {
    const Problem pb = make_problem(layout, c.cfg.lr, 7);
    const auto segments = layout.segments(0);
    at::Tensor a = pb.init.clone();
    auto opt_a = make_shard_optimizer(c.cfg, a, segments, kParams.size(), nullptr);
    for (int t = 0; t < 10; ++t) opt_a->step(a, pb.grads[t], StepArgs{pb.lrs[t], t + 1, beta1_at(c, pb, t)});
    at::Tensor b = a.clone();
    auto opt_b = make_shard_optimizer(c.cfg, b, segments, kParams.size(), nullptr);
    auto state_a = opt_a->state();
    auto state_b = opt_b->state();
    ASSERT_EQ(state_a.size(), state_b.size()) << c.name;
    for (size_t k = 0; k < state_a.size(); ++k) {
      ASSERT_EQ(state_a[k].first, state_b[k].first);
      state_b[k].second.copy_(state_a[k].second);
    }
    for (int t = 10; t < kSteps; ++t) {
      const StepArgs args{pb.lrs[t], t + 1, beta1_at(c, pb, t)};
      opt_a->step(a, pb.grads[t], args);
      opt_b->step(b, pb.grads[t], args);
    }
    EXPECT_TRUE(at::equal(a, b)) << c.name;
  }
}

TEST(ShardOptimizerState, NamesPerOptimizer) {
  const at::Tensor p = at::zeros({10});
  auto names = [&](OptimizerConfig cfg) {
    std::vector<std::string> out;
    for (const auto& [name, t] : make_shard_optimizer(cfg, p, {}, 0, nullptr)->state()) {
      EXPECT_EQ(t.sizes(), p.sizes()) << name;
      out.push_back(name);
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names(config(OptimizerKind::kAdamW, 1)), (V{"exp_avg", "exp_avg_sq"}));
  EXPECT_EQ(names(config(OptimizerKind::kLamb, 1)), (V{"exp_avg", "exp_avg_sq"}));
  EXPECT_EQ(names(config(OptimizerKind::kLion, 1)), (V{"exp_avg"}));
  EXPECT_EQ(names(config(OptimizerKind::kAdagrad, 1)), (V{"sum"}));
  EXPECT_EQ(names(config(OptimizerKind::kSGD, 1)), (V{}));
  OptimizerConfig sgd = config(OptimizerKind::kSGD, 1);
  sgd.momentum = 0.9;
  EXPECT_EQ(names(sgd), (V{"momentum_buffer"}));
}

TEST(ShardOptimizerLamb, EmptyShardStillJoinsTheAllReduce) {
  // A rank without elements must still take part in every collective, or the others hang.
  for (bool cuda : {false, true}) {
    if (cuda && !at::hasCUDA()) continue;
    const at::Device device = cuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    at::Tensor p = at::zeros({0}, at::TensorOptions(at::kFloat).device(device));
    int calls = 0;
    auto opt = make_shard_optimizer(config(OptimizerKind::kLamb, 1e-2), p, {}, 3, [&](at::Tensor& t) {
      ++calls;
      EXPECT_EQ(t.numel(), 6);
      EXPECT_EQ(t.sum().item<float>(), 0.f);
    });
    opt->step(p, p.clone(), StepArgs{1e-2, 1, {}});
    EXPECT_EQ(calls, 1);
  }
}

TEST(ShardOptimizerErrors, ConfigAndArgumentErrorsNameTheValue) {
  const at::Tensor p = at::zeros({8});
  OptimizerConfig none;
  EXPECT_THROW(make_shard_optimizer(none, p, {}, 0, nullptr), ConfigError);
  OptimizerConfig other = config(OptimizerKind::kOther, 1);
  other.type = "OneBitAdam";
  try {
    make_shard_optimizer(other, p, {}, 0, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("OneBitAdam"), std::string::npos) << e.what();
  }
  OptimizerConfig nesterov = config(OptimizerKind::kSGD, 1);
  nesterov.nesterov = true;
  try {
    make_shard_optimizer(nesterov, p, {}, 0, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("momentum = 0"), std::string::npos) << e.what();
  }
  OptimizerConfig lamb = config(OptimizerKind::kLamb, 1);
  lamb.min_coeff = 2, lamb.max_coeff = 1;
  EXPECT_THROW(make_shard_optimizer(lamb, p, {}, 0, nullptr), ConfigError);
  OptimizerConfig betas = config(OptimizerKind::kAdamW, 1);
  betas.betas = {1.0, 0.999};
  EXPECT_THROW(make_shard_optimizer(betas, p, {}, 0, nullptr), ConfigError);

  at::Tensor q = p.clone();
  EXPECT_THROW(make_shard_optimizer(config(OptimizerKind::kAdagrad, 1), q, {}, 0, nullptr)
                   ->step(q, q.clone(), StepArgs{1, 1, 0.9}),
               c10::Error);  // Adagrad has no momentum to cycle
  EXPECT_THROW(
      make_shard_optimizer(config(OptimizerKind::kSGD, 1), q, {}, 0, nullptr)->step(q, q.clone(), StepArgs{1, 1, 0.9}),
      c10::Error);  // no momentum buffer to cycle
  EXPECT_THROW(make_shard_optimizer(config(OptimizerKind::kAdamW, 1), q, {}, 0, nullptr)
                   ->step(q, at::zeros({7}), StepArgs{1, 1, {}}),
               c10::Error);  // grad of another size
  EXPECT_THROW(
      make_shard_optimizer(config(OptimizerKind::kAdamW, 1), q, {}, 0, nullptr)->step(q, q.clone(), StepArgs{1, 0, {}}),
      c10::Error);  // steps are 1-based
  const std::vector<ShardSegment> overlapping = {{0, 0, 5}, {1, 4, 4}};
  EXPECT_THROW(make_shard_optimizer(config(OptimizerKind::kLamb, 1), q, overlapping, 2, nullptr), c10::Error);
  const std::vector<ShardSegment> outside = {{0, 4, 5}};
  EXPECT_THROW(make_shard_optimizer(config(OptimizerKind::kLamb, 1), q, outside, 1, nullptr), c10::Error);
}

}  // namespace
}  // namespace zerotrain::detail
