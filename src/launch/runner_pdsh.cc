// The pdsh runner (DeepSpeed's default): one `pdsh -w HOSTS 'zerotrain launch --no_ssh --node_name=%h ...'`.
//
// pdsh replaces %h with each target's host name, and the node agent finds its node rank by that name in the
// world info. (DeepSpeed passes pdsh's %n, the target's index in pdsh's own host list, which pdsh sorts: with
// a hostfile not in sorted order, node ranks would not match the world info.) Any other '%' is doubled so
// pdsh leaves it alone. pdsh does not forward stdin, so stopping runs a second pdsh that sends SIGTERM to the
// agents, found by their unique --world_info/--master_port words (as DeepSpeed's pkill command does).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "launch/runner.h"
#include "launch/shell.h"
#include "launch/world_info.h"

namespace zerotrain::detail {
namespace {

// DeepSpeed's PDSH_MAX_FAN_OUT: connect to up to this many nodes at once.
constexpr int kPdshFanOut = 1024;

std::string escape_percent(std::string_view s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == '%') out += '%';
  }
  return out;
}

class PdshRunner final : public Runner {
 public:
  std::string_view name() const override { return "pdsh"; }
  std::string_view backend() const override { return "pdsh"; }

  void plan(const Job& job, LaunchPlan& plan) const override {
    std::vector<std::string> hosts;
    for (const auto& node : job.world) hosts.push_back(node.host);
    std::vector<std::string> pdsh = {"pdsh", "-S", "-f", std::to_string(kPdshFanOut), "-w",
                                     fmt::format("{}", fmt::join(hosts, ","))};
    const auto extra_args = launcher_args(job);
    pdsh.insert(pdsh.end(), extra_args.begin(), extra_args.end());

    // '\x01' marks where %h goes; every '%' the user wrote is escaped first.
    std::string script = escape_percent(node_agent_script(job, "--node_name=\x01", {}));
    script.replace(script.find('\x01'), 1, "%h");

    Environment env = job.ctx.env;
    env["PDSH_RCMD_TYPE"] = "ssh";
    if (job.opts.ssh_port) {
      const auto it = env.find("PDSH_SSH_ARGS_APPEND");
      env["PDSH_SSH_ARGS_APPEND"] =
          fmt::format("{}-p {}", it == env.end() ? "" : it->second + " ", *job.opts.ssh_port);
    }
    ProcessSpec spec;
    spec.label = "pdsh";
    spec.argv = pdsh;
    spec.argv.push_back(script);
    spec.env = env;
    spec.stdin_mode = StdinMode::kNull;
    plan.processes.push_back(std::move(spec));

    // "[ ]" matches the space after the port in the agents' command lines but not in this command's own
    // shell on the node, so pkill does not kill the shell that runs it.
    const std::string pattern = fmt::format("--world_info={} --master_port={}[ ]", encode_world_info(job.world),
                                            job.rdzv.master_port);
    plan.supervisor.stop_command = pdsh;
    plan.supervisor.stop_command.push_back("pkill -TERM -f -- " + shell_quote(pattern));
    plan.supervisor.stop_command_env = env;
  }
};

}  // namespace

std::unique_ptr<Runner> make_pdsh_runner() { return std::make_unique<PdshRunner>(); }

}  // namespace zerotrain::detail
