// `zerotrain estimate`: per-GPU and per-node memory of ZeRO stages 0-3 with and without offload, and a
// recommended stage. Numbers are read as text and parsed here so that every bad value is reported the same
// way (the flag, the value, what is allowed) and exits 1.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "commands.h"
#include "estimate/report.h"
#include "zerotrain/estimate.h"

namespace zerotrain::cli {
namespace {

struct EstimateOptions {
  std::string params, model, largest_layer;
  std::string layers, hidden, heads, kv_heads, ffn, vocab, seq, micro_batch, max_positions;
  std::string mlp, attention, overlap_comm;
  std::string gpus_per_node, nodes, gpu_memory_gb;
  std::string reduce_bucket, allgather_bucket, prefetch_bucket, max_live, sub_group, grad_bytes;
  bool tie_embeddings = false, dropout = false, activation_checkpointing = false, no_zero_init = false;
  bool json = false, list_models = false;
};

[[noreturn]] void bad(const std::string& flag, const std::string& value, const std::string& allowed) {
  throw std::invalid_argument(flag + ": got '" + value + "'; " + allowed);
}

// A count: "7000000000", "7e9", "1.1e9", "124M", "7B", "1.5T" (K, M, B or G, T are powers of 1000).
int64_t parse_count(const std::string& flag, const std::string& text) {
  const std::string allowed =
      "expected a whole number, plain (7000000000), scientific (7e9) or with a K/M/B/T suffix (7B)";
  if (text.empty()) bad(flag, text, allowed);
  double multiplier = 1;
  std::string number = text;
  switch (number.back()) {
    case 'k': case 'K': multiplier = 1e3; break;
    case 'm': case 'M': multiplier = 1e6; break;
    case 'b': case 'B': case 'g': case 'G': multiplier = 1e9; break;
    case 't': case 'T': multiplier = 1e12; break;
    default: break;
  }
  if (multiplier != 1) number.pop_back();
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(number, &used);
  } catch (const std::exception&) {
    bad(flag, text, allowed);
  }
  if (used != number.size() || !std::isfinite(value)) bad(flag, text, allowed);
  value *= multiplier;
  const double rounded = std::round(value);
  if (std::fabs(value - rounded) > 1e-6 * std::max(1.0, std::fabs(value)) || std::fabs(rounded) > 9e18) {
    bad(flag, text, allowed);
  }
  return static_cast<int64_t>(rounded);
}

int parse_small(const std::string& flag, const std::string& text) {
  const int64_t v = parse_count(flag, text);
  if (v < INT32_MIN || v > INT32_MAX) bad(flag, text, "out of range");
  return static_cast<int>(v);
}

double parse_real(const std::string& flag, const std::string& text) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    bad(flag, text, "expected a number");
  }
  if (used != text.size()) bad(flag, text, "expected a number");
  return value;
}

// Applies the shape flags that were given on top of `shape`.
void apply_shape_flags(const EstimateOptions& o, ModelShape& shape) {
  auto set = [](const std::string& text, const char* flag, int64_t& field) {
    if (!text.empty()) field = parse_count(flag, text);
  };
  set(o.layers, "--layers", shape.num_layers);
  set(o.hidden, "--hidden", shape.hidden);
  set(o.heads, "--heads", shape.num_heads);
  set(o.kv_heads, "--kv-heads", shape.num_kv_heads);
  set(o.ffn, "--ffn", shape.ffn);
  set(o.vocab, "--vocab", shape.vocab);
  set(o.seq, "--seq", shape.seq);
  set(o.micro_batch, "--micro-batch", shape.micro_batch);
  set(o.max_positions, "--max-positions", shape.max_positions);
  if (!o.mlp.empty()) {
    if (o.mlp == "gated") {
      shape.mlp = MlpKind::kGated;
    } else if (o.mlp == "plain") {
      shape.mlp = MlpKind::kPlain;
    } else {
      bad("--mlp", o.mlp, "allowed: gated (Llama family), plain (GPT-2 family)");
    }
  }
  if (o.tie_embeddings) shape.tie_embeddings = true;
  if (o.dropout) shape.dropout = true;
}

bool any_shape_flag(const EstimateOptions& o) {
  for (const std::string* s : {&o.layers, &o.hidden, &o.heads, &o.kv_heads, &o.ffn, &o.vocab, &o.seq,
                               &o.micro_batch, &o.max_positions, &o.mlp}) {
    if (!s->empty()) return true;
  }
  return o.tie_embeddings || o.dropout;
}

EstimateInput build_input(const EstimateOptions& o) {
  EstimateInput in;
  const bool shape_flags = any_shape_flag(o);
  if (!o.model.empty()) {
    ModelShape shape = model_preset(o.model);
    apply_shape_flags(o, shape);
    in.shape = shape;
  } else if (shape_flags) {
    if (!o.params.empty()) {
      throw std::invalid_argument(
          "--params: got '" + o.params +
          "'; give a parameter count or a model shape (--model, or --layers --hidden ...), not both");
    }
    const std::pair<const std::string*, const char*> required[] = {
        {&o.layers, "--layers"}, {&o.hidden, "--hidden"}, {&o.heads, "--heads"},
        {&o.ffn, "--ffn"},       {&o.vocab, "--vocab"},   {&o.seq, "--seq"}};
    for (const auto& [value, flag] : required) {
      if (value->empty()) {
        throw std::invalid_argument(std::string(flag) +
                                    ": missing; a model shape needs --layers --hidden --heads --ffn --vocab --seq "
                                    "(or --model NAME)");
      }
    }
    ModelShape shape;
    apply_shape_flags(o, shape);
    in.shape = shape;
  } else if (o.params.empty()) {
    throw std::invalid_argument(
        "model: missing; give --params N (e.g. 7e9), --model NAME, or a shape (--layers --hidden --heads --ffn "
        "--vocab --seq)");
  }
  if (!o.params.empty()) in.num_params = parse_count("--params", o.params);
  if (!o.largest_layer.empty()) in.largest_layer_params = parse_count("--largest-layer-params", o.largest_layer);
  if (!o.gpus_per_node.empty()) in.gpus_per_node = parse_small("--gpus-per-node", o.gpus_per_node);
  if (!o.nodes.empty()) in.num_nodes = parse_small("--nodes", o.nodes);
  if (!o.gpu_memory_gb.empty()) in.gpu_memory_gb = parse_real("--gpu-memory-gb", o.gpu_memory_gb);
  if (!o.reduce_bucket.empty()) in.reduce_bucket_size = parse_count("--reduce-bucket-size", o.reduce_bucket);
  if (!o.allgather_bucket.empty()) {
    in.allgather_bucket_size = parse_count("--allgather-bucket-size", o.allgather_bucket);
  }
  if (!o.prefetch_bucket.empty()) in.prefetch_bucket_size = parse_count("--prefetch-bucket-size", o.prefetch_bucket);
  if (!o.max_live.empty()) in.max_live_parameters = parse_count("--max-live-parameters", o.max_live);
  if (!o.sub_group.empty()) in.sub_group_size = parse_count("--sub-group-size", o.sub_group);
  if (!o.grad_bytes.empty()) in.grad_bytes = parse_small("--grad-bytes", o.grad_bytes);
  if (!o.attention.empty()) {
    if (o.attention == "flash") {
      in.attention = AttentionKind::kFlash;
    } else if (o.attention == "math") {
      in.attention = AttentionKind::kMath;
    } else {
      bad("--attention", o.attention, "allowed: flash (SDPA flash/memory-efficient), math (scores materialized)");
    }
  }
  if (!o.overlap_comm.empty()) {
    if (o.overlap_comm == "true") {
      in.overlap_comm = true;
    } else if (o.overlap_comm == "false") {
      in.overlap_comm = false;
    } else if (o.overlap_comm != "auto") {
      bad("--overlap-comm", o.overlap_comm, "allowed: auto (DeepSpeed's default), true, false");
    }
  }
  in.activation_checkpointing = o.activation_checkpointing;
  in.zero_init = !o.no_zero_init;
  return in;
}

void run(const EstimateOptions& o) {
  if (o.list_models) {
    for (const auto& name : model_preset_names()) {
      std::printf("%-12s %lld parameters\n", name.c_str(),
                  static_cast<long long>(count_parameters(model_preset(name))));
    }
    return;
  }
  const Estimate estimate = estimate_memory(build_input(o));
  const std::string text = o.json ? detail::render_estimate_json(estimate, o.model)
                                  : detail::render_estimate_text(estimate, o.model);
  std::fputs(text.c_str(), stdout);
}

}  // namespace

void add_estimate_command(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<EstimateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "estimate", "Per-GPU and per-node memory of ZeRO stages 0-3, with and without CPU/NVMe offload");
  // Model: a count or a shape.
  cmd->add_option("--params", opts->params, "Total parameters: 7e9, 7000000000, 7B, 124M");
  cmd->add_option("--model", opts->model, "Built-in model shape: gpt2, gpt2-medium, gpt2-large, gpt2-xl, "
                                          "llama-1.1b, llama-2-7b, llama-3-8b (shape flags override it)");
  cmd->add_flag("--list-models", opts->list_models, "List the built-in model shapes and exit");
  cmd->add_option("--largest-layer-params", opts->largest_layer,
                  "With --params: the largest module's parameters (DeepSpeed's largest_layer_params)");
  cmd->add_option("--layers", opts->layers, "Transformer blocks");
  cmd->add_option("--hidden", opts->hidden, "Model width");
  cmd->add_option("--heads", opts->heads, "Attention heads");
  cmd->add_option("--kv-heads", opts->kv_heads, "Key/value heads (GQA); default: --heads");
  cmd->add_option("--ffn", opts->ffn, "MLP inner width");
  cmd->add_option("--vocab", opts->vocab, "Vocabulary size");
  cmd->add_option("--seq", opts->seq, "Sequence length");
  cmd->add_option("--micro-batch", opts->micro_batch, "Micro-batch per GPU (default 1)");
  cmd->add_option("--mlp", opts->mlp, "Block family: gated (Llama, default) or plain (GPT-2)");
  cmd->add_option("--max-positions", opts->max_positions, "Plain family: learned position rows (default --seq)");
  cmd->add_flag("--tie-embeddings", opts->tie_embeddings, "The LM head reuses the token embedding");
  cmd->add_flag("--dropout", opts->dropout, "The model has dropout (its masks are saved)");
  cmd->add_option("--attention", opts->attention, "flash (SDPA, default) or math (scores materialized)");
  cmd->add_flag("--activation-checkpointing", opts->activation_checkpointing, "Recompute every block in backward");
  // Cluster.
  cmd->add_option("--gpus-per-node", opts->gpus_per_node, "GPUs per node (default 1)");
  cmd->add_option("--nodes", opts->nodes, "Nodes (default 1)");
  cmd->add_option("--gpu-memory-gb", opts->gpu_memory_gb, "Memory of one GPU in GB, 1e9 bytes (default 80)");
  // ZeRO knobs that cost memory (DeepSpeed's defaults).
  cmd->add_option("--reduce-bucket-size", opts->reduce_bucket, "Gradient bucket, elements (default 5e8)");
  cmd->add_option("--allgather-bucket-size", opts->allgather_bucket, "Stage 1/2 all-gather chunk (default 5e8)");
  cmd->add_option("--prefetch-bucket-size", opts->prefetch_bucket, "Stage 3 prefetch, elements (default 5e7)");
  cmd->add_option("--max-live-parameters", opts->max_live, "Stage 3 gathered-parameter cap (default 1e9)");
  cmd->add_option("--sub-group-size", opts->sub_group, "Stage 3 optimizer sub-group, NVMe swap unit (default 1e9)");
  cmd->add_option("--overlap-comm", opts->overlap_comm, "auto (DeepSpeed default), true, false");
  cmd->add_option("--grad-bytes", opts->grad_bytes, "Bytes per kept gradient element: 2 (default) or 4");
  cmd->add_flag("--no-zero-init", opts->no_zero_init, "Stage 3 model built whole on the host first");
  cmd->add_flag("--json", opts->json, "Print JSON");
  cmd->callback([opts, &exit_code]() {
    try {
      run(*opts);
      exit_code = 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "zerotrain estimate: error: %s\n", e.what());
      exit_code = 1;
    }
  });
}

}  // namespace zerotrain::cli
