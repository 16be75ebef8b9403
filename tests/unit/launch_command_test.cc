// What each rank is given (environment, command line) and the command lines of every runner, from
// plan_launch with a made-up machine: no process is started here (see launch_process_test.cc for that).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "launch_test_util.h"
#include "launch/environment.h"
#include "launch/error.h"
#include "launch/launch.h"
#include "launch/rank_command.h"
#include "launch/shell.h"
#include "launch/world_info.h"

namespace zerotrain::detail {
namespace {

namespace fs = std::filesystem;

// A temporary directory with a bin/ of stand-in programs, a home/ and a work/ directory.
class LaunchPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/zt-launch-plan-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    for (const char* d : {"bin", "home", "work"}) fs::create_directories(root_ / d);
    for (const char* p : {"ssh", "mpirun", "srun", "python3", "trainer"}) add_program(p);
  }
  void TearDown() override { fs::remove_all(root_); }

  void add_program(const std::string& name) {
    const auto path = root_ / "bin" / name;
    std::ofstream(path) << "#!/bin/sh\nexit 0\n";
    fs::permissions(path, fs::perms::owner_all);
  }

  std::string write(const std::string& rel, const std::string& text) {
    const auto path = root_ / rel;
    std::ofstream(path) << text;
    return path.string();
  }

  LaunchContext context() const {
    LaunchContext ctx;
    ctx.env = {{"PATH", (root_ / "bin").string()}, {"HOME", home()}, {"NCCL_DEBUG", "INFO"}, {"TERM", "xterm"}};
    ctx.cwd = cwd();
    ctx.home = home();
    ctx.self_exe = "/opt/zt/bin/zerotrain";
    ctx.scratch_dir = "/tmp/zerotrain-launch-4242";
    ctx.timestamp = "20250102030405";
    ctx.pid = 4242;
    ctx.gpu_count = 0;
    ctx.is_root = false;
    return ctx;
  }

  LaunchOptions options(const std::string& program = "trainer") const {
    LaunchOptions opts;
    opts.hostfile = (root_ / "no-hostfile").string();
    opts.program = program;
    opts.program_args = {"--lr", "0.1"};
    return opts;
  }

  std::string home() const { return (root_ / "home").string(); }
  std::string cwd() const { return (root_ / "work").string(); }

  fs::path root_;
};

// ---- the environment of each rank ----------------------------------------------------------------

TEST(RankEnvironment, EveryVariableOfEveryLocalRank) {
  const WorldInfo world = {{"a", {0, 1, 2}}, {"b", {1, 3}}};
  const Rendezvous rdzv{"10.0.0.1", 1234};
  for (int i = 0; i < 2; ++i) {
    const Environment env = rank_environment(world, 1, i, rdzv);
    const Environment want = {
        {"RANK", std::to_string(3 + i)}, {"LOCAL_RANK", std::to_string(i)}, {"WORLD_SIZE", "5"},
        {"LOCAL_WORLD_SIZE", "2"},       {"LOCAL_SIZE", "2"},                {"CROSS_RANK", "1"},
        {"CROSS_SIZE", "2"},             {"GROUP_RANK", "1"},                {"GROUP_WORLD_SIZE", "2"},
        {"MASTER_ADDR", "10.0.0.1"},     {"MASTER_PORT", "1234"},            {"CUDA_VISIBLE_DEVICES", "1,3"}};
    EXPECT_EQ(env, want) << "local rank " << i;
  }
  EXPECT_EQ(rank_environment(world, 0, 2, rdzv).at("RANK"), "2");
  EXPECT_EQ(rank_environment(world, 0, 2, rdzv).at("CUDA_VISIBLE_DEVICES"), "0,1,2");
}

TEST(EnvFile, ParsesLinesAndQuotes) {
  const Environment env = parse_env_file(
      "# comment\n\nA=1\nexport B = two words \nC='quoted # not a comment'\nD=\"dq\"\nE=a=b\nF=\n", "f");
  const Environment want = {{"A", "1"}, {"B", "two words"}, {"C", "quoted # not a comment"},
                            {"D", "dq"}, {"E", "a=b"},      {"F", ""}};
  EXPECT_EQ(env, want);
}

TEST(EnvFile, Errors) {
  EXPECT_EQ(error_of([] { parse_env_file("A=1\nnovalue\n", "/h/.deepspeed_env"); }),
            "environment file /h/.deepspeed_env:2: 'novalue': expected NAME=VALUE with NAME made of letters, "
            "digits and '_'");
  EXPECT_NE(error_of([] { parse_env_file("1A=2", "f"); }).find("f:1: '1A=2'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_env_file("A-B=2", "f"); }).find("f:1: 'A-B=2'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_env_file("=2", "f"); }).find("f:1: '=2'"), std::string::npos);
}

TEST_F(LaunchPlanTest, MultinodeExportsFollowDeepSpeed) {
  const Environment launcher = {{"NCCL_IB_HCA", "mlx5"}, {"NCCL_DEBUG", "INFO"}, {"PYTHONPATH", "/lib"},
                                {"PYTHONHASHSEED", "0"}, {"UCX_TLS", "rc"},     {"MLFLOW_RUN", "r"},
                                {"MV2_X", "1"},          {"AZUREML_RUN_ID", "az"}, {"DLTS_JOB_ID", "j"},
                                {"HOME", home()},        {"PATH", "/bin"},      {"CUDA_HOME", "/cuda"}};
  Environment exports = multinode_exports(launcher, cwd(), home());
  const Environment want = {{"NCCL_IB_HCA", "mlx5"}, {"NCCL_DEBUG", "INFO"}, {"PYTHONPATH", cwd() + ":/lib"},
                            {"PYTHONHASHSEED", "0"},  {"UCX_TLS", "rc"},     {"MLFLOW_RUN", "r"},
                            {"MV2_X", "1"},           {"AZUREML_RUN_ID", "az"}, {"DLTS_JOB_ID", "j"}};
  EXPECT_EQ(exports, want);

  // On AISC each node has its own NCCL_IB_HCA / UCX_NET_DEVICES.
  Environment aisc = launcher;
  aisc["AISC_JOB_NAME"] = "job";
  aisc["UCX_NET_DEVICES"] = "mlx5_0:1";
  exports = multinode_exports(aisc, cwd(), home());
  EXPECT_EQ(exports.count("NCCL_IB_HCA"), 0u);
  EXPECT_EQ(exports.count("UCX_NET_DEVICES"), 0u);
  EXPECT_EQ(exports.at("NCCL_DEBUG"), "INFO");
}

TEST_F(LaunchPlanTest, MultinodeExportsReadDeepspeedEnvFiles) {
  write("home/.deepspeed_env", "A=home\nB=home\n");
  write("work/.deepspeed_env", "B=cwd\nexport C='x y'\n");
  Environment exports = multinode_exports({}, cwd(), home());
  EXPECT_EQ(exports.at("A"), "home");
  EXPECT_EQ(exports.at("B"), "cwd");  // ./.deepspeed_env is read last and wins
  EXPECT_EQ(exports.at("C"), "x y");
  EXPECT_EQ(exports.at("PYTHONPATH"), cwd());

  write("work/custom_env", "D=4\n");
  exports = multinode_exports({{"DS_ENV_FILE", "custom_env"}}, cwd(), home());
  EXPECT_EQ(exports.count("A"), 0u);
  EXPECT_EQ(exports.at("D"), "4");

  write("work/.deepspeed_env", "B=cwd\nbroken line\n");
  EXPECT_EQ(error_of([&] { multinode_exports({}, cwd(), home()); }),
            "environment file " + cwd() +
                "/.deepspeed_env:2: 'broken line': expected NAME=VALUE with NAME made of letters, digits and '_'");
}

// ---- ranks started by mpirun or srun --------------------------------------------------------------

TEST(LauncherRank, OpenMpi) {
  const Environment env = {{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                           {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}};
  const LauncherRank r = launcher_rank(RankSource::kOpenMpi, env);
  EXPECT_EQ(r.rank, 5);
  EXPECT_EQ(r.world_size, 8);
  EXPECT_EQ(r.local_rank, 1);
  EXPECT_EQ(r.local_world_size, 4);
  EXPECT_FALSE(r.node_rank.has_value());
}

TEST(LauncherRank, MpichAndPmixNames) {
  const Environment env = {{"PMIX_RANK", "3"}, {"PMI_SIZE", "4"}, {"PALS_LOCAL_RANKID", "1"},
                           {"MPI_LOCALNRANKS", "2"}};
  const LauncherRank r = launcher_rank(RankSource::kMpich, env);
  EXPECT_EQ(r.rank, 3);
  EXPECT_EQ(r.local_rank, 1);
  EXPECT_EQ(r.local_world_size, 2);
}

TEST(LauncherRank, SlurmReadsTheCompressedTasksPerNode) {
  Environment env = {{"SLURM_PROCID", "8"}, {"SLURM_NTASKS", "9"}, {"SLURM_LOCALID", "0"},
                     {"SLURM_NODEID", "2"}, {"SLURM_NNODES", "3"}, {"SLURM_STEP_TASKS_PER_NODE", "4(x2),1"}};
  LauncherRank r = launcher_rank(RankSource::kSlurm, env);
  EXPECT_EQ(r.local_world_size, 1);
  EXPECT_EQ(r.node_rank, 2);
  EXPECT_EQ(r.num_nodes, 3);
  env["SLURM_NODEID"] = "1";
  env["SLURM_PROCID"] = "5";
  env["SLURM_LOCALID"] = "1";
  EXPECT_EQ(launcher_rank(RankSource::kSlurm, env).local_world_size, 4);
  env["SLURM_STEP_TASKS_PER_NODE"] = "4(x1)";
  EXPECT_EQ(error_of([&] { launcher_rank(RankSource::kSlurm, env); }),
            "SLURM_STEP_TASKS_PER_NODE=4(x1): expected N[(xK)][,...] covering node 1");
  env["SLURM_STEP_TASKS_PER_NODE"] = "4(y2)";
  EXPECT_NE(error_of([&] { launcher_rank(RankSource::kSlurm, env); }), "");
}

TEST(LauncherRank, MissingOrMalformedVariables) {
  EXPECT_EQ(error_of([] { launcher_rank(RankSource::kOpenMpi, {}); }),
            "mpirun (OpenMPI) did not set OMPI_COMM_WORLD_RANK; zerotrain launch --from_launcher must run under it");
  const Environment bad = {{"OMPI_COMM_WORLD_RANK", "x"}};
  EXPECT_EQ(error_of([&] { launcher_rank(RankSource::kOpenMpi, bad); }),
            "OMPI_COMM_WORLD_RANK=x: expected an integer >= 0");
  const Environment inconsistent = {{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                                    {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"}};
  EXPECT_EQ(error_of([&] { launcher_rank(RankSource::kOpenMpi, inconsistent); }),
            "launcher variables are inconsistent: rank 4 of 4, local rank 0 of 1");
  EXPECT_NE(error_of([] { launcher_rank(RankSource::kSlurm, {{"SLURM_PROCID", "0"}}); }).find("SLURM_NTASKS"),
            std::string::npos);
}

TEST(LauncherRankEnvironment, MapsOntoTheWorldWhenPlacesAgree) {
  const WorldInfo world = {{"a", {0, 1}}, {"b", {2, 3, 5}}};
  const Rendezvous rdzv{"a", 29500};
  const LauncherRank place{3, 1, 5, 3, std::nullopt, std::nullopt};
  EXPECT_EQ(launcher_rank_environment(place, &world, rdzv), rank_environment(world, 1, 1, rdzv));
  // mpirun mapped differently (e.g. --map-by node): only what the launcher itself reported.
  const LauncherRank other{3, 1, 5, 2, std::nullopt, std::nullopt};
  const Environment env = launcher_rank_environment(other, &world, rdzv);
  const Environment want = {{"RANK", "3"},      {"LOCAL_RANK", "1"},   {"WORLD_SIZE", "5"},   {"LOCAL_WORLD_SIZE", "2"},
                            {"LOCAL_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "29500"}};
  EXPECT_EQ(env, want);
  const LauncherRank slurm{3, 1, 5, 2, 1, 2};
  const Environment senv = launcher_rank_environment(slurm, nullptr, rdzv);
  EXPECT_EQ(senv.at("CROSS_RANK"), "1");
  EXPECT_EQ(senv.at("GROUP_WORLD_SIZE"), "2");
  EXPECT_EQ(senv.count("CUDA_VISIBLE_DEVICES"), 0u);
}

// ---- the command of each rank ---------------------------------------------------------------------

TEST(RankCommand, PythonOnlyForPyFilesOrModules) {
  LaunchOptions opts;
  opts.program = "train.py";
  opts.program_args = {"--x", "1"};
  EXPECT_EQ(rank_command(opts, 2), (std::vector<std::string>{"python3", "-u", "train.py", "--local_rank=2", "--x", "1"}));
  opts.no_local_rank = true;
  EXPECT_EQ(rank_command(opts, 2), (std::vector<std::string>{"python3", "-u", "train.py", "--x", "1"}));
  opts.no_python = true;
  EXPECT_EQ(rank_command(opts, 2), (std::vector<std::string>{"train.py", "--x", "1"}));
  opts = {};
  opts.program = "pkg.train";
  opts.module = true;
  EXPECT_EQ(rank_command(opts, 0), (std::vector<std::string>{"python3", "-u", "-m", "pkg.train", "--local_rank=0"}));
  opts.no_python = true;
  EXPECT_EQ(error_of([&] { rank_command(opts, 0); }),
            "--module and --no_python: give at most one (--module runs PROGRAM as 'python3 -m PROGRAM')");
  opts = {};
  opts.program = "./trainer";
  EXPECT_EQ(rank_command(opts, 1), (std::vector<std::string>{"./trainer", "--local_rank=1"}));
}

TEST(RankCommand, ZerotrainPythonChoosesTheInterpreter) {
  LaunchOptions opts;
  opts.program = "train.py";
  opts.no_local_rank = true;
  setenv("ZEROTRAIN_PYTHON", "/venv/bin/python", 1);
  const auto argv = rank_command(opts, 0);
  unsetenv("ZEROTRAIN_PYTHON");
  EXPECT_EQ(argv, (std::vector<std::string>{"/venv/bin/python", "-u", "train.py"}));
}

TEST(Shell, QuoteAndSplitRoundTrip) {
  EXPECT_EQ(shell_quote("plain-word_1.2,a=b:c/d@e%f+g"), "plain-word_1.2,a=b:c/d@e%f+g");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's $HOME"), "'it'\\''s $HOME'");
  const std::vector<std::string> words = {"a b", "it's", "$x", "\"q\"", "back\\slash", "", "tab\there"};
  EXPECT_EQ(shell_split(shell_join(words), "t"), words);
  EXPECT_EQ(shell_split(R"(--mca btl "tcp,self" -x 'A=b c' d\ e "x\"y")", "t"),
            (std::vector<std::string>{"--mca", "btl", "tcp,self", "-x", "A=b c", "d e", "x\"y"}));
  EXPECT_EQ(error_of([] { shell_split("a 'b", "--launcher_args"); }), "--launcher_args 'a 'b': unterminated single quote");
  EXPECT_EQ(error_of([] { shell_split("a \"b", "--launcher_args"); }), "--launcher_args 'a \"b': unterminated double quote");
  EXPECT_EQ(error_of([] { shell_split("a\\", "--launcher_args"); }), "--launcher_args 'a\\': ends with a lone backslash");
}

TEST_F(LaunchPlanTest, FindProgramSearchesPath) {
  EXPECT_EQ(find_program("sh", "/nonexistent:/bin"), std::optional<std::string>("/bin/sh"));
  EXPECT_EQ(find_program("/bin/sh", ""), std::optional<std::string>("/bin/sh"));
  EXPECT_FALSE(find_program("no-such-program-zt", "/bin:/usr/bin").has_value());
  const std::string data = write("bin/data", "not a program");  // exists, no execute bit
  fs::permissions(data, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_FALSE(find_program(data, "").has_value());
  EXPECT_FALSE(find_program("data", (root_ / "bin").string()).has_value());
  EXPECT_EQ(find_program("trainer", "/nonexistent:" + (root_ / "bin").string()), (root_ / "bin/trainer").string());
  EXPECT_FALSE(find_program("bin", "/").has_value());  // a directory
}

// ---- planning: local runs ---------------------------------------------------------------------------

TEST_F(LaunchPlanTest, CpuMachineWithoutHostfileRunsOneRank) {
  const LaunchPlan plan = plan_launch(options(), context());
  EXPECT_EQ(plan.runner, "local");
  ASSERT_EQ(plan.processes.size(), 1u);
  EXPECT_EQ(plan.processes[0].argv, (std::vector<std::string>{"trainer", "--local_rank=0", "--lr", "0.1"}));
  EXPECT_EQ(plan.rdzv.master_addr, "127.0.0.1");
  EXPECT_EQ(plan.processes[0].stdin_mode, StdinMode::kInherit);
}

TEST_F(LaunchPlanTest, NumGpusOnCpuMachineStartsCpuRanksWithFullEnvironment) {
  LaunchOptions opts = options();
  opts.num_gpus = 3;
  opts.master_port = 31000;
  const LaunchPlan plan = plan_launch(opts, context());
  ASSERT_EQ(plan.processes.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const ProcessSpec& p = plan.processes[static_cast<size_t>(i)];
    EXPECT_EQ(p.label, "rank " + std::to_string(i));
    EXPECT_EQ(p.argv[1], "--local_rank=" + std::to_string(i));
    EXPECT_EQ(p.env.at("RANK"), std::to_string(i));
    EXPECT_EQ(p.env.at("LOCAL_RANK"), std::to_string(i));
    EXPECT_EQ(p.env.at("WORLD_SIZE"), "3");
    EXPECT_EQ(p.env.at("LOCAL_WORLD_SIZE"), "3");
    EXPECT_EQ(p.env.at("MASTER_ADDR"), "127.0.0.1");
    EXPECT_EQ(p.env.at("MASTER_PORT"), "31000");
    EXPECT_EQ(p.env.at("CROSS_RANK"), "0");
    EXPECT_EQ(p.env.at("CUDA_VISIBLE_DEVICES"), "0,1,2");
    EXPECT_EQ(p.env.at("TERM"), "xterm");  // the launcher's environment is inherited
  }
}

TEST_F(LaunchPlanTest, GpuMachineUsesItsGpusAndWarnsAboutMoreRanks) {
  LaunchContext ctx = context();
  ctx.gpu_count = 4;
  LaunchPlan plan = plan_launch(options(), ctx);
  EXPECT_EQ(plan.processes.size(), 4u);
  EXPECT_EQ(plan.processes[3].env.at("CUDA_VISIBLE_DEVICES"), "0,1,2,3");
  LaunchOptions opts = options();
  opts.num_gpus = 5;  // e.g. CPU ranks of a test on a GPU machine
  plan = plan_launch(opts, ctx);
  EXPECT_EQ(plan.processes.size(), 5u);
  EXPECT_EQ(plan.notes[0], "warning: node 0 (localhost) runs ranks on slots 0,1,2,3,4 but this machine has 4 GPUs "
                           "(0-3): ranks on the other slots see no GPU");
}

TEST_F(LaunchPlanTest, CudaVisibleDevicesBecomesTheInclude) {
  LaunchContext ctx = context();
  ctx.gpu_count = 4;
  ctx.env["CUDA_VISIBLE_DEVICES"] = "1,3";
  LaunchPlan plan = plan_launch(options(), ctx);
  ASSERT_EQ(plan.processes.size(), 2u);
  EXPECT_EQ(plan.processes[1].env.at("CUDA_VISIBLE_DEVICES"), "1,3");
  EXPECT_EQ(plan.processes[1].env.at("LOCAL_RANK"), "1");
  EXPECT_EQ(plan.notes[0], "CUDA_VISIBLE_DEVICES=1,3: using --include localhost:1,3");
  // ... unless a resource flag is given (as in DeepSpeed).
  LaunchOptions opts = options();
  opts.num_gpus = 3;
  plan = plan_launch(opts, ctx);
  EXPECT_EQ(plan.processes.size(), 3u);
  EXPECT_EQ(plan.processes[0].env.at("CUDA_VISIBLE_DEVICES"), "0,1,2");
  EXPECT_EQ(plan.notes[0], "ignoring CUDA_VISIBLE_DEVICES=1,3: --include/--exclude/--num_gpus given");
}

TEST_F(LaunchPlanTest, ResourceFlagErrors) {
  LaunchOptions opts = options();
  opts.num_gpus = 2;
  opts.include = "localhost:0";
  EXPECT_EQ(error_of([&] { plan_launch(opts, context()); }),
            "--num_nodes/--num_gpus cannot be combined with --include/--exclude (as in DeepSpeed): select slots with "
            "one or the other");
  opts = options();
  opts.num_nodes = 2;
  EXPECT_EQ(error_of([&] { plan_launch(opts, context()); }),
            "--num_nodes 2: there is no hostfile (" + opts.hostfile + " does not exist), so this machine is the only "
            "node");
  opts = options();
  opts.hostfile_given = true;
  EXPECT_EQ(error_of([&] { plan_launch(opts, context()); }), "--hostfile " + opts.hostfile + ": no such file");
}

TEST_F(LaunchPlanTest, FlagValueErrors) {
  const auto err = [&](auto edit) {
    LaunchOptions opts = options();
    edit(opts);
    return error_of([&] { plan_launch(opts, context()); });
  };
  EXPECT_EQ(err([](LaunchOptions& o) { o.num_gpus = 0; }), "--num_gpus 0: must be a positive integer");
  EXPECT_EQ(err([](LaunchOptions& o) { o.num_nodes = -3; }), "--num_nodes -3: must be a positive integer");
  EXPECT_EQ(err([](LaunchOptions& o) { o.master_port = 70000; }), "--master_port 70000: must be in 1-65535");
  EXPECT_EQ(err([](LaunchOptions& o) { o.ssh_port = 0; }), "--ssh_port 0: must be in 1-65535");
  EXPECT_EQ(err([](LaunchOptions& o) { o.terminate_timeout_s = 0; }), "--terminate_timeout 0: must be > 0 seconds");
  EXPECT_EQ(err([](LaunchOptions& o) { o.program = "--bogus"; }),
            "'--bogus' is not a zerotrain launch flag (see zerotrain launch --help); flags go before PROGRAM");
  EXPECT_EQ(err([](LaunchOptions& o) { o.program = ""; }), "no PROGRAM given: zerotrain launch [FLAGS] PROGRAM [ARGS...]");
  EXPECT_EQ(err([](LaunchOptions& o) { o.node_rank = 1; }),
            "--node_rank/--node_name select this machine's node with --no_ssh; without --no_ssh the launcher starts "
            "every node itself");
  EXPECT_EQ(err([](LaunchOptions& o) { o.no_ssh = true, o.node_rank = -1; }), "--node_rank -1: must be >= 0");
  EXPECT_EQ(err([](LaunchOptions& o) { o.module = o.no_python = true; }),
            "--module and --no_python: give at most one (--module runs PROGRAM as 'python3 -m PROGRAM')");
  EXPECT_EQ(parse_launcher("OpenMPI"), LauncherKind::kOpenMpi);
  EXPECT_EQ(error_of([] { parse_launcher("mvapich"); }),
            "--launcher mvapich: DeepSpeed's mvapich runner is not supported yet; use one of pdsh, ssh, openmpi, "
            "mpich, slurm");
  EXPECT_EQ(error_of([] { parse_launcher("foo"); }), "--launcher foo: unknown; use one of pdsh, ssh, openmpi, mpich, slurm");
}

TEST_F(LaunchPlanTest, SingleHostHostfileRunsHereAsDeepSpeedDoes) {
  LaunchOptions opts = options();
  opts.hostfile = write("hostfile", "worker-7 slots=2\n");
  const LaunchPlan plan = plan_launch(opts, context());
  EXPECT_EQ(plan.runner, "local");
  EXPECT_EQ(plan.processes.size(), 2u);
  EXPECT_EQ(plan.rdzv.master_addr, "127.0.0.1");
  EXPECT_NE(plan.notes[0].find("one node (worker-7) in the hostfile"), std::string::npos);
}

TEST_F(LaunchPlanTest, EachRankLogAndSavePid) {
  LaunchOptions opts = options();
  opts.num_gpus = 2;
  opts.each_rank_log_dir = "/logs";
  opts.save_pid = true;
  const LaunchPlan plan = plan_launch(opts, context());
  EXPECT_EQ(plan.log_dir, "/logs");
  EXPECT_EQ(plan.processes[1].log_path, "/logs/20250102030405_rank1.log");
  EXPECT_EQ(plan.pid_file, "/tmp/4242.deepspeed");
}

TEST_F(LaunchPlanTest, BindCoresGivesEachRankItsShare) {
  LaunchOptions opts = options();
  opts.num_gpus = 2;
  opts.bind_cores_to_rank = true;
  opts.bind_core_list = "0-2,8-10";
  const LaunchPlan plan = plan_launch(opts, context());
  EXPECT_EQ(plan.processes[0].cpus, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(plan.processes[1].cpus, (std::vector<int>{8, 9, 10}));
  EXPECT_EQ(plan.processes[1].env.at("OMP_NUM_THREADS"), "3");
}

TEST_F(LaunchPlanTest, RanksShareTheCoresUnlessOmpNumThreadsIsSet) {
  LaunchOptions opts = options();
  opts.num_gpus = 8;
  LaunchContext ctx = context();
  ctx.cpu_count = 16;
  LaunchPlan plan = plan_launch(opts, ctx);
  for (const auto& p : plan.processes) EXPECT_EQ(p.env.at("OMP_NUM_THREADS"), "2");
  const auto shared = [](const LaunchPlan& p) {
    return std::ranges::count_if(p.notes, [](const std::string& n) {
      return n.find("OMP_NUM_THREADS is not set: each of the 8 ranks on this node gets") != std::string::npos;
    });
  };
  EXPECT_EQ(shared(plan), 1);

  ctx.cpu_count = 4;  // more ranks than cores: one thread each
  plan = plan_launch(opts, ctx);
  EXPECT_EQ(plan.processes[7].env.at("OMP_NUM_THREADS"), "1");

  ctx.env["OMP_NUM_THREADS"] = "5";  // the user's value wins
  plan = plan_launch(opts, ctx);
  for (const auto& p : plan.processes) EXPECT_EQ(p.env.at("OMP_NUM_THREADS"), "5");
  EXPECT_EQ(shared(plan), 0);

  ctx = context();
  ctx.cpu_count = 16;
  opts.num_gpus = 1;  // one rank keeps every core
  plan = plan_launch(opts, ctx);
  EXPECT_EQ(plan.processes[0].env.count("OMP_NUM_THREADS"), 0u);
}

// ---- planning: a node agent (--no_ssh, --world_info) -------------------------------------------------

TEST_F(LaunchPlanTest, NodeAgentRunsItsNodesRanks) {
  LaunchOptions opts = options();
  opts.no_ssh = true;
  opts.world_info = encode_world_info({{"a", {0, 1}}, {"b", {0, 2, 3}}});
  opts.node_rank = 1;
  opts.master_addr = "a";
  opts.exit_on_stdin_eof = true;
  LaunchPlan plan = plan_launch(opts, context());
  EXPECT_EQ(plan.runner, "local");
  ASSERT_EQ(plan.processes.size(), 3u);
  EXPECT_EQ(plan.processes[2].env.at("RANK"), "4");
  EXPECT_EQ(plan.processes[2].env.at("LOCAL_RANK"), "2");
  EXPECT_EQ(plan.processes[2].env.at("CUDA_VISIBLE_DEVICES"), "0,2,3");
  EXPECT_EQ(plan.processes[2].env.at("MASTER_ADDR"), "a");
  EXPECT_EQ(plan.processes[2].stdin_mode, StdinMode::kNull);
  EXPECT_TRUE(plan.supervisor.stop_on_stdin_eof);

  opts.node_rank.reset();
  opts.node_name = "a";
  plan = plan_launch(opts, context());
  EXPECT_EQ(plan.processes.size(), 2u);
  EXPECT_EQ(plan.processes[1].env.at("RANK"), "1");

  opts.node_name = "c";
  EXPECT_EQ(error_of([&] { plan_launch(opts, context()); }), "--node_name c: not a node of the job (a:0,1 b:0,2,3)");
  opts.node_name.clear();
  opts.node_rank = 2;
  EXPECT_EQ(error_of([&] { plan_launch(opts, context()); }), "--node_rank 2: the job has 2 nodes (0-1)");
  opts.node_rank.reset();
  EXPECT_EQ(error_of([&] { plan_launch(opts, context()); }), "--no_ssh with 2 nodes: give this machine's --node_rank (0-1)");
  opts.node_rank = 0;
  opts.num_gpus = 1;
  EXPECT_NE(error_of([&] { plan_launch(opts, context()); }).find("--world_info fixes the nodes"), std::string::npos);
}

TEST_F(LaunchPlanTest, NodeAgentWarnsWhenSlotsExceedItsGpus) {
  LaunchOptions opts = options();
  opts.world_info = encode_world_info({{"a", {0, 3}}});
  LaunchContext ctx = context();
  ctx.gpu_count = 2;
  EXPECT_EQ(plan_launch(opts, ctx).notes[0], "warning: node 0 (a) runs ranks on slots 0,3 but this machine has 2 GPUs "
                                             "(0-1): ranks on the other slots see no GPU");
  ctx.gpu_count = 4;
  EXPECT_EQ(plan_launch(opts, ctx).notes.size(), 1u);  // only the summary line
}

TEST_F(LaunchPlanTest, NoSshWithHostfileUsesTheFirstHostAsMaster) {
  LaunchOptions opts = options();
  opts.hostfile = write("hostfile", "n0 slots=2\nn1 slots=2\n");
  opts.no_ssh = true;
  opts.node_rank = 1;
  const LaunchPlan plan = plan_launch(opts, context());
  EXPECT_EQ(plan.rdzv.master_addr, "n0");
  EXPECT_EQ(plan.processes[0].env.at("RANK"), "2");
}

// ---- planning: multi-node runners -----------------------------------------------------------------

TEST_F(LaunchPlanTest, SshRunnerStartsOneAgentPerNode) {
  LaunchOptions opts = options("train.py");
  opts.program_args = {"--name", "it's a run"};
  opts.hostfile = write("hostfile", "n0 slots=2\nn1 slots=4\n");
  opts.exclude = "n1:0";
  opts.launcher = LauncherKind::kSsh;
  opts.launcher_args = "-o 'ConnectTimeout 5'";
  opts.ssh_port = 2222;
  opts.save_pid = true;
  const LaunchPlan plan = plan_launch(opts, context());
  EXPECT_EQ(plan.runner, "ssh");
  EXPECT_EQ(plan.rdzv.master_addr, "n0");
  EXPECT_EQ(plan.pid_file, "");  // written by the agents, not by this process
  ASSERT_EQ(plan.processes.size(), 2u);
  const std::string world = encode_world_info({{"n0", {0, 1}}, {"n1", {1, 2, 3}}});
  const std::string script = "cd " + cwd() + " && export NCCL_DEBUG=INFO PYTHONPATH=" + cwd() +
                             " && exec /opt/zt/bin/zerotrain launch --no_ssh --world_info=" + world +
                             " --master_port=29500 --node_rank=1 --master_addr=n0 --save_pid_as=4242 "
                             "--terminate_timeout=30 --exit_on_stdin_eof train.py --name 'it'\\''s a run'";
  EXPECT_EQ(plan.processes[1].argv, (std::vector<std::string>{"ssh", "-o", "BatchMode=yes", "-p", "2222", "-o",
                                                              "ConnectTimeout 5", "n1", script}));
  EXPECT_EQ(plan.processes[1].label, "node 1 (n1)");
  EXPECT_EQ(plan.processes[1].stdin_mode, StdinMode::kPipe);
  EXPECT_NE(plan.processes[0].argv.back().find("--node_rank=0 "), std::string::npos);
  // What the node runs splits back into exactly the intended words.
  const auto words = shell_split(script, "script");
  EXPECT_EQ(std::vector<std::string>(words.end() - 3, words.end()),
            (std::vector<std::string>{"train.py", "--name", "it's a run"}));
}

TEST_F(LaunchPlanTest, DefaultRunnerIsSshEvenWhenPdshIsInstalled) {
  add_program("pdsh");
  LaunchOptions opts = options();
  opts.hostfile = write("hostfile", "n0 slots=1\nn1 slots=1\n");
  EXPECT_EQ(plan_launch(opts, context()).runner, "ssh");
  opts.launcher = LauncherKind::kPdsh;
  EXPECT_EQ(plan_launch(opts, context()).runner, "pdsh");
  // --force_multi sends even a single node through the runner (and rendezvous at its name).
  opts.launcher.reset();
  opts.force_multi = true;
  opts.hostfile = write("hostfile1", "n0 slots=1\n");
  const LaunchPlan plan = plan_launch(opts, context());
  EXPECT_EQ(plan.runner, "ssh");
  EXPECT_EQ(plan.rdzv.master_addr, "n0");
}

TEST_F(LaunchPlanTest, MissingBackendIsAnError) {
  LaunchOptions opts = options();
  opts.hostfile = write("hostfile", "n0 slots=1\nn1 slots=1\n");
  opts.launcher = LauncherKind::kPdsh;
  EXPECT_EQ(error_of([&] { plan_launch(opts, context()); }),
            "--launcher pdsh: pdsh is not installed (not on PATH); --launcher ssh needs only ssh");
}

TEST_F(LaunchPlanTest, PdshRunnerUsesHostNamesAndAStopCommand) {
  add_program("pdsh");
  LaunchOptions opts = options();
  opts.program_args = {"--fmt", "%d%%"};
  opts.hostfile = write("hostfile", "n1 slots=2\nn0 slots=2\n");
  opts.launcher = LauncherKind::kPdsh;
  opts.ssh_port = 2200;
  const LaunchPlan plan = plan_launch(opts, context());
  ASSERT_EQ(plan.processes.size(), 1u);
  const auto& argv = plan.processes[0].argv;
  const std::string world = encode_world_info({{"n1", {0, 1}}, {"n0", {0, 1}}});
  EXPECT_EQ(std::vector<std::string>(argv.begin(), argv.end() - 1),
            (std::vector<std::string>{"pdsh", "-S", "-f", "1024", "-w", "n1,n0"}));
  EXPECT_EQ(argv.back(), "cd " + cwd() + " && export NCCL_DEBUG=INFO PYTHONPATH=" + cwd() +
                             " && exec /opt/zt/bin/zerotrain launch --no_ssh --world_info=" + world +
                             " --master_port=29500 '--node_name=%h' --master_addr=n1 --terminate_timeout=30 trainer "
                             "--fmt %%d%%%%");
  EXPECT_EQ(plan.processes[0].env.at("PDSH_RCMD_TYPE"), "ssh");
  EXPECT_EQ(plan.processes[0].env.at("PDSH_SSH_ARGS_APPEND"), "-p 2200");
  EXPECT_EQ(plan.supervisor.stop_command.back(),
            "pkill -TERM -f -- '--world_info=" + world + " --master_port=29500[ ]'");
  EXPECT_EQ(plan.supervisor.stop_command[5], "n1,n0");
}

TEST_F(LaunchPlanTest, OpenMpiRunnerWritesAFilteredHostfile) {
  LaunchOptions opts = options();
  opts.hostfile = write("hostfile", "n0 slots=4\nn1 slots=4\n");
  opts.include = "n0:1,2@n1";
  opts.launcher = LauncherKind::kOpenMpi;
  opts.launcher_args = "--mca btl_tcp_if_include eth1";
  LaunchContext ctx = context();
  ctx.is_root = true;
  const LaunchPlan plan = plan_launch(opts, ctx);
  EXPECT_EQ(plan.runner, "openmpi");
  ASSERT_EQ(plan.files.size(), 1u);
  EXPECT_EQ(plan.files[0].path, "/tmp/zerotrain-launch-4242/hostfile");
  EXPECT_EQ(plan.files[0].text, "n0 slots=2\nn1 slots=4\n");
  EXPECT_EQ(plan.scratch_dir, "/tmp/zerotrain-launch-4242");
  const std::string world = encode_world_info({{"n0", {1, 2}}, {"n1", {0, 1, 2, 3}}});
  EXPECT_EQ(plan.processes[0].argv,
            (std::vector<std::string>{"mpirun", "-n", "6", "-hostfile", "/tmp/zerotrain-launch-4242/hostfile",
                                      "--mca", "btl", "^openib", "--allow-run-as-root", "--mca",
                                      "btl_tcp_if_include", "eth1", "-x", "NCCL_DEBUG=INFO", "-x",
                                      "PYTHONPATH=" + cwd(), "-x", "UCX_TLS=tcp", "/opt/zt/bin/zerotrain", "launch",
                                      "--from_launcher=openmpi", "--world_info=" + world, "--master_addr=n0",
                                      "--master_port=29500", "--terminate_timeout=30", "trainer", "--lr", "0.1"}));
}

TEST_F(LaunchPlanTest, OpenMpiRunsSingleNodeCpuJobsToo) {
  LaunchOptions opts = options();
  opts.launcher = LauncherKind::kOpenMpi;
  opts.num_gpus = 3;
  const LaunchPlan plan = plan_launch(opts, context());
  EXPECT_EQ(plan.runner, "openmpi");
  EXPECT_EQ(plan.files[0].text, "localhost slots=3\n");
  EXPECT_EQ(plan.processes[0].argv[2], "3");
  EXPECT_EQ(plan.rdzv.master_addr, "127.0.0.1");
  EXPECT_EQ(std::count(plan.processes[0].argv.begin(), plan.processes[0].argv.end(), "--allow-run-as-root"), 0);
  opts.bind_cores_to_rank = true;
  EXPECT_NE(error_of([&] { plan_launch(opts, context()); }).find("--bind_cores_to_rank with --launcher openmpi"),
            std::string::npos);
}

TEST_F(LaunchPlanTest, MpichRunnerNeedsEqualNodes) {
  LaunchOptions opts = options();
  opts.hostfile = write("hostfile", "n0 slots=2\nn1 slots=2\n");
  opts.launcher = LauncherKind::kMpich;
  const LaunchPlan plan = plan_launch(opts, context());
  const std::string world = encode_world_info({{"n0", {0, 1}}, {"n1", {0, 1}}});
  EXPECT_EQ(plan.processes[0].argv,
            (std::vector<std::string>{"mpirun", "-n", "4", "-ppn", "2", "-genv", "NCCL_DEBUG", "INFO", "-genv",
                                      "PYTHONPATH", cwd(), "-hosts", "n0,n1", "/opt/zt/bin/zerotrain", "launch",
                                      "--from_launcher=mpich", "--world_info=" + world, "--master_addr=n0",
                                      "--master_port=29500", "--terminate_timeout=30", "trainer", "--lr", "0.1"}));
  opts.exclude = "n1:1";
  EXPECT_EQ(error_of([&] { plan_launch(opts, context()); }),
            "--launcher mpich: every node needs the same number of ranks, but n0 has 2 and n1 has 1");
}

TEST_F(LaunchPlanTest, SlurmRunnerWithHostfile) {
  LaunchOptions opts = options();
  opts.hostfile = write("hostfile", "n0 slots=2\nn1 slots=2\n");
  opts.launcher = LauncherKind::kSlurm;
  opts.launcher_args = "--partition gpu";
  const LaunchPlan plan = plan_launch(opts, context());
  EXPECT_EQ(plan.processes[0].argv,
            (std::vector<std::string>{"srun", "-n", "4", "--nodes", "2", "--ntasks-per-node", "2", "--nodelist",
                                      "n0,n1", "--partition", "gpu", "--export=ALL", "/opt/zt/bin/zerotrain",
                                      "launch", "--from_launcher=slurm", "--master_addr=n0", "--master_port=29500",
                                      "--terminate_timeout=30", "trainer", "--lr", "0.1"}));
  // Forwarded variables travel in srun's own environment (--export=ALL).
  EXPECT_EQ(plan.processes[0].env.at("PYTHONPATH"), cwd());
}

TEST_F(LaunchPlanTest, SlurmRunnerWithoutHostfileUsesTheAllocation) {
  LaunchOptions opts = options();
  opts.launcher = LauncherKind::kSlurm;
  opts.num_gpus = 4;
  LaunchContext ctx = context();
  ctx.env["SLURM_NNODES"] = "2";
  EXPECT_EQ(error_of([&] { plan_launch(opts, ctx); }),
            "--launcher slurm on several nodes without a hostfile: give --master_addr (the address of the "
            "allocation's first node)");
  opts.master_addr = "head";
  const LaunchPlan plan = plan_launch(opts, ctx);
  const auto& argv = plan.processes[0].argv;
  EXPECT_EQ(std::vector<std::string>(argv.begin(), argv.begin() + 8),
            (std::vector<std::string>{"srun", "-n", "8", "--nodes", "2", "--ntasks-per-node", "4", "--export=ALL"}));
  opts.include = "x";
  EXPECT_EQ(error_of([&] { plan_launch(opts, ctx); }),
            "--include/--exclude with --launcher slurm need a hostfile (--hostfile) naming the hosts");
}

TEST_F(LaunchPlanTest, RankHelperExecsTheProgramWithLauncherVariables) {
  LaunchOptions opts = options();
  opts.from_launcher = RankSource::kOpenMpi;
  opts.world_info = encode_world_info({{"n0", {0, 1}}, {"n1", {2, 3}}});
  opts.master_addr = "n0";
  LaunchContext ctx = context();
  ctx.env["OMPI_COMM_WORLD_RANK"] = "3";
  ctx.env["OMPI_COMM_WORLD_SIZE"] = "4";
  ctx.env["OMPI_COMM_WORLD_LOCAL_RANK"] = "1";
  ctx.env["OMPI_COMM_WORLD_LOCAL_SIZE"] = "2";
  const LaunchPlan plan = plan_launch(opts, ctx);
  EXPECT_EQ(plan.runner, "");
  ASSERT_EQ(plan.processes.size(), 1u);
  EXPECT_EQ(plan.processes[0].argv, (std::vector<std::string>{"trainer", "--local_rank=1", "--lr", "0.1"}));
  EXPECT_EQ(plan.processes[0].env.at("RANK"), "3");
  EXPECT_EQ(plan.processes[0].env.at("CROSS_RANK"), "1");
  EXPECT_EQ(plan.processes[0].env.at("CUDA_VISIBLE_DEVICES"), "2,3");
  EXPECT_EQ(plan.processes[0].env.at("OMPI_COMM_WORLD_RANK"), "3");
  opts.master_addr.clear();
  EXPECT_EQ(error_of([&] { plan_launch(opts, ctx); }),
            "--from_launcher on several nodes needs --master_addr (the address of rank 0's node)");
}

}  // namespace
}  // namespace zerotrain::detail
