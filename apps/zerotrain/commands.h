// The CLI's subcommands. Each lives in its own file and registers itself on the root app; its callback
// sets the process exit code through the int it is handed.
#pragma once

namespace CLI {
class App;
}

#include <string>
#include <vector>

namespace zerotrain::cli {

// The command line as main received it (argv[0] first); `launch --autotuning` re-runs its launch flags.
void set_command_line(int argc, char** argv);
const std::vector<std::string>& command_line();

// `zerotrain config check CONFIG [--world-size N] [--json]`
void add_config_command(CLI::App& app, int& exit_code);

// `zerotrain estimate ...`
void add_estimate_command(CLI::App& app, int& exit_code);

// `zerotrain launch [FLAGS] PROGRAM [ARGS...]`
void add_launch_command(CLI::App& app, int& exit_code);

// `zerotrain autotune [--run] [FLAGS] PROGRAM [ARGS...]` (= launch --autotuning tune|run)
void add_autotune_command(CLI::App& app, int& exit_code);

// `zerotrain train --config CFG [--model NAME] [--steps N]` (built only with the LibTorch library)
void add_train_command(CLI::App& app, int& exit_code);

// `zerotrain convert CKPT --out DIR [--dtype fp32|bf16|fp16] [--max-shard-size 5GB]` (LibTorch library only)
void add_convert_command(CLI::App& app, int& exit_code);

}  // namespace zerotrain::cli
