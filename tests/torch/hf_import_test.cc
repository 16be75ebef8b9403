// Hugging Face weights into the built-in models: round trips through files laid out as Hugging Face writes them
// (GPT-2's Conv1D matrices transposed, GPT2Model names without "transformer.", sharded with an index), and the
// errors for a missing tensor or a wrong shape.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "checkpoint/safetensors.h"
#include "zerotrain/models.h"

namespace zerotrain {
namespace {

std::string temp_dir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "zt_hf_" + name + "_" + std::to_string(::getpid());
  std::filesystem::create_directories(d);
  return d;
}

// The model's weights as Hugging Face names and lays them out.
std::vector<std::pair<std::string, at::Tensor>> as_hf(CausalLM& model, const std::string& strip_prefix = "") {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : model.named_parameters()) {
    std::string name = item.key();
    if (!strip_prefix.empty() && name.rfind(strip_prefix, 0) == 0) name = name.substr(strip_prefix.size());
    at::Tensor t = item.value().detach();
    const bool conv1d = model.spec().family == ModelFamily::kGpt2 && t.dim() == 2 &&
                        (name.ends_with("attn.c_attn.weight") || name.ends_with("attn.c_proj.weight") ||
                         name.ends_with("mlp.c_fc.weight") || name.ends_with("mlp.c_proj.weight"));
    out.emplace_back(name, conv1d ? t.t().contiguous() : t);
  }
  return out;
}

void expect_equal_weights(CausalLM& a, CausalLM& b) {
  auto pb = b.named_parameters();
  for (const auto& item : a.named_parameters()) {
    EXPECT_TRUE(at::equal(item.value(), pb[item.key()])) << item.key();
  }
}

TEST(HfImport, RoundTripsBothFamiliesFromOneFile) {
  for (const char* name : {"gpt2-tiny", "llama-tiny"}) {
    SCOPED_TRACE(name);
    torch::manual_seed(0);
    auto a = make_model(model_spec(name));
    const std::string dir = temp_dir(name);
    auto weights = as_hf(*a);
    weights.emplace_back("transformer.h.0.attn.bias", at::ones({1, 1, 4, 4}));  // a buffer old checkpoints carry
    detail::write_safetensors(dir + "/model.safetensors", weights);
    torch::manual_seed(1);
    auto b = make_model(model_spec(name));
    load_hf_weights(*b, dir);
    expect_equal_weights(*a, *b);
  }
}

TEST(HfImport, Gpt2ModelNamesAndShardedFilesWithAnIndex) {
  torch::manual_seed(0);
  auto a = make_model(model_spec("gpt2-tiny"));
  const std::string dir = temp_dir("sharded");
  auto weights = as_hf(*a, "transformer.");
  const size_t half = weights.size() / 2;
  std::vector<std::pair<std::string, at::Tensor>> first(weights.begin(), weights.begin() + half),
      second(weights.begin() + half, weights.end());
  detail::write_safetensors(dir + "/model-00001-of-00002.safetensors", first);
  detail::write_safetensors(dir + "/model-00002-of-00002.safetensors", second);
  std::ofstream index(dir + "/model.safetensors.index.json");
  index << R"({"metadata": {}, "weight_map": {)";
  for (size_t i = 0; i < weights.size(); ++i) {
    index << (i ? ", " : "") << '"' << weights[i].first << "\": \"model-0000" << (i < half ? 1 : 2)
          << "-of-00002.safetensors\"";
  }
  index << "}}";
  index.close();
  torch::manual_seed(1);
  auto b = make_model(model_spec("gpt2-tiny"));
  load_hf_weights(*b, dir);
  expect_equal_weights(*a, *b);
}

TEST(HfImport, MissingOrMisshapenTensorsAreErrorsNamingThem) {
  torch::manual_seed(0);
  auto llama = make_model(model_spec("llama-tiny"));
  const std::string dir = temp_dir("errors");
  auto weights = as_hf(*llama);
  weights.erase(weights.begin());  // model.embed_tokens.weight
  detail::write_safetensors(dir + "/model.safetensors", weights);
  try {
    load_hf_weights(*llama, dir);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor model.embed_tokens.weight"), std::string::npos) << e.what();
  }
  auto other = make_model(model_spec("gpt2-tiny"));
  try {
    load_hf_weights(*other, dir);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor transformer.wte.weight"), std::string::npos) << e.what();
  }
  auto bad = as_hf(*llama);
  bad[1].second = at::zeros({3, 3});
  detail::write_safetensors(dir + "/model.safetensors", bad);
  try {
    load_hf_weights(*llama, dir);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/model.safetensors: tensor " + bad[1].first + " has shape [3, 3]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(load_hf_weights(*llama, dir + "/nothing-here"), std::runtime_error);
}

}  // namespace
}  // namespace zerotrain
