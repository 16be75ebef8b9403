// Weight files other programs read. The safetensors file format (Hugging Face): an 8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the raw little-endian data. Hugging Face Transformers and the
// safetensors library read these files as they are.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace zerotrain::detail {

// Writes `tensors` (any device; written in their own dtype, contiguous) with `metadata` (string to string) to
// `path` atomically: the data goes to "<path>.tmp.<pid>" first, is flushed to disk, then renamed over `path`, so a
// crash leaves either the old file or the new one. Throws std::runtime_error naming the file on I/O errors and
// std::invalid_argument on a dtype safetensors cannot store or a repeated name.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes `tensors` as torch.save({name: tensor, ...}) does (the zip format; loadable by torch.load with
// weights_only=True, e.g. by Hugging Face's from_pretrained as pytorch_model.bin), atomically like
// write_safetensors.
void write_torch_state_dict(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors);

// Reads every tensor of a safetensors file onto the CPU. Throws std::runtime_error naming the file and what is
// wrong (missing, truncated, malformed header, a byte range outside the data).
std::map<std::string, at::Tensor> read_safetensors(const std::string& path,
                                                   std::map<std::string, std::string>* metadata = nullptr);

}  // namespace zerotrain::detail
