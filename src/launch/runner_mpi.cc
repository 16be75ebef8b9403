// The MPI runners: mpirun starts every rank (as `zerotrain launch --from_launcher=...`, which sets RANK etc.
// from the MPI variables and execs PROGRAM). zerotrain's C++ programs use MPI for CPU collectives, so
// `--launcher openmpi` also runs single-node CPU jobs.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "launch/error.h"
#include "launch/runner.h"

namespace zerotrain::detail {
namespace {

// OpenMPI's mpirun with a hostfile zerotrain writes from the selected resources, so --include, --exclude,
// --num_nodes and --num_gpus work (DeepSpeed passes the user's hostfile and refuses those flags). Ranks fill
// the nodes in hostfile order (mpirun's default mapping by slot), which is the world info's rank order.
class OpenMpiRunner final : public Runner {
 public:
  std::string_view name() const override { return "openmpi"; }
  std::string_view backend() const override { return "mpirun"; }

  void plan(const Job& job, LaunchPlan& plan) const override {
    FileToWrite hostfile{job.ctx.scratch_dir + "/hostfile", ""};
    for (const auto& node : job.world) hostfile.text += fmt::format("{} slots={}\n", node.host, node.slots.size());
    std::vector<std::string> argv = {"mpirun", "-n", std::to_string(world_size(job.world)), "-hostfile",
                                     hostfile.path,
                                     // DeepSpeed's choice: openib is deprecated and warns on machines without it.
                                     "--mca", "btl", "^openib"};
    // mpirun refuses to run as root without this (the project's machines run as root).
    if (job.ctx.is_root) argv.push_back("--allow-run-as-root");
    const auto extra_args = launcher_args(job);
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    Environment exports = job.exports;
    // DeepSpeed's OpenMPIRunner adds UCX_TLS=tcp unless the launcher's environment sets it.
    exports.emplace("UCX_TLS", "tcp");
    for (const auto& [k, v] : exports) {
      argv.push_back("-x");
      argv.push_back(k + "=" + v);
    }
    const auto helper = rank_helper_command(job, "openmpi", /*with_world_info=*/true);
    argv.insert(argv.end(), helper.begin(), helper.end());
    plan.scratch_dir = job.ctx.scratch_dir;
    plan.files.push_back(std::move(hostfile));
    plan.processes.push_back({"mpirun", std::move(argv), job.ctx.env, {}, {}, StdinMode::kInherit});
  }
};

// MPICH (Hydra) mpirun: -ppn needs the same number of ranks on every node, as in DeepSpeed's MPICHRunner.
class MpichRunner final : public Runner {
 public:
  std::string_view name() const override { return "mpich"; }
  std::string_view backend() const override { return "mpirun"; }

  void plan(const Job& job, LaunchPlan& plan) const override {
    const size_t per_node = job.world.front().slots.size();
    std::vector<std::string> hosts;
    for (const auto& node : job.world) {
      if (node.slots.size() != per_node) {
        throw LaunchError(fmt::format("--launcher mpich: every node needs the same number of ranks, but {} has {} "
                                      "and {} has {}",
                                      job.world.front().host, per_node, node.host, node.slots.size()));
      }
      hosts.push_back(node.host);
    }
    std::vector<std::string> argv = {"mpirun", "-n", std::to_string(world_size(job.world)), "-ppn",
                                     std::to_string(per_node)};
    const auto extra_args = launcher_args(job);
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    for (const auto& [k, v] : job.exports) {
      argv.insert(argv.end(), {"-genv", k, v});
    }
    argv.push_back("-hosts");
    argv.push_back(fmt::format("{}", fmt::join(hosts, ",")));
    const auto helper = rank_helper_command(job, "mpich", /*with_world_info=*/true);
    argv.insert(argv.end(), helper.begin(), helper.end());
    plan.processes.push_back({"mpirun", std::move(argv), job.ctx.env, {}, {}, StdinMode::kInherit});
  }
};

}  // namespace

std::unique_ptr<Runner> make_openmpi_runner() { return std::make_unique<OpenMpiRunner>(); }
std::unique_ptr<Runner> make_mpich_runner() { return std::make_unique<MpichRunner>(); }

}  // namespace zerotrain::detail
