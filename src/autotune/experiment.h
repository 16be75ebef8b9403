// Running one autotuning experiment: the user's program, launched as the user launched it, with one candidate
// DeepSpeed config. Each experiment leaves, as DeepSpeed's autotuner does:
//   exps_dir/NAME.json                 what was run (name, ds_config, world size, result_dir)
//   results_dir/NAME/ds_config.json    the config the program read
//   results_dir/NAME/cmd.txt           the command, runnable in a shell
//   results_dir/NAME/exp.json          as exps_dir/NAME.json
//   results_dir/NAME/stdout.log, stderr.log
//   results_dir/NAME/metrics.json      written by the engine (src/engine/autotuning_probe.h)
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/json_reader.h"

namespace zerotrain::detail {

// How one run ended.
struct RunOutcome {
  bool ok = false;       // exited with status 0 and wrote its output file
  bool reused = false;   // not run: the output of an earlier run was there (autotuning.overwrite false)
  std::string error;     // why not ok: the exit status and the last error line of stderr.log
  std::string dir;       // results_dir/NAME
};

// Runs experiments. The autotuner's search only sees this interface.
class ExperimentRunner {
 public:
  virtual ~ExperimentRunner() = default;
  // Runs `config` (complete, with its "autotuning" section) as experiment `name`; the program is expected to
  // write `output_file`. Returns how it went.
  virtual RunOutcome run(const std::string& name, const Json& config, const std::string& output_file) = 0;
  // The command that trains with the config at `config_path` (no autotuning): cmd_optimal.txt's words.
  virtual std::vector<std::string> command_for(const std::string& config_path) const = 0;
  // Where experiment `name`'s files go.
  virtual std::string result_dir(const std::string& name) const = 0;
};

// Where the user's program reads its DeepSpeed config, and the arguments that carry config values.
struct ProgramArgs {
  std::vector<std::string> args;       // PROGRAM's arguments as the user gave them
  size_t config_index = 0;             // args[config_index] holds the config (a path, or JSON text)
  bool config_joined = false;          // "--flag=VALUE" form: args[config_index] is the whole word
  std::string config_flag;             // "--deepspeed", "--deepspeed_config" or "--config"
};

// Finds the config argument among PROGRAM's arguments (--deepspeed_config, --deepspeed or --config, followed by
// the value or joined by '='). Throws LaunchError when none is there.
ProgramArgs find_config_argument(const std::vector<std::string>& args);

// The arguments with the config replaced by `config_path` and each arg_mappings argument set to the config's value
// of its key (replaced where given, appended otherwise), DeepSpeed's ResourceManager behaviour.
std::vector<std::string> experiment_arguments(const ProgramArgs& program, const std::string& config_path,
                                              const Json& config,
                                              const std::vector<std::pair<std::string, std::string>>& arg_mappings);

// Runs argv[0] (a path) with argv in a child process and waits for it; the child gets SIGTERM when this process dies
// (a timeout or Ctrl-C of the autotuner stops the experiment's launcher, which stops its ranks). With log paths its
// stdin is /dev/null and its output goes to them. Returns the wait status; a LaunchError naming `what` when it cannot
// be started.
int run_child(const std::vector<std::string>& argv, const std::string& what, const std::string& stdout_path = "",
              const std::string& stderr_path = "");

// The real runner: `zerotrain launch LAUNCH_WORDS PROGRAM ARGS` per experiment, in a child process whose output goes
// to the experiment's log files.
class ProcessRunner : public ExperimentRunner {
 public:
  struct Options {
    std::string zerotrain_exe;                 // this executable
    std::vector<std::string> launch_words;     // the launch flags as given, without --autotuning
    std::string program;
    ProgramArgs program_args;
    std::vector<std::pair<std::string, std::string>> arg_mappings;
    std::string results_dir, exps_dir;         // absolute
    bool overwrite = true;
    int world_size = 1;
  };
  explicit ProcessRunner(Options options);
  RunOutcome run(const std::string& name, const Json& config, const std::string& output_file) override;
  std::vector<std::string> command_for(const std::string& config_path) const override;
  std::string result_dir(const std::string& name) const override;

 private:
  std::vector<std::string> command(const std::string& config_path, const Json& config) const;
  Options o_;
};

}  // namespace zerotrain::detail
