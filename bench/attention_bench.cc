// Causal attention forward + backward through each SDPA backend this torch offers, at a model's attention shape
// (default: the Llama-3-8B shape of the 8B benchmark: batch 2, 32 query heads, 8 key/value heads, seq 8192, head
// dim 128, bf16). Prints one `ATTN {json}` line per backend with milliseconds and TFLOP/s (causal: 2 * 2 * B * h *
// S^2 * d / 2 FLOPs forward, 2.5 times that backward). A backend that cannot run the shape says so instead.
//
//   build/bench/attention_bench [--batch 2 --heads 32 --kv-heads 8 --seq 8192 --dim 128]
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <fmt/format.h>

#include <chrono>
#include <string>
#include <vector>

#ifdef ZEROTRAIN_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

int main(int argc, char** argv) {
  int64_t b = 2, h = 32, kvh = 8, s = 8192, d = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int64_t v = std::stoll(argv[i + 1]);
    if (a == "--batch") b = v;
    else if (a == "--heads") h = v;
    else if (a == "--kv-heads") kvh = v;
    else if (a == "--seq") s = v;
    else if (a == "--dim") d = v;
    else {
      fmt::print(stderr, "attention_bench: unknown argument {}\n", a);
      return 2;
    }
  }
#ifdef ZEROTRAIN_WITH_CUDA
  if (!at::hasCUDA()) {
    fmt::print("attention_bench: no GPU\n");
    return 0;
  }
  auto& ctx = at::globalContext();
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  at::Tensor q = at::randn({b, h, s, d}, opts).requires_grad_(true);
  at::Tensor k = at::randn({b, kvh, s, d}, opts).requires_grad_(true);
  at::Tensor v = at::randn({b, kvh, s, d}, opts).requires_grad_(true);
  at::Tensor g = at::randn({b, h, s, d}, opts);
  const double flops = 2.0 * 2.0 * b * h * static_cast<double>(s) * s * d / 2 * (1 + 2.5);
  struct Variant {
    std::string name;
    std::vector<int64_t> order;  // SDPBackend priority
    bool fa3;
    bool repeat_kv;              // materialize the GQA repeat (for backends without enable_gqa)
  };
  using B = at::SDPBackend;
  auto id = [](B x) { return static_cast<int64_t>(x); };
  const std::vector<int64_t> defaults = {id(B::flash_attention), id(B::efficient_attention), id(B::math),
                                         id(B::cudnn_attention), id(B::overrideable)};
  const std::vector<int64_t> cudnn_first = {id(B::cudnn_attention), id(B::flash_attention),
                                            id(B::efficient_attention), id(B::math), id(B::overrideable)};
  const std::vector<Variant> variants = {{"default (flash)", defaults, false, false},
                                         {"flash, repeated kv", defaults, false, true},
                                         {"cudnn first", cudnn_first, false, false},
                                         {"cudnn first, repeated kv", cudnn_first, false, true},
                                         {"fa3", defaults, true, false}};
  for (const auto& var : variants) {
    try {
      ctx.setSDPPriorityOrder(var.order);
      ctx.setSDPUseFA3(var.fa3);
      auto run = [&] {
        at::Tensor kk = var.repeat_kv ? k.repeat_interleave(h / kvh, 1) : k;
        at::Tensor vv = var.repeat_kv ? v.repeat_interleave(h / kvh, 1) : v;
        at::Tensor o = at::scaled_dot_product_attention(q, kk, vv, {}, 0.0, true, std::nullopt,
                                                        /*enable_gqa=*/!var.repeat_kv && h != kvh);
        o.backward(g);
      };
      for (int i = 0; i < 3; ++i) run();
      c10::cuda::device_synchronize();
      const int iters = 10;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) run();
      c10::cuda::device_synchronize();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
      fmt::print("ATTN {{\"backend\": \"{}\", \"ms_fwd_bwd\": {:.3f}, \"tflops\": {:.0f}}}\n", var.name, ms,
                 flops / ms / 1e9);
    } catch (const std::exception& e) {
      std::string msg = e.what();
      fmt::print("ATTN {{\"backend\": \"{}\", \"error\": \"{}\"}}\n", var.name, msg.substr(0, msg.find('\n')));
    }
  }
  ctx.setSDPPriorityOrder(defaults);
  ctx.setSDPUseFA3(false);
#else
  fmt::print("attention_bench: built without CUDA\n");
#endif
  return 0;
}
