// GPT-2 (Radford et al. 2019) as Hugging Face's GPT2LMHeadModel lays it out, without dropout: learned position
// embeddings, pre-LayerNorm blocks with biases, fused QKV projection, GELU(tanh) MLP, final LayerNorm, LM head
// tied to the token embedding. Hugging Face's Conv1D weights are (in, out); these nn::Linear weights are their
// transposes (see ParameterInfo::hf_transposed).
#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "models/layers.h"

namespace zerotrain::detail {
namespace {

torch::nn::Linear linear(int64_t in, int64_t out) { return torch::nn::Linear(torch::nn::LinearOptions(in, out)); }

torch::nn::LayerNorm layer_norm(const ModelSpec& s) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({s.hidden}).eps(s.norm_eps));
}

class Gpt2Attention : public torch::nn::Module {
 public:
  explicit Gpt2Attention(const ModelSpec& s)
      : num_heads_(s.num_heads), kv_width_(s.num_kv_heads * s.head_dim()), num_kv_heads_(s.num_kv_heads) {
    c_attn = register_module("c_attn", linear(s.hidden, s.hidden + 2 * kv_width_));
    c_proj = register_module("c_proj", linear(s.hidden, s.hidden));
  }

  at::Tensor forward(const at::Tensor& x) {  // (B, S, H) -> (B, S, H)
    const int64_t h = x.size(2);
    at::Tensor qkv = c_attn->forward(x);  // (B, S, H + 2 kv)
    at::Tensor q = split_heads(qkv.narrow(2, 0, h), num_heads_);                  // (B, nh, S, d)
    at::Tensor k = split_heads(qkv.narrow(2, h, kv_width_), num_kv_heads_);       // (B, nkv, S, d)
    at::Tensor v = split_heads(qkv.narrow(2, h + kv_width_, kv_width_), num_kv_heads_);
    return c_proj->forward(merge_heads(causal_attention(q, k, v)));
  }

  torch::nn::Linear c_attn{nullptr};  // weight (H + 2 kv, H), bias (H + 2 kv,): rows q, k, v
  torch::nn::Linear c_proj{nullptr};  // weight (H, H), bias (H,): residual projection

 private:
  int64_t num_heads_;
  int64_t kv_width_;  // num_kv_heads * head_dim (= H for GPT-2 itself)
  int64_t num_kv_heads_;
};

class Gpt2Mlp : public torch::nn::Module {
 public:
  explicit Gpt2Mlp(const ModelSpec& s) {
    c_fc = register_module("c_fc", linear(s.hidden, s.ffn));
    c_proj = register_module("c_proj", linear(s.ffn, s.hidden));
  }

  at::Tensor forward(const at::Tensor& x) {  // (B, S, H) -> (B, S, H)
    return c_proj->forward(at::gelu(c_fc->forward(x), "tanh"));
  }

  torch::nn::Linear c_fc{nullptr};    // weight (F, H), bias (F,)
  torch::nn::Linear c_proj{nullptr};  // weight (H, F), bias (H,): residual projection
};

class Gpt2Block : public TransformerBlock {
 public:
  explicit Gpt2Block(const ModelSpec& s) {
    ln_1 = register_module("ln_1", layer_norm(s));
    attn = register_module("attn", std::make_shared<Gpt2Attention>(s));
    ln_2 = register_module("ln_2", layer_norm(s));
    mlp = register_module("mlp", std::make_shared<Gpt2Mlp>(s));
  }

  at::Tensor forward(const at::Tensor& hidden) override {
    at::Tensor x = hidden + attn->forward(ln_1->forward(hidden));
    return x + mlp->forward(ln_2->forward(x));
  }

  torch::nn::LayerNorm ln_1{nullptr};
  std::shared_ptr<Gpt2Attention> attn;
  torch::nn::LayerNorm ln_2{nullptr};
  std::shared_ptr<Gpt2Mlp> mlp;
};

// Hugging Face's GPT2Model: the "transformer." prefix of every parameter name.
class Gpt2Transformer : public torch::nn::Module {
 public:
  Gpt2Transformer(const ModelSpec& s, bool deferred) {
    wte = register_module("wte", torch::nn::Embedding(s.vocab, s.hidden));
    release_parameters(*wte, deferred);
    wpe = register_module("wpe", torch::nn::Embedding(s.max_seq, s.hidden));
    release_parameters(*wpe, deferred);
    h = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < s.num_layers; ++i) {
      auto block = std::make_shared<Gpt2Block>(s);
      release_parameters(*block, deferred);  // one block at a time exists in memory
      h->push_back(block);
    }
    ln_f = register_module("ln_f", layer_norm(s));
    release_parameters(*ln_f, deferred);
  }

  torch::nn::Embedding wte{nullptr};  // (V, H) token embedding, also the LM head when tied
  torch::nn::Embedding wpe{nullptr};  // (max_seq, H) learned positions
  torch::nn::ModuleList h{nullptr};   // Gpt2Block x num_layers
  torch::nn::LayerNorm ln_f{nullptr};
};

class Gpt2LM : public CausalLM {
 public:
  Gpt2LM(const ModelSpec& s, bool deferred) : CausalLM(s) {
    transformer = register_module("transformer", std::make_shared<Gpt2Transformer>(s, deferred));
    for (const auto& block : *transformer->h) add_block(std::dynamic_pointer_cast<TransformerBlock>(block));
    if (!s.tie_embeddings) {
      lm_head = register_module("lm_head", linear_no_bias(s.hidden, s.vocab));
      release_parameters(*lm_head, deferred);
    }
  }

  at::Tensor embed(const at::Tensor& tokens) override {
    check_tokens(tokens, spec());
    at::Tensor positions = at::arange(tokens.size(1), tokens.options().dtype(at::kLong));  // (S,)
    return transformer->wte->forward(tokens) + transformer->wpe->forward(positions);     // (B, S, H)
  }

  at::Tensor head(const at::Tensor& hidden) override {
    at::Tensor x = transformer->ln_f->forward(hidden);
    const at::Tensor& weight = lm_head ? lm_head->weight : transformer->wte->weight;  // (V, H)
    return at::linear(x, weight);                                                   // (B, S, V)
  }

  std::vector<at::Tensor> embed_parameters() const override {
    return {transformer->wte->weight, transformer->wpe->weight};
  }
  std::vector<at::Tensor> head_parameters() const override {
    return {transformer->ln_f->weight, transformer->ln_f->bias, lm_head ? lm_head->weight : transformer->wte->weight};
  }

  std::shared_ptr<Gpt2Transformer> transformer;
  torch::nn::Linear lm_head{nullptr};  // (V, H), only when the embeddings are not tied

 private:
  static torch::nn::Linear linear_no_bias(int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  }
};

}  // namespace

std::shared_ptr<CausalLM> build_gpt2(const ModelSpec& spec, bool deferred) {
  return std::make_shared<Gpt2LM>(spec, deferred);
}

}  // namespace zerotrain::detail
