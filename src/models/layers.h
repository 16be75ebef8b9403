// Pieces the GPT-2 and Llama families share: RMSNorm, rotary position embedding, causal attention over heads,
// and the initialization rule. The families' modules are in gpt2.cc and llama.cc.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "zerotrain/models.h"

namespace zerotrain::detail {

// Llama's RMSNorm: weight * x / sqrt(mean(x^2) + eps), normalized in fp32. at::rms_norm (one fused kernel on
// CUDA) multiplies by the weight before rounding to the input dtype; Hugging Face rounds first, so bf16 outputs
// may differ from Hugging Face's by one ulp.
class RMSNorm : public torch::nn::Module {
 public:
  RMSNorm(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);  // (..., dim) -> (..., dim), same dtype

  at::Tensor weight;  // (dim,) model dtype, registered as "weight"

 private:
  double eps_;
};

// Rotary tables for positions 0..seq-1, Hugging Face's LlamaRotaryEmbedding layout: angle(p, i) = p * theta^(-2i/d)
// for i < d/2, repeated for the second half (cat(freqs, freqs)). Returns (cos, sin), each (seq, head_dim) fp32.
std::pair<at::Tensor, at::Tensor> rope_tables(int64_t seq, int64_t head_dim, double theta, c10::Device device);

// RoPE with the rotate-half convention (pairs dimension i with i + d/2), as Hugging Face's apply_rotary_pos_emb:
// x (B, heads, S, d); cos, sin (S, d) fp32 (cast to x's dtype, as Hugging Face does) -> (B, heads, S, d).
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// apply_rope(split_heads(x, num_heads), cos, sin): x (B, S, n * d) -> (B, n, S, d). On CUDA one kernel that reads
// the projection's layout and writes attention's (contiguous (B, n, S, d)), forward and backward, in fp32 with the
// fp32 tables and rounded once (Hugging Face rounds the tables and each product to x's dtype: 16-bit results may
// differ from it by an ulp); elsewhere apply_rope itself.
at::Tensor rope_heads(const at::Tensor& x, int64_t num_heads, const at::Tensor& cos, const at::Tensor& sin);

// silu(gate) * up, Llama's SwiGLU. On CUDA one fused kernel forward and one backward (saving gate and up only), in
// fp32 and rounded once; elsewhere ATen's silu and mul.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);

// Causal scaled-dot-product attention with grouped-query heads: q (B, nh, S, d), k and v (B, nkv, S, d) with nkv
// dividing nh (query head i reads kv head i / (nh / nkv), as repeat_interleave does) -> (B, nh, S, d).
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// Mean cross-entropy of (N, V) logits against (N,) int64 targets (entries equal to ignore_index are skipped), with
// the softmax in fp32 whatever the logits' dtype, as at::cross_entropy_loss(logits.to(kFloat), ...) computes it,
// but row chunk by row chunk: no (N, V) fp32 tensor is ever materialized, forward or backward (for 16-bit logits
// that is 2-4x the logits' own memory: at N = 16384, V = 128256 about 24 GiB). Backward recomputes each chunk's
// softmax from the saved logits and per-row log-sum-exp and writes the gradient in the logits' dtype. Returns an
// fp32 scalar; NaN when every target is ignored (as torch's mean reduction). `chunk_rows` 0: about 64M elements.
at::Tensor cross_entropy_fp32(const at::Tensor& logits, const at::Tensor& targets, int64_t ignore_index = -100,
                              int64_t chunk_rows = 0);

// (B, S, n * d) -> (B, n, S, d), a view.
at::Tensor split_heads(const at::Tensor& x, int64_t num_heads);

// (B, n, S, d) -> (B, S, n * d), contiguous.
at::Tensor merge_heads(const at::Tensor& x);

// Initializes every parameter of `model` in named_parameters order from torch's global generator: matrices and
// embeddings (2-D) N(0, init_std), or N(0, init_std / sqrt(2 num_layers)) where is_residual_projection(name)
// (outputs added to the residual stream, GPT-2's scaling), biases 0, other 1-D parameters (norm weights) 1.
void init_parameters(torch::nn::Module& model, const ModelSpec& spec);

// Checks tokens is (B, S) int64 with 1 <= S <= spec.max_seq; throws std::invalid_argument otherwise.
void check_tokens(const at::Tensor& tokens, const ModelSpec& spec);

// The model of each family (gpt2.cc, llama.cc), with LibTorch's default initialization (make_model replaces it).
// `deferred`: every parameter's storage is released as soon as its module is built (make_model_deferred).
std::shared_ptr<CausalLM> build_gpt2(const ModelSpec& spec, bool deferred);
std::shared_ptr<CausalLM> build_llama(const ModelSpec& spec, bool deferred);

// When `deferred`, releases the storage of every parameter of `module` (shapes stay; see torch/storage.h).
void release_parameters(torch::nn::Module& module, bool deferred);

// Whether `name` is an output projection that adds into the residual stream (initialized with std / sqrt(2 L)).
bool is_residual_projection(const std::string& name);

// Initializes one parameter in place by the rule of init_parameters.
void init_parameter(const std::string& name, at::Tensor& p, const ModelSpec& spec);

}  // namespace zerotrain::detail
