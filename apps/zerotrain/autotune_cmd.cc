// `zerotrain autotune [--run] [LAUNCH FLAGS] PROGRAM [ARGS...]`: DeepSpeed's autotuner, the same as
// `zerotrain launch --autotuning tune|run ...` (docs/autotuning.md); it re-executes that command.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.h"
#include "launch/context.h"

namespace zerotrain::cli {

void add_autotune_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "autotune", "Find the best ZeRO stage, micro-batch size and ZeRO knobs for PROGRAM (launch --autotuning tune)");
  auto run = std::make_shared<bool>(false);
  cmd->add_flag("--run", *run, "Then train with the best config (launch --autotuning run)");
  cmd->footer(
      "[LAUNCH FLAGS] PROGRAM [ARGS...]: as for `zerotrain launch`; ARGS must name the DeepSpeed config (--deepspeed,\n"
      "--deepspeed_config or --config FILE). Results go to autotuning_results/ (the config's autotuning.results_dir).");
  cmd->prefix_command();
  cmd->allow_extras();
  cmd->callback([=, &exit_code] {
    const std::string exe = detail::LaunchContext::current().self_exe;
    std::vector<std::string> argv{exe, "launch", "--autotuning", *run ? "run" : "tune"};
    for (const auto& a : cmd->remaining()) argv.push_back(a);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(exe.c_str(), cargv.data());
    exit_code = 1;
    throw std::runtime_error("cannot execute " + exe + ": " + std::strerror(errno));
  });
}

}  // namespace zerotrain::cli
