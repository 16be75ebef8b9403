// `zerotrain launch [FLAGS] PROGRAM [ARGS...]`: starts PROGRAM once per rank on this machine or on the nodes of a
// hostfile, with DeepSpeed's launcher flags and the environment torchrun and DeepSpeed set. See docs/launcher.md.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <memory>
#include <optional>

#include "autotune/autotune.h"
#include "commands.h"
#include "launch/context.h"
#include "launch/error.h"
#include "launch/launch.h"

namespace zerotrain::cli {
namespace {

// DeepSpeed runner flags zerotrain does not implement: given, they are an error rather than ignored.
struct Unsupported {
  std::string venv_script;
  bool elastic_training = false;
  bool no_ssh_check = false;  // accepted and ignored: zerotrain runs no ssh check
  int min_elastic_nodes = -1, max_elastic_nodes = -1;
};

}  // namespace

void add_launch_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("launch", "Start PROGRAM on every rank (DeepSpeed's launcher flags)");
  auto opts = std::make_shared<detail::LaunchOptions>();
  auto unsupported = std::make_shared<Unsupported>();
  auto launcher = std::make_shared<std::string>();
  auto from_launcher = std::make_shared<std::string>();
  auto log_level = std::make_shared<std::string>();
  auto ssh_port = std::make_shared<int>(0);
  auto save_pid_as = std::make_shared<int>(0);
  auto node_rank = std::make_shared<int>(-1);
  auto autotuning = std::make_shared<std::string>();

  cmd->footer(
      "PROGRAM [ARGS...]: the rest of the command line, passed to every rank (put launch flags before PROGRAM).\n"
      "A PROGRAM ending in .py runs as 'python3 -u PROGRAM'; anything else is executed directly. Each rank gets\n"
      "RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, CROSS_RANK, CROSS_SIZE and\n"
      "CUDA_VISIBLE_DEVICES, and --local_rank=N before ARGS. See docs/launcher.md.");
  auto* hostfile = cmd->add_option("-H,--hostfile", opts->hostfile,
                                   "Hostfile ('HOST slots=N' lines); when the default is missing, this machine only")
                       ->capture_default_str();
  cmd->add_option("-i,--include", opts->include, "Slots to use: HOST[:SLOT,...][@HOST...], e.g. worker-0@worker-1:0,2");
  cmd->add_option("-e,--exclude", opts->exclude, "Slots not to use, same syntax as --include");
  cmd->add_option("--num_nodes", opts->num_nodes, "Use the first N hosts of the hostfile");
  cmd->add_option("--num_gpus,--num_accelerators", opts->num_gpus,
                  "Ranks per node, on slots 0..N-1 (on a machine without GPUs: N CPU ranks)");
  cmd->add_option("--master_addr", opts->master_addr,
                  "Address of rank 0's node (default: 127.0.0.1 on one node, else the first host)");
  cmd->add_option("--master_port", opts->master_port, "Rendezvous port")->capture_default_str();
  cmd->add_option("--launcher", *launcher,
                  "Runner: ssh (default for several nodes), pdsh, openmpi, mpich, slurm");
  cmd->add_option("--launcher_args", opts->launcher_args, "Extra arguments for ssh/pdsh/mpirun/srun, one string");
  auto* ssh_port_opt = cmd->add_option("--ssh_port", *ssh_port, "ssh port of the nodes (ssh and pdsh runners)");
  cmd->add_flag("--no_ssh", opts->no_ssh, "Run only this node's ranks (with --node_rank); start each node yourself");
  cmd->add_flag("--no_ssh_check", unsupported->no_ssh_check, "Accepted for DeepSpeed compatibility (zerotrain runs no ssh check)");
  auto* node_rank_opt = cmd->add_option("--node_rank", *node_rank, "This node's rank, with --no_ssh");
  cmd->add_option("--node_name", opts->node_name, "This node's host name in the hostfile, with --no_ssh");
  cmd->add_flag("--force_multi", opts->force_multi, "Use the multi-node runner even for one node");
  cmd->add_flag("--module", opts->module, "Run PROGRAM as a Python module (python3 -u -m PROGRAM)");
  cmd->add_flag("--no_python", opts->no_python, "Execute PROGRAM directly, even a .py file");
  cmd->add_flag("--no_local_rank", opts->no_local_rank, "Do not pass --local_rank=N to PROGRAM");
  cmd->add_flag("--bind_cores_to_rank", opts->bind_cores_to_rank,
                "Give each local rank its own share of the cores (sets OMP_NUM_THREADS)");
  cmd->add_option("--bind_core_list", opts->bind_core_list, "Cores to share out, e.g. 0-15,32-47");
  cmd->add_flag("--save_pid", opts->save_pid, "Write this launcher's pid to /tmp/<pid>.deepspeed while it runs");
  cmd->add_option("--enable_each_rank_log", opts->each_rank_log_dir,
                  "Write each rank's stdout and stderr to DIR/<time>_rank<R>.log");
  cmd->add_option("--terminate_timeout", opts->terminate_timeout_s,
                  "Seconds between SIGTERM and SIGKILL when stopping the ranks")
      ->capture_default_str();
  cmd->add_option("--world_info", opts->world_info, "Nodes and slots as DeepSpeed's launch.py takes them (base64)");
  cmd->add_flag("-q,--quiet", opts->quiet, "Print only errors");
  cmd->add_option("--log_level", *log_level, "debug, info, warning, error or critical (error and above: --quiet)");
  cmd->add_option("--autotuning", *autotuning,
                  "tune: run PROGRAM once per candidate config and write the best to autotuning_results/ "
                  "(docs/autotuning.md); run: then train with it");
  cmd->add_flag("--elastic_training", unsupported->elastic_training, "Not supported yet");
  cmd->add_option("--min_elastic_nodes", unsupported->min_elastic_nodes, "Not supported yet");
  cmd->add_option("--max_elastic_nodes", unsupported->max_elastic_nodes, "Not supported yet");
  cmd->add_option("--venv_script", unsupported->venv_script, "Not supported yet");
  // Set by zerotrain's own runners on the nodes; hidden from --help.
  auto* save_pid_as_opt = cmd->add_option("--save_pid_as", *save_pid_as)->group("");
  cmd->add_flag("--exit_on_stdin_eof", opts->exit_on_stdin_eof)->group("");
  cmd->add_option("--from_launcher", *from_launcher)->group("");
  // Everything from the first word that is not a flag of ours on belongs to PROGRAM.
  cmd->prefix_command();

  cmd->callback([=, &exit_code] {
    std::optional<detail::AutotuneMode> autotune_mode;
    if (!autotuning->empty()) autotune_mode = detail::parse_autotune_mode(*autotuning);
    if (unsupported->elastic_training || unsupported->min_elastic_nodes != -1 ||
        unsupported->max_elastic_nodes != -1) {
      throw detail::LaunchError("--elastic_training/--min_elastic_nodes/--max_elastic_nodes: elastic training is "
                                "not supported yet");
    }
    if (!unsupported->venv_script.empty()) {
      throw detail::LaunchError(fmt::format("--venv_script {}: not supported yet; activate the environment in the "
                                            "nodes' shell startup files or use --launcher_args",
                                            unsupported->venv_script));
    }
    if (!log_level->empty()) {
      if (*log_level == "error" || *log_level == "critical") {
        opts->quiet = true;
      } else if (*log_level != "debug" && *log_level != "info" && *log_level != "warning") {
        throw detail::LaunchError(fmt::format(
            "--log_level {}: use one of debug, info, warning, error, critical", *log_level));
      }
    }
    opts->hostfile_given = hostfile->count() > 0;
    if (!launcher->empty()) opts->launcher = detail::parse_launcher(*launcher);
    if (ssh_port_opt->count() > 0) opts->ssh_port = *ssh_port;
    if (save_pid_as_opt->count() > 0) opts->save_pid_as = *save_pid_as;
    if (node_rank_opt->count() > 0) opts->node_rank = *node_rank;
    if (!from_launcher->empty()) {
      if (*from_launcher == "openmpi") {
        opts->from_launcher = detail::RankSource::kOpenMpi;
      } else if (*from_launcher == "mpich") {
        opts->from_launcher = detail::RankSource::kMpich;
      } else if (*from_launcher == "slurm") {
        opts->from_launcher = detail::RankSource::kSlurm;
      } else {
        throw detail::LaunchError(
            fmt::format("--from_launcher {}: use one of openmpi, mpich, slurm", *from_launcher));
      }
    }
    auto rest = cmd->remaining();
    if (!rest.empty()) {
      opts->program = rest.front();
      opts->program_args.assign(rest.begin() + 1, rest.end());
    }
    if (autotune_mode) {
      // The launch flags as given, less --autotuning: each experiment is `zerotrain launch FLAGS PROGRAM ARGS'`.
      const auto& line = command_line();
      std::vector<std::string> words(line.begin() + std::min<size_t>(2, line.size()),
                                     line.end() - static_cast<std::ptrdiff_t>(std::min(rest.size(), line.size())));
      std::vector<std::string> launch_words;
      for (size_t i = 0; i < words.size(); ++i) {
        if (words[i] == "--autotuning") {
          ++i;
          continue;
        }
        if (words[i].rfind("--autotuning=", 0) == 0) continue;
        launch_words.push_back(words[i]);
      }
      exit_code = detail::autotune(*opts, launch_words, *autotune_mode, detail::LaunchContext::current().self_exe);
      return;
    }
    exit_code = detail::launch(*opts);
  });
}

}  // namespace zerotrain::cli
