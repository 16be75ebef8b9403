// Engine checkpoints: layout-independent, so any checkpoint loads at any world size and ZeRO stage.
//
// [Note: checkpoint layout]
//   DIR/latest                         the tag of the newest complete checkpoint (replaced atomically, last)
//   DIR/TAG/index.json                 format, world size, stage, parameters (name, shape), optimizer, pieces
//   DIR/TAG/engine.json                counters, loss scaler, client state
//   DIR/TAG/shard-R-of-N.safetensors   rank R's pieces: for each parameter piece it owns, "NAME@OFFSET/master"
//                                      (fp32 master weights) and "NAME@OFFSET/STATE" (each optimizer state), plus
//                                      "rng/cpu" (and "rng/cuda") generator states
// A piece is a contiguous range of a parameter's flattened elements, so loading reads, for each piece of its own
// shard, the saved pieces that overlap it: N -> M ranks and stage s -> t need no conversion step.
// Saving writes into DIR/.TAG.partial, then renames it to DIR/TAG and rewrites `latest`: a process killed at any
// point leaves the previous checkpoint and `latest` as they were.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "zero/flat_layout.h"
#include "zerotrain/comm.h"

namespace zerotrain::detail {

// This rank's trainable state, by FlatLayout parameter index.
struct ShardState {
  const FlatLayout* layout = nullptr;
  std::vector<std::string> names;                   // per parameter
  std::vector<std::vector<int64_t>> shapes;         // per parameter
  at::Tensor master;                                // (shard_numel,) fp32 (in host memory when offloaded)
  c10::Device device{c10::kCPU};                    // the training device: its RNG state is saved, flags go there
  std::vector<std::pair<std::string, at::Tensor>> optimizer_state;  // each (shard_numel,) fp32
};

struct SaveInfo {
  std::string optimizer;      // optimizer type name (load refuses another)
  int zero_stage = 0;
  std::string engine_json;    // counters, scaler, client state: written as engine.json
};

// Writes a checkpoint of every rank's ShardState to dir/tag; a collective (every rank calls it). Returns the
// checkpoint's directory. Throws std::runtime_error naming the file on I/O errors.
std::string save_checkpoint(const std::string& dir, const std::string& tag, const ShardState& state,
                            const SaveInfo& info, Comm& comm);

// The directory of dir/tag, or of dir/<latest> when `tag` is empty. Throws std::runtime_error naming what is
// missing.
std::string checkpoint_path(const std::string& dir, const std::string& tag);

// Fills `state.master` and the optimizer state tensors from the checkpoint checkpoint_path(dir, tag) (saved at any
// world size and stage), checking that its parameters and optimizer match; a collective. Returns engine.json's
// text and sets *loaded_path. Throws std::runtime_error naming the file and the problem (missing shard, wrong
// model, corrupt file) on the ranks that hit it, and an error naming the step on the others: no rank is left
// waiting in a collective.
std::string load_checkpoint(const std::string& dir, const std::string& tag, ShardState& state,
                            const std::string& optimizer, Comm& comm, std::string* loaded_path);

// The full fp32 weights of the checkpoint at `path` (a directory with index.json), assembled from its pieces, in
// the model's parameter order, on the CPU. Throws std::runtime_error naming the file and the problem.
std::vector<std::pair<std::string, at::Tensor>> consolidate_checkpoint(const std::string& path);

}  // namespace zerotrain::detail
