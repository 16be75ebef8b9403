// The family-independent part of a causal LM: the forward pipeline (embed -> blocks -> head), the loss, the
// block list the engine hooks into, and make_model.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>

#include "models/layers.h"
#include "zerotrain/models.h"

namespace zerotrain {

CausalLM::CausalLM(ModelSpec spec) : spec_(std::move(spec)) {}

at::Tensor CausalLM::forward(const at::Tensor& tokens) {
  at::Tensor hidden = run_segment(0, [this](const at::Tensor& t) { return embed(t); }, tokens);  // (B, S, H)
  for (size_t i = 0; i < blocks_.size(); ++i) {
    TransformerBlock* block = blocks_[i].get();
    hidden = run_segment(static_cast<int64_t>(i) + 1, [block](const at::Tensor& h) { return block->forward(h); },
                         hidden);
  }
  return run_segment(static_cast<int64_t>(blocks_.size()) + 1, [this](const at::Tensor& h) { return head(h); },
                     hidden);  // (B, S, V)
}

at::Tensor CausalLM::loss(const at::Tensor& tokens, const at::Tensor& targets) {
  if (!targets.sizes().equals(tokens.sizes())) {
    throw std::invalid_argument(fmt::format("targets: got shape {}; must equal the tokens' shape {}",
                                            fmt::join(targets.sizes(), "x"), fmt::join(tokens.sizes(), "x")));
  }
  at::Tensor logits = forward(tokens);  // (B, S, V) model dtype
  // log-softmax and the mean over B*S tokens in fp32 (bf16 sums of thousands of terms lose ~3 digits), chunked so
  // that no (B*S, V) fp32 tensor exists.
  return detail::cross_entropy_fp32(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), -100);
}

std::vector<std::shared_ptr<torch::nn::Module>> CausalLM::blocks() const {
  return {blocks_.begin(), blocks_.end()};
}

bool CausalLM::checkpointable(int64_t index) const {
  return index >= 1 && index <= static_cast<int64_t>(blocks_.size());
}

std::vector<std::vector<at::Tensor>> CausalLM::segment_parameters() const {
  std::vector<std::vector<at::Tensor>> out;
  out.push_back(embed_parameters());
  for (const auto& block : blocks_) out.push_back(block->parameters(/*recurse=*/true));
  out.push_back(head_parameters());
  return out;
}

void CausalLM::add_block(std::shared_ptr<TransformerBlock> block) {
  TORCH_INTERNAL_ASSERT(block, "a model family registered a block that is not a TransformerBlock");
  blocks_.push_back(std::move(block));
}

std::shared_ptr<CausalLM> make_model(const ModelSpec& spec) {
  validate_model_spec(spec);
  std::shared_ptr<CausalLM> model =
      spec.family == ModelFamily::kGpt2 ? detail::build_gpt2(spec, false) : detail::build_llama(spec, false);
  detail::init_parameters(*model, spec);
  return model;
}

std::shared_ptr<CausalLM> make_model_deferred(const ModelSpec& spec) {
  validate_model_spec(spec);
  return spec.family == ModelFamily::kGpt2 ? detail::build_gpt2(spec, true) : detail::build_llama(spec, true);
}

void CausalLM::init_parameter(const std::string& name, at::Tensor& param) const {
  detail::init_parameter(name, param, spec_);
}
}  // namespace zerotrain
