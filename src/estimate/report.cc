// Text and JSON rendering of the memory estimate. Sizes print in GiB (2^30 bytes), like DeepSpeed's own
// estimator ("GB" there); GPU capacity and the seed's figures stay in GB (1e9 bytes), as the seed has them.
#include "estimate/report.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <string>

namespace zerotrain::detail {
namespace {

using Json = nlohmann::ordered_json;

double gib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

// 8030261248 -> "8,030,261,248".
std::string group_digits(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

// 500000000 -> "5e8", 123456 -> "123456".
std::string short_count(int64_t value) {
  int exponent = 0;
  int64_t mantissa = value;
  while (mantissa != 0 && mantissa % 10 == 0) {
    mantissa /= 10;
    ++exponent;
  }
  return exponent >= 3 ? fmt::format("{}e{}", mantissa, exponent) : std::to_string(value);
}

std::string describe_shape(const ModelShape& s) {
  return fmt::format(
      "{} layers, hidden {}, {} heads / {} kv heads, ffn {} ({}), vocab {}, {} embeddings{}{}", s.num_layers,
      s.hidden, s.num_heads, s.num_kv_heads == 0 ? s.num_heads : s.num_kv_heads, s.ffn,
      s.mlp == MlpKind::kGated ? "gated SwiGLU" : "plain GeLU", s.vocab, s.tie_embeddings ? "tied" : "untied",
      s.mlp == MlpKind::kPlain ? fmt::format(", {} positions", s.max_positions == 0 ? s.seq : s.max_positions)
                               : std::string(),
      s.dropout ? ", dropout" : "");
}

Json shape_json(const ModelShape& s) {
  Json j;
  j["num_layers"] = s.num_layers;
  j["hidden"] = s.hidden;
  j["num_heads"] = s.num_heads;
  j["num_kv_heads"] = s.num_kv_heads == 0 ? s.num_heads : s.num_kv_heads;
  j["ffn"] = s.ffn;
  j["vocab"] = s.vocab;
  j["seq"] = s.seq;
  j["micro_batch"] = s.micro_batch;
  j["mlp"] = std::string(to_string(s.mlp));
  j["tie_embeddings"] = s.tie_embeddings;
  j["max_positions"] = s.mlp == MlpKind::kPlain ? (s.max_positions == 0 ? s.seq : s.max_positions) : 0;
  j["dropout"] = s.dropout;
  return j;
}

Json stage_json(const StageEstimate& s) {
  Json j;
  j["stage"] = s.stage;
  j["offload_optimizer"] = std::string(offload_optimizer_device(s.offload));
  j["offload_param"] = std::string(offload_param_device(s.offload));
  j["model_states_gpu_bytes"] = s.model_states_gpu_bytes;
  j["model_states_cpu_bytes"] = s.model_states_cpu_bytes;
  j["model_states_nvme_bytes"] = s.model_states_nvme_bytes;
  j["buffers_gpu_bytes"] = s.buffers_gpu_bytes;
  j["activations_gpu_bytes"] = s.activations_gpu_bytes;
  j["total_gpu_bytes"] = s.total_gpu_bytes;
  j["total_gpu_bytes_per_node"] = s.total_gpu_bytes_per_node;
  j["init_cpu_bytes_per_node"] = s.init_cpu_bytes_per_node;
  j["cpu_peak_bytes_per_node"] = s.cpu_peak_bytes_per_node;
  j["fits"] = s.fits;
  if (s.deepspeed) {
    j["deepspeed"] = {{"gpu_bytes", s.deepspeed->gpu_bytes},
                      {"cpu_bytes_per_node", s.deepspeed->cpu_bytes_per_node}};
  } else {
    j["deepspeed"] = nullptr;
  }
  return j;
}

}  // namespace

std::string render_estimate_json(const Estimate& e, std::string_view model_name) {
  const EstimateInput& in = e.input;
  Json j;
  j["units"] =
      "bytes; *_gpu_bytes per GPU, model_states_cpu_bytes / model_states_nvme_bytes / *_per_node per node";
  j["model"] = model_name.empty() ? Json(nullptr) : Json(std::string(model_name));
  j["num_params"] = e.num_params;
  j["largest_layer_params"] = e.largest_layer_params;
  j["largest_unit_params"] = e.largest_unit_params;
  j["cluster"] = {{"gpus_per_node", in.gpus_per_node},
                  {"nodes", in.num_nodes},
                  {"num_gpus", e.num_gpus},
                  {"gpu_memory_gb", in.gpu_memory_gb}};
  j["shape"] = in.shape ? shape_json(*in.shape) : Json(nullptr);
  Json settings;
  settings["activation_checkpointing"] = in.activation_checkpointing;
  settings["attention"] = std::string(to_string(in.attention));
  settings["reduce_bucket_size"] = in.reduce_bucket_size;
  settings["allgather_bucket_size"] = in.allgather_bucket_size;
  settings["prefetch_bucket_size"] = in.prefetch_bucket_size;
  settings["max_live_parameters"] = in.max_live_parameters;
  settings["sub_group_size"] = in.sub_group_size;
  settings["overlap_comm"] = in.overlap_comm ? Json(*in.overlap_comm) : Json(nullptr);
  settings["grad_bytes"] = in.grad_bytes;
  settings["zero_init"] = in.zero_init;
  settings["additional_buffer_factor"] = in.additional_buffer_factor;
  j["settings"] = settings;
  if (e.activations) {
    const ActivationEstimate& a = *e.activations;
    j["activations"] = {{"per_layer_bytes", a.per_layer_bytes},
                        {"saved_bytes", a.saved_bytes},
                        {"loss_peak_bytes", a.loss_peak_bytes},
                        {"recompute_bytes", a.recompute_bytes},
                        {"peak_bytes", a.peak_bytes}};
  } else {
    j["activations"] = nullptr;
  }
  Json stages = Json::array();
  for (const auto& s : e.stages) stages.push_back(stage_json(s));
  j["stages"] = stages;

  const Recommendation& r = e.recommendation;
  Json rec;
  rec["stage"] = r.seed.stage;
  rec["advice"] = r.seed.advice;
  rec["reason"] = r.reason;
  rec["seed_per_gpu_gb"] = r.seed.per_gpu_gb;
  rec["threshold_gb"] = r.seed.threshold_gb;
  rec["full_estimate_fits"] = r.full_estimate_fits;
  if (r.first_fit_stage) {
    rec["first_fit"] = {{"stage", *r.first_fit_stage},
                        {"offload_optimizer", std::string(offload_optimizer_device(r.first_fit_offload))},
                        {"offload_param", std::string(offload_param_device(r.first_fit_offload))}};
  } else {
    rec["first_fit"] = nullptr;
  }
  j["recommendation"] = rec;
  j["notes"] = e.notes;
  return j.dump(2) + "\n";
}

std::string render_estimate_text(const Estimate& e, std::string_view model_name) {
  const EstimateInput& in = e.input;
  std::string out;
  auto line = [&out](const std::string& s) { out += s + "\n"; };

  line(fmt::format("model: {}{} parameters ({:.2f} B)", model_name.empty() ? "" : std::string(model_name) + ", ",
                   group_digits(e.num_params), static_cast<double>(e.num_params) / 1e9));
  if (in.shape) line("  shape: " + describe_shape(*in.shape));
  line(fmt::format("  largest layer {} params (DeepSpeed's largest_layer_params); largest stage-3 unit {}",
                   e.largest_layer_params == 0 ? std::string("unknown") : group_digits(e.largest_layer_params),
                   e.largest_unit_params == 0 ? std::string("unknown") : group_digits(e.largest_unit_params)));
  line(fmt::format("cluster: {} node{} x {} GPU{} = {} GPUs of {:g} GB", in.num_nodes, in.num_nodes > 1 ? "s" : "",
                   in.gpus_per_node, in.gpus_per_node > 1 ? "s" : "", e.num_gpus, in.gpu_memory_gb));
  line(fmt::format("buckets (elements): reduce {}, allgather {}, stage-3 prefetch {}, max live {}; gradients {} "
                   "bytes/element",
                   short_count(in.reduce_bucket_size), short_count(in.allgather_bucket_size),
                   short_count(in.prefetch_bucket_size), short_count(in.max_live_parameters), in.grad_bytes));
  if (e.activations) {
    const ActivationEstimate& a = *e.activations;
    line(fmt::format("activations per GPU (micro-batch {} x seq {}, {} attention, {}):", in.shape->micro_batch,
                     in.shape->seq, in.attention == AttentionKind::kFlash ? "flash/SDPA" : "math (materialized)",
                     in.activation_checkpointing ? "activation checkpointing" : "no activation checkpointing"));
    line(fmt::format("  per layer {:.2f} GiB, kept after forward {:.2f} GiB, loss peak {:.2f} GiB, recompute "
                     "{:.2f} GiB -> peak {:.2f} GiB",
                     gib(a.per_layer_bytes), gib(a.saved_bytes), gib(a.loss_peak_bytes), gib(a.recompute_bytes),
                     gib(a.peak_bytes)));
  }
  line("");
  line(fmt::format("{:<22} | {:<43} | {:<29} | {:<19}", "      offload", "per GPU (GiB)", "per node (GiB)",
                   "DeepSpeed formula"));
  line(fmt::format("{:<5} {:<9} {:<6} | {:>9} {:>8} {:>9} {:>9} {:<4} | {:>9} {:>9} {:>9} | {:>9} {:>9}", "stage",
                   "optimizer", "param", "states", "buffers", "activ.", "total", "fits", "GPU", "CPU", "NVMe",
                   "GPU", "CPU/node"));
  for (const auto& s : e.stages) {
    const std::string ds_gpu = s.deepspeed ? fmt::format("{:.2f}", gib(s.deepspeed->gpu_bytes)) : "-";
    const std::string ds_cpu = s.deepspeed ? fmt::format("{:.2f}", gib(s.deepspeed->cpu_bytes_per_node)) : "-";
    line(fmt::format("{:<5} {:<9} {:<6} | {:>9.2f} {:>8.2f} {:>9.2f} {:>9.2f} {:<4} | {:>9.2f} {:>9.2f} {:>9.2f} | "
                     "{:>9} {:>9}",
                     s.stage, offload_optimizer_device(s.offload), offload_param_device(s.offload),
                     gib(s.model_states_gpu_bytes), gib(s.buffers_gpu_bytes), gib(s.activations_gpu_bytes),
                     gib(s.total_gpu_bytes), s.fits ? "yes" : "no", gib(s.total_gpu_bytes_per_node),
                     gib(s.model_states_cpu_bytes), gib(s.model_states_nvme_bytes), ds_gpu, ds_cpu));
  }
  line("CPU: offloaded model states and host staging buffers. DeepSpeed: estimate_zero{2,3}_model_states_mem_needs");
  line("(model states only; its CPU figure includes the fp32 model load and a 1.5 safety factor).");
  // Every row but stage 3 under zero.Init has the same start-up host peak; show it once.
  int64_t init_full = 0, init_partitioned = -1;
  for (const auto& s : e.stages) {
    if (s.stage == 3 && in.zero_init) {
      init_partitioned = s.init_cpu_bytes_per_node;
    } else {
      init_full = s.init_cpu_bytes_per_node;
    }
  }
  line(fmt::format("At start, if every rank first builds the fp32 model on the host (DeepSpeed's assumption): "
                   "{:.2f} GiB per node{}.",
                   gib(init_full),
                   init_partitioned >= 0 ? fmt::format(" ({:.2f} GiB at stage 3 with zero.Init)", gib(init_partitioned))
                                         : std::string()));
  line("");
  const Recommendation& r = e.recommendation;
  line(fmt::format("recommendation: ZeRO-{}: {}", r.seed.stage, r.seed.advice));
  line("  why: " + r.reason);
  for (const auto& note : e.notes) line("note: " + note);
  return out;
}

}  // namespace zerotrain::detail
