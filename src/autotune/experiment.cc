#include "autotune/experiment.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "autotune/search_space.h"
#include "config/config_data.h"
#include "launch/error.h"
#include "launch/shell.h"
#include "launch/text_file.h"

namespace zerotrain::detail {
namespace {

const char* const kConfigFlags[] = {"--deepspeed_config", "--deepspeed", "--config"};

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw LaunchError(fmt::format("autotuning: cannot create directory {}: {}", path, ec.message()));
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// The config's value at a dotted key, as a command-line word; nullopt when absent.
std::optional<std::string> config_word(const Json& config, const std::string& dotted) {
  const Json* node = find_path(config, dotted);
  if (node == nullptr) return std::nullopt;
  if (node->is_string()) return node->get<std::string>();
  if (node->is_number_integer() || node->is_number_unsigned()) return std::to_string(node->get<int64_t>());
  if (node->is_boolean()) return node->get<bool>() ? "true" : "false";
  return node->dump();
}

// The last line of a log that reads like an error, else its last non-blank line.
std::string last_error_line(const std::string& log) {
  std::string last, last_error;
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    std::string line = log.substr(start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string::npos) {
      last = line;
      if (line.find("rror") != std::string::npos || line.find("out of memory") != std::string::npos) last_error = line;
    }
    start = end + 1;
  }
  std::string out = last_error.empty() ? last : last_error;
  if (out.size() > 300) out = out.substr(0, 300) + "...";
  return out;
}

}  // namespace

int run_child(const std::vector<std::string>& argv, const std::string& what, const std::string& stdout_path,
              const std::string& stderr_path) {
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw LaunchError(fmt::format("autotuning: cannot start {}: {}", what, std::strerror(errno)));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the autotuner died before prctl took effect
    if (!stdout_path.empty()) {
      const int in = ::open("/dev/null", O_RDONLY);
      const int so = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int se = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (in < 0 || so < 0 || se < 0) ::_exit(126);
      ::dup2(in, 0);
      ::dup2(so, 1);
      ::dup2(se, 2);
    }
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    std::fprintf(stderr, "cannot execute %s: %s\n", cargv[0], std::strerror(errno));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw LaunchError(fmt::format("autotuning: waiting for {}: {}", what, std::strerror(errno)));
  }
  return status;
}

ProgramArgs find_config_argument(const std::vector<std::string>& args) {
  for (const char* flag : kConfigFlags) {
    const std::string f(flag);
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i] == f && i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) return {args, i + 1, false, f};
      if (args[i].rfind(f + "=", 0) == 0) return {args, i, true, f};
    }
  }
  throw LaunchError(
      "--autotuning: PROGRAM's arguments name no DeepSpeed config; allowed: --deepspeed FILE, --deepspeed_config "
      "FILE or --config FILE (zerotrain train), the config the experiments vary");
}

std::vector<std::string> experiment_arguments(const ProgramArgs& program, const std::string& config_path,
                                              const Json& config,
                                              const std::vector<std::pair<std::string, std::string>>& arg_mappings) {
  std::vector<std::string> args = program.args;
  args[program.config_index] = program.config_joined ? program.config_flag + "=" + config_path : config_path;
  for (const auto& [key, flag] : arg_mappings) {
    const auto value = config_word(config, key);
    if (!value) continue;
    bool found = false;
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i] == flag && i + 1 < args.size()) {
        args[i + 1] = *value;
        found = true;
      } else if (args[i].rfind(flag + "=", 0) == 0) {
        args[i] = flag + "=" + *value;
        found = true;
      }
    }
    if (!found) args.insert(args.end(), {flag, *value});
  }
  return args;
}

ProcessRunner::ProcessRunner(Options options) : o_(std::move(options)) {
  make_dirs(o_.results_dir);
  make_dirs(o_.exps_dir);
}

std::string ProcessRunner::result_dir(const std::string& name) const { return o_.results_dir + "/" + name; }

std::vector<std::string> ProcessRunner::command(const std::string& config_path, const Json& config) const {
  std::vector<std::string> argv{o_.zerotrain_exe, "launch"};
  argv.insert(argv.end(), o_.launch_words.begin(), o_.launch_words.end());
  argv.push_back(o_.program);
  const auto args = experiment_arguments(o_.program_args, config_path, config, o_.arg_mappings);
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::vector<std::string> ProcessRunner::command_for(const std::string& config_path) const {
  const auto text = read_text_file(config_path, "autotuning: config");
  return command(config_path, text ? Json::parse(*text) : Json::object());
}

RunOutcome ProcessRunner::run(const std::string& name, const Json& config, const std::string& output_file) {
  RunOutcome out;
  out.dir = result_dir(name);
  make_dirs(out.dir);
  if (!o_.overwrite && exists(output_file)) {
    out.ok = out.reused = true;
    return out;
  }
  ::unlink(output_file.c_str());
  const std::string config_path = out.dir + "/ds_config.json";
  write_text_file(config_path, config.dump(2) + "\n", "autotuning: experiment config");
  const auto argv = command(config_path, config);
  write_text_file(out.dir + "/cmd.txt", shell_join(argv) + "\n", "autotuning: experiment command");
  const Json exp = {{"name", name}, {"ds_config", config}, {"num_ranks", o_.world_size}, {"result_dir", out.dir}};
  write_text_file(o_.exps_dir + "/" + name + ".json", exp.dump(2) + "\n", "autotuning: experiment description");
  write_text_file(out.dir + "/exp.json", exp.dump(2) + "\n", "autotuning: experiment description");

  const std::string out_log = out.dir + "/stdout.log", err_log = out.dir + "/stderr.log";
  const int status = run_child(argv, "experiment " + name, out_log, err_log);
  const bool wrote = exists(output_file);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && wrote) {
    out.ok = true;
    return out;
  }
  std::string why = WIFEXITED(status)    ? fmt::format("exit status {}", WEXITSTATUS(status))
                    : WIFSIGNALED(status) ? fmt::format("killed by signal {}", WTERMSIG(status))
                                          : "ended abnormally";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) why = "exit status 0 without writing " + output_file;
  const auto log = read_text_file(err_log, "autotuning: experiment log");
  const std::string line = log ? last_error_line(*log) : "";
  out.error = line.empty() ? why : why + ": " + line;
  return out;
}

}  // namespace zerotrain::detail
