// The Slurm runner: srun starts every rank (as `zerotrain launch --from_launcher=slurm`, which sets RANK etc.
// from SLURM_PROCID, SLURM_LOCALID, ... and execs PROGRAM).
//
// The variables to forward are set in srun's own environment and passed with --export=ALL, instead of
// DeepSpeed's --export=ALL,K=V,... (a value with a comma cannot be written there). With a hostfile, srun gets
// its hosts as --nodelist; without one it places the ranks in the allocation (--nodes, --ntasks-per-node).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "launch/runner.h"

namespace zerotrain::detail {
namespace {

class SlurmRunner final : public Runner {
 public:
  std::string_view name() const override { return "slurm"; }
  std::string_view backend() const override { return "srun"; }

  void plan(const Job& job, LaunchPlan& plan) const override {
    std::vector<std::string> argv = {"srun", "-n", std::to_string(world_size(job.world)), "--nodes",
                                     std::to_string(job.world.size())};
    bool uniform = true;
    std::vector<std::string> hosts;
    for (const auto& node : job.world) {
      uniform = uniform && node.slots.size() == job.world.front().slots.size();
      hosts.push_back(node.host);
    }
    if (uniform) {
      argv.push_back("--ntasks-per-node");
      argv.push_back(std::to_string(job.world.front().slots.size()));
    }
    if (job.world_from_hostfile) {
      argv.push_back("--nodelist");
      argv.push_back(fmt::format("{}", fmt::join(hosts, ",")));
    }
    const auto extra_args = launcher_args(job);
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    argv.push_back("--export=ALL");
    // Slurm orders the nodes itself, so the world info's per-node slots cannot be mapped onto them.
    const auto helper = rank_helper_command(job, "slurm", /*with_world_info=*/false);
    argv.insert(argv.end(), helper.begin(), helper.end());
    Environment env = job.ctx.env;
    for (const auto& [k, v] : job.exports) env[k] = v;
    plan.processes.push_back({"srun", std::move(argv), std::move(env), {}, {}, StdinMode::kInherit});
  }
};

}  // namespace

std::unique_ptr<Runner> make_slurm_runner() { return std::make_unique<SlurmRunner>(); }

}  // namespace zerotrain::detail
