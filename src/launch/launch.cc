#include "launch/launch.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "launch/cpu_binding.h"
#include "launch/devices.h"
#include "launch/error.h"
#include "launch/rank_command.h"
#include "launch/shell.h"
#include "launch/text_file.h"
#include "launch/world_info.h"

extern char** environ;

namespace zerotrain::detail {
namespace {

constexpr std::string_view kLocalHost = "localhost";
constexpr std::string_view kLoopback = "127.0.0.1";

void validate(const LaunchOptions& opts) {
  if (opts.program.empty()) throw LaunchError("no PROGRAM given: zerotrain launch [FLAGS] PROGRAM [ARGS...]");
  if (opts.program.starts_with("-")) {
    throw LaunchError(fmt::format("'{}' is not a zerotrain launch flag (see zerotrain launch --help); flags go "
                                  "before PROGRAM",
                                  opts.program));
  }
  if (opts.num_nodes == 0 || opts.num_nodes < -1) {
    throw LaunchError(fmt::format("--num_nodes {}: must be a positive integer", opts.num_nodes));
  }
  if (opts.num_gpus == 0 || opts.num_gpus < -1) {
    throw LaunchError(fmt::format("--num_gpus {}: must be a positive integer", opts.num_gpus));
  }
  if (opts.master_port < 1 || opts.master_port > 65535) {
    throw LaunchError(fmt::format("--master_port {}: must be in 1-65535", opts.master_port));
  }
  if (opts.node_rank && *opts.node_rank < 0) {
    throw LaunchError(fmt::format("--node_rank {}: must be >= 0", *opts.node_rank));
  }
  if (!(opts.terminate_timeout_s > 0)) {
    throw LaunchError(fmt::format("--terminate_timeout {:g}: must be > 0 seconds", opts.terminate_timeout_s));
  }
  if (opts.module && opts.no_python) {
    throw LaunchError("--module and --no_python: give at most one (--module runs PROGRAM as 'python3 -m PROGRAM')");
  }
  const bool agent = opts.no_ssh || !opts.world_info.empty();
  if ((opts.node_rank || !opts.node_name.empty()) && !agent) {
    throw LaunchError(fmt::format("--node_rank/--node_name select this machine's node with --no_ssh; without "
                                  "--no_ssh the launcher starts every node itself"));
  }
  if (opts.ssh_port && (*opts.ssh_port < 1 || *opts.ssh_port > 65535)) {
    throw LaunchError(fmt::format("--ssh_port {}: must be in 1-65535", *opts.ssh_port));
  }
}

std::string describe_world(const WorldInfo& world) {
  std::vector<std::string> nodes;
  for (const auto& n : world) nodes.push_back(fmt::format("{}:{}", n.host, fmt::join(n.slots, ",")));
  return fmt::format("{}", fmt::join(nodes, " "));
}

// Slurm without a hostfile: the allocation decides the hosts; zerotrain only fixes the counts.
WorldInfo slurm_world(const LaunchOptions& opts, const LaunchContext& ctx) {
  if (!opts.include.empty() || !opts.exclude.empty()) {
    throw LaunchError("--include/--exclude with --launcher slurm need a hostfile (--hostfile) naming the hosts");
  }
  int nodes = opts.num_nodes > 0 ? opts.num_nodes : 1;
  if (opts.num_nodes <= 0) {
    if (const auto it = ctx.env.find("SLURM_NNODES"); it != ctx.env.end()) nodes = std::max(1, std::atoi(it->second.c_str()));
  }
  const int per_node = opts.num_gpus > 0 ? opts.num_gpus : std::max(1, ctx.gpu_count);
  WorldInfo world;
  for (int i = 0; i < nodes; ++i) {
    NodeSlots node{fmt::format("slurm-node-{}", i), {}};
    for (int s = 0; s < per_node; ++s) node.slots.push_back(s);
    world.push_back(std::move(node));
  }
  return world;
}

// The world from the hostfile (or this machine), --include/--exclude, --num_nodes/--num_gpus.
WorldInfo select_world(const LaunchOptions& opts, const LaunchContext& ctx, LaunchPlan& plan) {
  const bool resource_flags = !opts.include.empty() || !opts.exclude.empty();
  if (resource_flags && (opts.num_nodes > 0 || opts.num_gpus > 0)) {
    throw LaunchError("--num_nodes/--num_gpus cannot be combined with --include/--exclude (as in DeepSpeed): "
                      "select slots with one or the other");
  }
  std::optional<ResourcePool> pool = read_hostfile(opts.hostfile);
  if (!pool && opts.hostfile_given) {
    throw LaunchError(fmt::format("--hostfile {}: no such file", opts.hostfile));
  }
  std::string include = opts.include;
  if (!pool) {
    if (opts.num_nodes > 1) {
      throw LaunchError(fmt::format("--num_nodes {}: there is no hostfile ({} does not exist), so this machine is "
                                    "the only node",
                                    opts.num_nodes, opts.hostfile));
    }
    // DeepSpeed: on one node without resource flags, CUDA_VISIBLE_DEVICES selects the slots.
    const auto cvd = ctx.env.find("CUDA_VISIBLE_DEVICES");
    if (cvd != ctx.env.end() && !cvd->second.empty()) {
      if (resource_flags || opts.num_gpus > 0 || opts.num_nodes > 1) {
        plan.notes.push_back(fmt::format("ignoring CUDA_VISIBLE_DEVICES={}: --include/--exclude/--num_gpus given",
                                         cvd->second));
      } else {
        include = fmt::format("{}:{}", kLocalHost, cvd->second);
        plan.notes.push_back(fmt::format("CUDA_VISIBLE_DEVICES={}: using --include {}", cvd->second, include));
      }
    }
    // This machine offers its GPUs, or as many (CPU) ranks as --num_gpus asks for; the local runner warns
    // when ranks outnumber GPUs.
    const int slots = std::max({ctx.gpu_count, opts.num_gpus, 1});
    pool = ResourcePool{{std::string(kLocalHost), slots}};
  }
  WorldInfo world = select_resources(*pool, include, opts.exclude);
  return limit_resources(std::move(world), *pool, opts.num_nodes, opts.num_gpus);
}

int select_node(const LaunchOptions& opts, const WorldInfo& world) {
  if (!opts.node_name.empty()) {
    for (size_t k = 0; k < world.size(); ++k) {
      if (world[k].host == opts.node_name) return static_cast<int>(k);
    }
    throw LaunchError(fmt::format("--node_name {}: not a node of the job ({})", opts.node_name,
                                  describe_world(world)));
  }
  if (opts.node_rank) {
    if (*opts.node_rank >= static_cast<int>(world.size())) {
      throw LaunchError(fmt::format("--node_rank {}: the job has {} node{} (0-{})", *opts.node_rank, world.size(),
                                    world.size() == 1 ? "" : "s", world.size() - 1));
    }
    return *opts.node_rank;
  }
  if (world.size() == 1) return 0;
  throw LaunchError(fmt::format("--no_ssh with {} nodes: give this machine's --node_rank (0-{})", world.size(),
                                world.size() - 1));
}

LaunchPlan plan_rank_exec(const LaunchOptions& opts, const LaunchContext& ctx) {
  if (opts.bind_cores_to_rank) {
    throw LaunchError("--bind_cores_to_rank with --from_launcher: not supported; bind through the launcher");
  }
  const LauncherRank place = launcher_rank(*opts.from_launcher, ctx.env);
  WorldInfo world;
  if (!opts.world_info.empty()) world = decode_world_info(opts.world_info);
  Rendezvous rdzv{opts.master_addr, opts.master_port};
  if (rdzv.master_addr.empty()) {
    if (place.world_size != place.local_world_size) {
      throw LaunchError("--from_launcher on several nodes needs --master_addr (the address of rank 0's node)");
    }
    rdzv.master_addr = kLoopback;
  }
  const bool mappable = *opts.from_launcher != RankSource::kSlurm && !world.empty();
  LaunchPlan plan;
  plan.rdzv = rdzv;
  plan.world = world;
  ProcessSpec spec;
  spec.env = ctx.env;
  for (auto& [k, v] : launcher_rank_environment(place, mappable ? &world : nullptr, rdzv)) spec.env[k] = v;
  spec.label = fmt::format("rank {}", place.rank);
  spec.argv = rank_command(opts, place.local_rank);
  if (!opts.each_rank_log_dir.empty()) {
    plan.log_dir = opts.each_rank_log_dir;
    spec.log_path = fmt::format("{}/{}_rank{}.log", opts.each_rank_log_dir, ctx.timestamp, place.rank);
  }
  plan.processes.push_back(std::move(spec));
  return plan;
}

void make_directories(const std::string& dir, std::string_view what) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec)) {
    throw LaunchError(fmt::format("{} {}: exists and is not a directory", what, dir));
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) throw LaunchError(fmt::format("{} {}: cannot create it: {}", what, dir, ec.message()));
}

// Files of a plan, removed (with their directory, when it was created here) when the launch ends.
class PlanFiles {
 public:
  explicit PlanFiles(const LaunchPlan& plan) {
    if (!plan.scratch_dir.empty()) {
      if (::mkdir(plan.scratch_dir.c_str(), 0700) == 0) {
        dir_ = plan.scratch_dir;
      } else if (errno != EEXIST) {
        throw LaunchError(fmt::format("scratch directory {}: cannot create it: {}", plan.scratch_dir,
                                      std::strerror(errno)));
      }
    }
    for (const auto& f : plan.files) {
      paths_.push_back(f.path);
      write_text_file(f.path, f.text, "launch file");
    }
    if (!plan.pid_file.empty()) {
      const int fd = ::open(plan.pid_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) {
        throw LaunchError(fmt::format("--save_pid: cannot create {}: {}", plan.pid_file, std::strerror(errno)));
      }
      ::close(fd);
      paths_.push_back(plan.pid_file);
      write_text_file(plan.pid_file, std::to_string(::getpid()), "--save_pid file");
    }
  }
  ~PlanFiles() {
    for (const auto& p : paths_) ::unlink(p.c_str());
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  PlanFiles(const PlanFiles&) = delete;
  PlanFiles& operator=(const PlanFiles&) = delete;

 private:
  std::vector<std::string> paths_;
  std::string dir_;
};

[[noreturn]] void exec_rank(const ProcessSpec& spec) {
  const auto path_it = spec.env.find("PATH");
  const auto program = find_program(spec.argv[0], path_it == spec.env.end() ? "" : path_it->second);
  if (!program) throw LaunchError(fmt::format("{}: program '{}' is not found", spec.label, spec.argv[0]));
  if (!spec.log_path.empty()) {
    const int fd = ::open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
      throw LaunchError(fmt::format("{}: cannot open log file {}: {}", spec.label, spec.log_path,
                                    std::strerror(errno)));
    }
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const auto env_strings = environment_strings(spec.env);
  std::vector<char*> envp;
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  ::execve(program->c_str(), argv.data(), envp.data());
  throw LaunchError(fmt::format("{}: cannot execute {}: {}", spec.label, *program, std::strerror(errno)));
}

}  // namespace

LaunchContext LaunchContext::current() {
  LaunchContext ctx;
  ctx.env = environment_from(environ);
  char buf[PATH_MAX];
  if (::getcwd(buf, sizeof(buf))) ctx.cwd = buf;
  if (const auto it = ctx.env.find("HOME"); it != ctx.env.end()) ctx.home = it->second;
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) ctx.self_exe.assign(buf, static_cast<size_t>(n));
  ctx.pid = static_cast<int>(::getpid());
  const auto tmp = ctx.env.find("TMPDIR");
  ctx.scratch_dir = fmt::format("{}/zerotrain-launch-{}", tmp == ctx.env.end() ? "/tmp" : tmp->second, ctx.pid);
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &local);
  ctx.timestamp = stamp;
  ctx.gpu_count = count_local_gpus();
  ctx.cpu_count = static_cast<int>(allowed_cpus().size());
  ctx.is_root = ::geteuid() == 0;
  return ctx;
}

LaunchPlan plan_launch(const LaunchOptions& opts, const LaunchContext& ctx) {
  validate(opts);
  if (opts.from_launcher) return plan_rank_exec(opts, ctx);

  LaunchPlan plan;
  const bool agent = opts.no_ssh || !opts.world_info.empty();
  std::error_code ec;
  const bool hostfile_exists = std::filesystem::exists(opts.hostfile, ec);
  bool from_hostfile = true;
  WorldInfo world;
  if (!opts.world_info.empty()) {
    if (!opts.include.empty() || !opts.exclude.empty() || opts.num_nodes > 0 || opts.num_gpus > 0) {
      throw LaunchError("--world_info fixes the nodes and slots; it cannot be combined with --include, --exclude, "
                        "--num_nodes or --num_gpus");
    }
    world = decode_world_info(opts.world_info);
  } else if (opts.launcher == LauncherKind::kSlurm && !agent && !hostfile_exists && !opts.hostfile_given) {
    world = slurm_world(opts, ctx);
    from_hostfile = false;
  } else {
    world = select_world(opts, ctx, plan);
  }

  std::unique_ptr<Runner> runner;
  int node_rank = 0;
  const bool mpi_like = opts.launcher == LauncherKind::kOpenMpi || opts.launcher == LauncherKind::kMpich ||
                        opts.launcher == LauncherKind::kSlurm;
  const bool multi = opts.force_multi || world.size() > 1;
  if (agent) {
    node_rank = select_node(opts, world);
    runner = make_local_runner();
  } else if (mpi_like || multi) {
    // zerotrain's default is ssh, not DeepSpeed's pdsh: see [Note: why ssh is the default runner].
    runner = make_runner(opts.launcher.value_or(LauncherKind::kSsh));
  } else {
    runner = make_local_runner();
    if (world[0].host != kLocalHost && world[0].host != kLoopback) {
      plan.notes.push_back(fmt::format("one node ({}) in the hostfile: running its ranks on this machine, as "
                                       "DeepSpeed does (--force_multi starts them there)",
                                       world[0].host));
    }
  }
  if (!runner->backend().empty()) {
    const auto path = ctx.env.find("PATH");
    if (!find_program(runner->backend(), path == ctx.env.end() ? "" : path->second)) {
      throw LaunchError(fmt::format("--launcher {}: {} is not installed (not on PATH){}", runner->name(),
                                    runner->backend(),
                                    runner->name() == "pdsh" ? "; --launcher ssh needs only ssh" : ""));
    }
  }

  Rendezvous rdzv{opts.master_addr, opts.master_port};
  if (rdzv.master_addr.empty()) {
    if (world.size() == 1 && !opts.force_multi) {
      rdzv.master_addr = kLoopback;
    } else if (from_hostfile) {
      // DeepSpeed asks the first node for `hostname -I` over ssh; zerotrain uses its name from the hostfile.
      rdzv.master_addr = world[0].host;
    } else {
      throw LaunchError("--launcher slurm on several nodes without a hostfile: give --master_addr (the address of "
                        "the allocation's first node)");
    }
  }
  Environment exports;
  if (runner->name() != "local") exports = multinode_exports(ctx.env, ctx.cwd, ctx.home);

  const Job job{opts, ctx, world, rdzv, exports, node_rank, from_hostfile};
  runner->plan(job, plan);
  plan.runner = std::string(runner->name());
  plan.world = world;
  plan.rdzv = rdzv;
  plan.node_rank = node_rank;
  plan.supervisor.terminate_timeout_s = opts.terminate_timeout_s;
  plan.supervisor.stop_on_stdin_eof = opts.exit_on_stdin_eof;
  if (plan.runner == "local") {
    plan.log_dir = opts.each_rank_log_dir;
    if (opts.save_pid || opts.save_pid_as) {
      plan.pid_file = fmt::format("/tmp/{}.deepspeed", opts.save_pid_as.value_or(ctx.pid));
    }
    plan.notes.push_back(fmt::format("node {} of {} ({}): {} rank{} of world size {}, master {}:{}", node_rank,
                                     world.size(), world[static_cast<size_t>(node_rank)].host,
                                     plan.processes.size(), plan.processes.size() == 1 ? "" : "s",
                                     world_size(world), rdzv.master_addr, rdzv.master_port));
  } else {
    plan.notes.push_back(fmt::format("{} rank{} on {} node{} via {} ({}), master {}:{}", world_size(world),
                                     world_size(world) == 1 ? "" : "s", world.size(), world.size() == 1 ? "" : "s",
                                     plan.runner, describe_world(world), rdzv.master_addr, rdzv.master_port));
  }
  if (opts.quiet) plan.notes.clear();
  return plan;
}

int run_plan(const LaunchPlan& plan) {
  if (!plan.log_dir.empty()) make_directories(plan.log_dir, "--enable_each_rank_log");
  if (plan.runner.empty()) exec_rank(plan.processes.at(0));
  PlanFiles files(plan);
  for (const auto& note : plan.notes) fmt::print(stderr, "zerotrain launch: {}\n", note);
  if (!plan.pid_file.empty()) fmt::print(stderr, "zerotrain launch: launcher pid: {}\n", ::getpid());
  return supervise(plan.processes, plan.supervisor);
}

int launch(const LaunchOptions& opts) {
  const LaunchContext ctx = LaunchContext::current();
  return run_plan(plan_launch(opts, ctx));
}

}  // namespace zerotrain::detail
