#include "autotune/autotune.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <numeric>

#include "autotune/autotuner.h"
#include "autotune/experiment.h"
#include "launch/context.h"
#include "launch/error.h"
#include "launch/launch.h"
#include "launch/text_file.h"

namespace zerotrain::detail {
namespace {

std::string absolute(const std::string& path) {
  if (!path.empty() && path.front() == '/') return path;
  std::vector<char> buf(4096);
  if (::getcwd(buf.data(), buf.size()) == nullptr) throw LaunchError("autotuning: cannot read the working directory");
  return std::string(buf.data()) + "/" + path;
}

}  // namespace

AutotuneMode parse_autotune_mode(const std::string& value) {
  if (value == "tune") return AutotuneMode::kTune;
  if (value == "run") return AutotuneMode::kRun;
  throw LaunchError(fmt::format("--autotuning {}: use tune (find the best config) or run (find it, then train with it)",
                                value));
}

int autotune(const LaunchOptions& opts, const std::vector<std::string>& launch_words, AutotuneMode mode,
             const std::string& zerotrain_exe) {
  if (opts.program.empty()) throw LaunchError("--autotuning: no PROGRAM to tune");
  const ProgramArgs program = find_config_argument(opts.program_args);
  const std::string& word = program.args[program.config_index];
  const std::string value = program.config_joined ? word.substr(program.config_flag.size() + 1) : word;
  std::string text, source = value;
  if (!value.empty() && value.front() == '{') {
    text = value;
    source = program.config_flag;
  } else {
    const auto file = read_text_file(value, program.config_flag);
    if (!file) throw LaunchError(fmt::format("{} {}: no such file (the config to autotune)", program.config_flag, value));
    text = *file;
  }
  Json user = read_json(text, source).root;

  // One experiment's ranks: the launch as planned, without running it.
  const LaunchPlan plan = plan_launch(opts, LaunchContext::current());
  const int world = std::accumulate(plan.world.begin(), plan.world.end(), 0,
                                    [](int n, const NodeSlots& node) { return n + static_cast<int>(node.slots.size()); });

  // The search settings first (their errors name the keys); then the directories.
  const AutotuningConfig at = autotuning_settings(user, source);
  // Hugging Face style: an "auto" micro-batch size or accumulation mapped to a script argument takes the script's
  // value (the smallest micro-batch size to tune from, as DeepSpeed's autotuner reads it).
  for (const auto& [key, flag] : at.arg_mappings) {
    if (key != "train_micro_batch_size_per_gpu" && key != "gradient_accumulation_steps") continue;
    if (!user.is_object() || !user.contains(key) || user.at(key) != Json("auto")) continue;
    const auto& args = opts.program_args;
    for (size_t i = 0; i < args.size(); ++i) {
      std::string v;
      if (args[i] == flag && i + 1 < args.size()) v = args[i + 1];
      if (args[i].rfind(flag + "=", 0) == 0) v = args[i].substr(flag.size() + 1);
      if (!v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos && std::stoll(v) > 0) {
        user[key] = std::stoll(v);
      }
    }
  }

  ProcessRunner::Options ro;
  ro.zerotrain_exe = zerotrain_exe;
  ro.launch_words = launch_words;
  ro.program = opts.program;
  ro.program_args = program;
  ro.arg_mappings = at.arg_mappings;
  ro.results_dir = absolute(at.results_dir);
  ro.exps_dir = absolute(at.exps_dir);
  ro.overwrite = at.overwrite;
  ro.world_size = world;
  ProcessRunner runner(ro);
  Autotuner tuner(user, source, world, runner, std::cout);
  const auto best = tuner.tune();
  const std::string optimal = tuner.write_results(ro.results_dir);
  if (!best || optimal.empty()) return 1;
  if (mode == AutotuneMode::kTune) return 0;
  std::cout << "autotuning: training with " << optimal << "\n";
  const int status = run_child(runner.command_for(optimal), "the training");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace zerotrain::detail
