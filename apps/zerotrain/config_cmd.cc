// `zerotrain config check CONFIG [--world-size N] [--json]`: prints the effective config (each value and where
// it came from) or every error. Exit 0 on a valid config, 1 on an invalid one.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>

#include "commands.h"
#include "zerotrain/config.h"

namespace zerotrain::cli {
namespace {

const char* origin_name(ValueOrigin o) {
  switch (o) {
    case ValueOrigin::kFile: return "file";
    case ValueOrigin::kDefault: return "default";
    case ValueOrigin::kAuto: return "auto";
    case ValueOrigin::kDerived: return "derived";
  }
  return "?";
}

void print_report(const Config& cfg, const std::string& path) {
  const auto& b = cfg.batch();
  fmt::print("config: {}\n", path);
  fmt::print("batch:  train_batch_size {} = micro-batch {} x gradient accumulation {} x world size {}\n\n",
             b.train_batch_size, b.micro_batch_per_gpu, b.gradient_accumulation_steps, cfg.run().world_size);
  size_t width = 0;
  for (const auto& v : cfg.effective_values()) width = std::max(width, v.path.size());
  fmt::print("  {:<{}}  {:<24}  {}\n", "key", width, "value", "from");
  for (const auto& v : cfg.effective_values()) {
    std::string value = v.value_json;
    if (value.size() > 24 && value.size() > 60) value = value.substr(0, 57) + "...";
    fmt::print("  {:<{}}  {:<24}  {}{}\n", v.path, width, value, origin_name(v.origin),
               v.note.empty() ? "" : "  (" + v.note + ")");
  }
  if (!cfg.warnings().empty()) {
    fmt::print("\nwarnings:\n");
    for (const auto& w : cfg.warnings()) fmt::print("  - {}\n", w);
  }
  if (!cfg.unsupported_features().empty()) {
    fmt::print("\nnot supported yet (valid DeepSpeed settings; the engine refuses to start with them):\n");
    for (const auto& f : cfg.unsupported_features()) fmt::print("  - {}\n", f);
  }
  fmt::print("\n{}: valid\n", path);
}

}  // namespace

void add_config_command(CLI::App& app, int& exit_code) {
  auto* config = app.add_subcommand("config", "Work with DeepSpeed JSON configs");
  config->require_subcommand(1);
  auto* check = config->add_subcommand("check", "Validate a config and print the effective settings");
  struct Options {
    std::string path;
    int world_size = 1;
    bool json = false;
    std::optional<int64_t> micro_batch, grad_accum, hidden;
  };
  auto opts = std::make_shared<Options>();
  check->add_option("CONFIG", opts->path, "DeepSpeed JSON config file")->required();
  check->add_option("--world-size", opts->world_size, "Data-parallel ranks the batch triple is resolved for")
      ->check(CLI::PositiveNumber);
  check->add_option("--micro-batch", opts->micro_batch, "Resolves \"auto\" train_micro_batch_size_per_gpu");
  check->add_option("--grad-accum", opts->grad_accum, "Resolves \"auto\" gradient_accumulation_steps");
  check->add_option("--hidden-size", opts->hidden, "Resolves \"auto\" bucket sizes (as Hugging Face does)");
  check->add_flag("--json", opts->json, "Print the effective config as DeepSpeed JSON on stdout");
  check->callback([opts, &exit_code] {
    RunInfo run;
    run.world_size = opts->world_size;
    run.micro_batch_per_gpu = opts->micro_batch;
    run.gradient_accumulation_steps = opts->grad_accum;
    run.hidden_size = opts->hidden;
    try {
      const Config cfg = Config::from_file(opts->path, run);
      if (opts->json) {
        fmt::print("{}\n", cfg.to_json());
        for (const auto& w : cfg.warnings()) fmt::print(stderr, "warning: {}\n", w);
        for (const auto& f : cfg.unsupported_features()) fmt::print(stderr, "not supported yet: {}\n", f);
      } else {
        print_report(cfg, opts->path);
      }
      exit_code = 0;
    } catch (const ConfigError& e) {
      fmt::print(stderr, "{}: invalid config ({} error{}):\n", opts->path, e.errors().size(),
                 e.errors().size() == 1 ? "" : "s");
      for (const auto& msg : e.errors()) fmt::print(stderr, "  error: {}\n", msg);
      exit_code = 1;
    }
  });
}

}  // namespace zerotrain::cli
