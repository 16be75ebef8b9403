#include "launch/runner.h"

#include <fmt/format.h>

#include "launch/error.h"
#include "launch/rank_command.h"
#include "launch/shell.h"
#include "launch/world_info.h"

namespace zerotrain::detail {

std::unique_ptr<Runner> make_ssh_runner();
std::unique_ptr<Runner> make_pdsh_runner();
std::unique_ptr<Runner> make_openmpi_runner();
std::unique_ptr<Runner> make_mpich_runner();
std::unique_ptr<Runner> make_slurm_runner();

std::unique_ptr<Runner> make_runner(LauncherKind kind) {
  switch (kind) {
    case LauncherKind::kPdsh: return make_pdsh_runner();
    case LauncherKind::kSsh: return make_ssh_runner();
    case LauncherKind::kOpenMpi: return make_openmpi_runner();
    case LauncherKind::kMpich: return make_mpich_runner();
    case LauncherKind::kSlurm: return make_slurm_runner();
  }
  return nullptr;
}

std::vector<std::string> launcher_args(const Job& job) {
  return shell_split(job.opts.launcher_args, "--launcher_args");
}

std::string node_agent_script(const Job& job, const std::string& node_flag, const std::vector<std::string>& extra) {
  std::vector<std::string> agent = {job.ctx.self_exe,
                                    "launch",
                                    "--no_ssh",
                                    "--world_info=" + encode_world_info(job.world),
                                    fmt::format("--master_port={}", job.rdzv.master_port),
                                    node_flag,
                                    "--master_addr=" + job.rdzv.master_addr};
  for (auto& f : forwarded_rank_flags(job.opts, job.ctx.pid)) agent.push_back(std::move(f));
  agent.insert(agent.end(), extra.begin(), extra.end());
  agent.push_back(job.opts.program);
  agent.insert(agent.end(), job.opts.program_args.begin(), job.opts.program_args.end());

  std::string script = "cd " + shell_quote(job.ctx.cwd) + " && ";
  if (!job.exports.empty()) {
    script += "export";
    for (const auto& [k, v] : job.exports) script += " " + k + "=" + shell_quote(v);
    script += " && ";
  }
  return script + "exec " + shell_join(agent);
}

std::vector<std::string> rank_helper_command(const Job& job, std::string_view source, bool with_world_info) {
  std::vector<std::string> argv = {job.ctx.self_exe, "launch", fmt::format("--from_launcher={}", source)};
  if (with_world_info) argv.push_back("--world_info=" + encode_world_info(job.world));
  argv.push_back("--master_addr=" + job.rdzv.master_addr);
  argv.push_back(fmt::format("--master_port={}", job.rdzv.master_port));
  if (job.opts.bind_cores_to_rank || !job.opts.bind_core_list.empty()) {
    throw LaunchError(fmt::format("--bind_cores_to_rank with --launcher {}: not supported; bind through the "
                                  "launcher's own options in --launcher_args (e.g. mpirun --bind-to core)",
                                  source));
  }
  for (auto& f : forwarded_rank_flags(job.opts, job.ctx.pid)) argv.push_back(std::move(f));
  argv.push_back(job.opts.program);
  argv.insert(argv.end(), job.opts.program_args.begin(), job.opts.program_args.end());
  return argv;
}

}  // namespace zerotrain::detail
