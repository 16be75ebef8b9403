// The ssh runner: one `ssh HOST 'zerotrain launch --no_ssh --node_rank=K ...'` per node.
//
// [Note: why ssh is the default runner]
// DeepSpeed's default is pdsh. zerotrain defaults to this runner because each node is a process the launcher
// supervises like a local rank: when any node's agent exits non-zero (one of its ranks failed), the launcher
// sees it at once, stops every other node and exits with that code. Under pdsh the launcher learns nothing
// until every node has ended, so a failure on one node leaves the others running until their collectives
// time out. --launcher pdsh remains for DeepSpeed's behaviour and pdsh's fan-out.
//
// Each ssh gets a pipe as stdin that the launcher holds open; the node agent runs with --exit_on_stdin_eof,
// so when the launcher stops the launch (or dies, even by SIGKILL) the pipe closes, ssh forwards the EOF (or
// the connection drops), and the agent stops its ranks. No pkill on the nodes is needed.
#include <fmt/format.h>

#include "launch/runner.h"

namespace zerotrain::detail {
namespace {

class SshRunner final : public Runner {
 public:
  std::string_view name() const override { return "ssh"; }
  std::string_view backend() const override { return "ssh"; }

  void plan(const Job& job, LaunchPlan& plan) const override {
    const auto extra_args = launcher_args(job);
    for (size_t k = 0; k < job.world.size(); ++k) {
      ProcessSpec spec;
      spec.label = fmt::format("node {} ({})", k, job.world[k].host);
      // BatchMode: fail instead of prompting for a password, which would hang a parallel launch.
      spec.argv = {"ssh", "-o", "BatchMode=yes"};
      if (job.opts.ssh_port) {
        spec.argv.push_back("-p");
        spec.argv.push_back(std::to_string(*job.opts.ssh_port));
      }
      spec.argv.insert(spec.argv.end(), extra_args.begin(), extra_args.end());
      spec.argv.push_back(job.world[k].host);
      spec.argv.push_back(node_agent_script(job, fmt::format("--node_rank={}", k), {"--exit_on_stdin_eof"}));
      spec.env = job.ctx.env;
      spec.stdin_mode = StdinMode::kPipe;
      plan.processes.push_back(std::move(spec));
    }
  }
};

}  // namespace

std::unique_ptr<Runner> make_ssh_runner() { return std::make_unique<SshRunner>(); }

}  // namespace zerotrain::detail
