// The local runner: one process per slot of this node.
#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "launch/cpu_binding.h"
#include "launch/rank_command.h"
#include "launch/runner.h"

namespace zerotrain::detail {
namespace {

class LocalRunner final : public Runner {
 public:
  std::string_view name() const override { return "local"; }
  std::string_view backend() const override { return ""; }

  void plan(const Job& job, LaunchPlan& plan) const override {
    const NodeSlots& node = job.world.at(static_cast<size_t>(job.node_rank));
    const int num_local = static_cast<int>(node.slots.size());
    // More ranks than GPUs is legitimate for CPU programs (tests, CPU collectives), so this only warns.
    if (job.ctx.gpu_count > 0 && node.slots.back() >= job.ctx.gpu_count) {
      plan.notes.push_back(fmt::format("warning: node {} ({}) runs ranks on slots {} but this machine has {} GPU{} "
                                       "(0-{}): ranks on the other slots see no GPU",
                                       job.node_rank, node.host, fmt::join(node.slots, ","), job.ctx.gpu_count,
                                       job.ctx.gpu_count == 1 ? "" : "s", job.ctx.gpu_count - 1));
    }
    std::vector<int> cores;
    if (job.opts.bind_cores_to_rank) {
      cores = job.opts.bind_core_list.empty() ? allowed_cpus() : parse_core_list(job.opts.bind_core_list);
    }
    // Every rank's OpenMP and ATen pools default to all of the machine's cores: 8 ranks on 16 cores ran 8 x 16
    // spinning threads, and a CPU-side step took minutes instead of seconds. Unless the user set it (or binds cores,
    // below), each rank gets its share of the cores this launcher may use, as torchrun sets 1.
    const bool share_threads = !job.opts.bind_cores_to_rank && num_local > 1 && job.ctx.cpu_count > 0 &&
                               job.ctx.env.find("OMP_NUM_THREADS") == job.ctx.env.end();
    const int threads_per_rank = std::max(1, job.ctx.cpu_count / std::max(1, num_local));
    if (share_threads) {
      plan.notes.push_back(fmt::format("OMP_NUM_THREADS is not set: each of the {} ranks on this node gets {} ({} cores / "
                                       "{} ranks); set OMP_NUM_THREADS to choose another value",
                                       num_local, threads_per_rank, job.ctx.cpu_count, num_local));
    }
    for (int i = 0; i < num_local; ++i) {
      ProcessSpec spec;
      Environment env = job.ctx.env;
      for (auto& [k, v] : rank_environment(job.world, job.node_rank, i, job.rdzv)) env[k] = v;
      const int rank = std::stoi(env["RANK"]);
      if (share_threads) env["OMP_NUM_THREADS"] = std::to_string(threads_per_rank);
      if (job.opts.bind_cores_to_rank) {
        spec.cpus = cores_for_rank(cores, num_local, i);
        env["OMP_NUM_THREADS"] = std::to_string(spec.cpus.size());
      }
      spec.label = fmt::format("rank {}", rank);
      spec.argv = rank_command(job.opts, i);
      spec.env = std::move(env);
      if (!job.opts.each_rank_log_dir.empty()) {
        spec.log_path = fmt::format("{}/{}_rank{}.log", job.opts.each_rank_log_dir, job.ctx.timestamp, rank);
      }
      // A node agent watches its own stdin (the ssh channel); its ranks must not read from it.
      spec.stdin_mode = job.opts.exit_on_stdin_eof ? StdinMode::kNull : StdinMode::kInherit;
      plan.processes.push_back(std::move(spec));
    }
  }
};

}  // namespace

std::unique_ptr<Runner> make_local_runner() { return std::make_unique<LocalRunner>(); }

}  // namespace zerotrain::detail
