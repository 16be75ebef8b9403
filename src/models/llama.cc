// Llama (Touvron et al. 2023) as Hugging Face's LlamaForCausalLM lays it out: RMSNorm pre-norm blocks, rotary
// positions (rotate-half), grouped-query attention, SwiGLU MLP, no biases, untied LM head. Hugging Face's Llama
// checkpoints already permute q_proj/k_proj rows for rotate-half, so they load without change.
#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "models/layers.h"

namespace zerotrain::detail {
namespace {

torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

class LlamaAttention : public torch::nn::Module {
 public:
  explicit LlamaAttention(const ModelSpec& s)
      : num_heads_(s.num_heads), num_kv_heads_(s.num_kv_heads), head_dim_(s.head_dim()), theta_(s.rope_theta) {
    q_proj = register_module("q_proj", linear(s.hidden, s.hidden));
    k_proj = register_module("k_proj", linear(s.hidden, num_kv_heads_ * head_dim_));
    v_proj = register_module("v_proj", linear(s.hidden, num_kv_heads_ * head_dim_));
    o_proj = register_module("o_proj", linear(s.hidden, s.hidden));
  }

  at::Tensor forward(const at::Tensor& x) {  // (B, S, H) -> (B, S, H)
    // The tables are (S, d) and cheap next to the projections; building them here keeps a block's forward a
    // function of its input alone, which ZeRO-3 units and activation checkpointing rely on.
    auto [cos, sin] = rope_tables(x.size(1), head_dim_, theta_, x.device());          // (S, d) fp32 each
    at::Tensor q = rope_heads(q_proj->forward(x), num_heads_, cos, sin);     // (B, nh, S, d)
    at::Tensor k = rope_heads(k_proj->forward(x), num_kv_heads_, cos, sin);  // (B, nkv, S, d)
    at::Tensor v = split_heads(v_proj->forward(x), num_kv_heads_);                       // (B, nkv, S, d)
    return o_proj->forward(merge_heads(causal_attention(q, k, v)));
  }

  torch::nn::Linear q_proj{nullptr};  // (H, H)
  torch::nn::Linear k_proj{nullptr};  // (nkv d, H)
  torch::nn::Linear v_proj{nullptr};  // (nkv d, H)
  torch::nn::Linear o_proj{nullptr};  // (H, H): residual projection

 private:
  int64_t num_heads_;
  int64_t num_kv_heads_;
  int64_t head_dim_;
  double theta_;
};

class LlamaMlp : public torch::nn::Module {
 public:
  explicit LlamaMlp(const ModelSpec& s) {
    gate_proj = register_module("gate_proj", linear(s.hidden, s.ffn));
    up_proj = register_module("up_proj", linear(s.hidden, s.ffn));
    down_proj = register_module("down_proj", linear(s.ffn, s.hidden));
  }

  at::Tensor forward(const at::Tensor& x) {  // (B, S, H) -> (B, S, H): SwiGLU
    return down_proj->forward(swiglu(gate_proj->forward(x), up_proj->forward(x)));
  }

  torch::nn::Linear gate_proj{nullptr};  // (F, H)
  torch::nn::Linear up_proj{nullptr};    // (F, H)
  torch::nn::Linear down_proj{nullptr};  // (H, F): residual projection
};

class LlamaBlock : public TransformerBlock {
 public:
  explicit LlamaBlock(const ModelSpec& s) {
    // Hugging Face's LlamaDecoderLayer registration order, which fixes named_parameters order.
    self_attn = register_module("self_attn", std::make_shared<LlamaAttention>(s));
    mlp = register_module("mlp", std::make_shared<LlamaMlp>(s));
    input_layernorm = register_module("input_layernorm", std::make_shared<RMSNorm>(s.hidden, s.norm_eps));
    post_attention_layernorm =
        register_module("post_attention_layernorm", std::make_shared<RMSNorm>(s.hidden, s.norm_eps));
  }

  at::Tensor forward(const at::Tensor& hidden) override {
    at::Tensor x = hidden + self_attn->forward(input_layernorm->forward(hidden));
    return x + mlp->forward(post_attention_layernorm->forward(x));
  }

  std::shared_ptr<LlamaAttention> self_attn;
  std::shared_ptr<LlamaMlp> mlp;
  std::shared_ptr<RMSNorm> input_layernorm;
  std::shared_ptr<RMSNorm> post_attention_layernorm;
};

// Hugging Face's LlamaModel: the "model." prefix of every parameter name but the LM head's.
class LlamaModel : public torch::nn::Module {
 public:
  LlamaModel(const ModelSpec& s, bool deferred) {
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(s.vocab, s.hidden));
    release_parameters(*embed_tokens, deferred);
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < s.num_layers; ++i) {
      auto block = std::make_shared<LlamaBlock>(s);
      release_parameters(*block, deferred);  // one block at a time exists in memory
      layers->push_back(block);
    }
    norm = register_module("norm", std::make_shared<RMSNorm>(s.hidden, s.norm_eps));
    release_parameters(*norm, deferred);
  }

  torch::nn::Embedding embed_tokens{nullptr};  // (V, H)
  torch::nn::ModuleList layers{nullptr};       // LlamaBlock x num_layers
  std::shared_ptr<RMSNorm> norm;
};

class LlamaLM : public CausalLM {
 public:
  LlamaLM(const ModelSpec& s, bool deferred) : CausalLM(s) {
    model = register_module("model", std::make_shared<LlamaModel>(s, deferred));
    for (const auto& block : *model->layers) add_block(std::dynamic_pointer_cast<TransformerBlock>(block));
    if (!s.tie_embeddings) {
      lm_head = register_module("lm_head", linear(s.hidden, s.vocab));
      release_parameters(*lm_head, deferred);
    }
  }

  at::Tensor embed(const at::Tensor& tokens) override {
    check_tokens(tokens, spec());
    return model->embed_tokens->forward(tokens);  // (B, S, H)
  }

  at::Tensor head(const at::Tensor& hidden) override {
    at::Tensor x = model->norm->forward(hidden);
    const at::Tensor& weight = lm_head ? lm_head->weight : model->embed_tokens->weight;  // (V, H)
    return at::linear(x, weight);                                                       // (B, S, V)
  }

  std::vector<at::Tensor> embed_parameters() const override { return {model->embed_tokens->weight}; }
  std::vector<at::Tensor> head_parameters() const override {
    return {model->norm->weight, lm_head ? lm_head->weight : model->embed_tokens->weight};
  }

  std::shared_ptr<LlamaModel> model;
  torch::nn::Linear lm_head{nullptr};  // (V, H), absent when tied
};

}  // namespace

std::shared_ptr<CausalLM> build_llama(const ModelSpec& spec, bool deferred) {
  return std::make_shared<LlamaLM>(spec, deferred);
}

}  // namespace zerotrain::detail
