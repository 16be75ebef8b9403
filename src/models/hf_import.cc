// Hugging Face weights into a built-in model: model.safetensors, a sharded model.safetensors.index.json, or one
// .safetensors file, by Hugging Face parameter name (zerotrain's names are Hugging Face's).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>

#include "checkpoint/safetensors.h"
#include "zerotrain/models.h"

namespace zerotrain {
namespace {

namespace fs = std::filesystem;

// The safetensors files of `path` and, for each tensor name, the file that holds it.
std::map<std::string, std::string> weight_map(const std::string& path) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  auto add_file = [&](const std::string& file) {
    for (const auto& name : detail::SafetensorsReader(file).names()) out.emplace(name, file);
  };
  if (!fs::is_directory(path, ec)) {
    add_file(path);
    return out;
  }
  const fs::path single = fs::path(path) / "model.safetensors";
  const fs::path index = fs::path(path) / "model.safetensors.index.json";
  if (fs::exists(single, ec)) {
    add_file(single.string());
  } else if (fs::exists(index, ec)) {
    nlohmann::json j;
    try {
      std::ifstream in(index);
      j = nlohmann::json::parse(in);
      for (const auto& [name, file] : j.at("weight_map").items()) {
        out.emplace(name, (fs::path(path) / file.get<std::string>()).string());
      }
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(index.string() + ": corrupt: " + e.what());
    }
  } else {
    throw std::runtime_error(path + ": neither model.safetensors nor model.safetensors.index.json is there");
  }
  return out;
}

}  // namespace

void load_hf_weights(CausalLM& model, const std::string& path) {
  const auto files = weight_map(path);
  std::map<std::string, std::unique_ptr<detail::SafetensorsReader>> readers;
  at::NoGradGuard no_grad;
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    at::Tensor& p = item.value();
    // GPT2Model checkpoints (no LM head) name the transformer's tensors without the "transformer." prefix.
    std::string key = name;
    if (!files.count(key) && name.rfind("transformer.", 0) == 0) key = name.substr(12);
    auto it = files.find(key);
    if (it == files.end()) {
      throw std::runtime_error(path + ": no tensor " + name + " (the model needs it; shape " +
                               c10::str(p.sizes()) + "): weights of another model?");
    }
    auto& reader = readers[it->second];
    if (!reader) reader = std::make_unique<detail::SafetensorsReader>(it->second);
    at::Tensor value = reader->get(key);
    // Hugging Face's GPT-2 stores its four Conv1D matrices as (in, out); zerotrain's nn::Linear as (out, in).
    const bool conv1d = model.spec().family == ModelFamily::kGpt2 && value.dim() == 2 && is_hf_conv1d_weight(name);
    if (conv1d) value = value.t();
    if (!value.sizes().equals(p.sizes())) {
      throw std::runtime_error(it->second + ": tensor " + key + " has shape " + c10::str(value.sizes()) +
                               (conv1d ? " (transposed from Hugging Face's Conv1D layout)" : "") +
                               " but the model's " + name + " is " + c10::str(p.sizes()));
    }
    p.copy_(value);
  }
}

}  // namespace zerotrain
