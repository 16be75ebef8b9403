// Real processes: ranks started by the supervisor and by the `zerotrain` CLI, their environment, failure
// handling and signals; multi-node through a stand-in ssh that runs the "remote" command on this machine; and
// pdsh and OpenMPI's mpirun for real when they are installed (skipped otherwise).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "launch/cpu_binding.h"
#include "launch/environment.h"
#include "launch/error.h"
#include "launch/launch.h"
#include "launch/process.h"
#include "launch/shell.h"

extern char** environ;

namespace zerotrain::detail {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::map<std::string, std::string> read_env_dump(const fs::path& p) {
  std::map<std::string, std::string> env;
  std::istringstream in(read_file(p));
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

// True when `pid` no longer runs (gone, or a zombie nobody has reaped yet).
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  const std::string stat = read_file(fmt::format("/proc/{}/stat", pid));
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return cond();
}

pid_t read_pid(const fs::path& p) { return static_cast<pid_t>(std::stol(read_file(p))); }

// The `zerotrain` CLI built next to this test ($ZEROTRAIN_BIN when set).
std::string cli_binary() {
  if (const char* bin = std::getenv("ZEROTRAIN_BIN")) return bin;
  const fs::path self = fs::read_symlink("/proc/self/exe");
  for (const fs::path& candidate : {self.parent_path() / "../../zerotrain", self.parent_path() / "../zerotrain"}) {
    if (fs::exists(candidate)) return fs::canonical(candidate).string();
  }
  return "";
}

class LaunchProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/zt-launch-proc-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    out_ = dir_ / "out";
    fs::create_directories(out_);
    ::alarm(120);  // a hung launcher fails the test instead of stalling the suite
  }
  void TearDown() override {
    ::alarm(0);
    fs::remove_all(dir_);
  }

  // A shell script `name` in the test directory, executable.
  std::string script(const std::string& name, const std::string& body) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << "#!/bin/sh\n" << body;
    fs::permissions(p, fs::perms::owner_all);
    return p.string();
  }

  LaunchContext context() const {
    LaunchContext ctx = LaunchContext::current();
    ctx.env["OUT"] = out_.string();
    ctx.gpu_count = 0;  // CPU ranks, whatever this machine has
    ctx.cwd = dir_.string();
    return ctx;
  }

  LaunchOptions options(const std::string& program, int num_ranks) const {
    LaunchOptions opts;
    opts.hostfile = (dir_ / "no-hostfile").string();
    opts.num_gpus = num_ranks;
    opts.no_local_rank = true;
    opts.program = program;
    opts.quiet = true;
    return opts;
  }

  // Runs `plan` in a forked copy of this process (so signals can be sent to that launcher); returns its pid.
  pid_t run_in_child(const LaunchPlan& plan) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 1;
      try {
        code = run_plan(plan);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "launcher: %s\n", e.what());
      }
      ::_exit(code);
    }
    return pid;
  }

  // Starts the CLI with `args` in the test directory, with `env`; returns its pid.
  pid_t start_cli(const std::vector<std::string>& args, const Environment& env) {
    std::vector<std::string> argv = {cli_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto env_strings = environment_strings(env);
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (::chdir(dir_.c_str()) != 0) ::_exit(126);
      std::vector<char*> a, e;
      for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      for (auto& s : env_strings) e.push_back(const_cast<char*>(s.c_str()));
      e.push_back(nullptr);
      ::execve(a[0], a.data(), e.data());
      ::_exit(127);
    }
    return pid;
  }

  // Waits for `pid` (at most `limit`, then SIGKILL and a test failure); returns its wait status.
  static int wait_exit(pid_t pid, std::chrono::seconds limit = 60s) {
    int status = 0;
    const auto deadline = Clock::now() + limit;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ADD_FAILURE() << "process " << pid << " did not exit within " << limit.count() << " s";
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        return status;
      }
      std::this_thread::sleep_for(20ms);
    }
    return status;
  }

  bool wait_files(const std::vector<fs::path>& files, std::chrono::milliseconds limit = 20s) {
    return eventually(
        [&] {
          for (const auto& f : files) {
            if (!fs::exists(f)) return false;
          }
          return true;
        },
        limit);
  }

  std::vector<fs::path> out_files(const std::string& prefix, int n) const {
    std::vector<fs::path> files;
    for (int i = 0; i < n; ++i) files.push_back(out_ / (prefix + std::to_string(i)));
    return files;
  }

  fs::path dir_;
  fs::path out_;
};

// A rank body that writes its environment and pid atomically, then runs `then`.
std::string dump_env_then(const std::string& then) {
  return "env > \"$OUT/env.tmp.$RANK\" && mv \"$OUT/env.tmp.$RANK\" \"$OUT/env.$RANK\"\n"
         "echo \"$@\" > \"$OUT/args.tmp.$RANK\" && mv \"$OUT/args.tmp.$RANK\" \"$OUT/args.$RANK\"\n"
         "echo $$ > \"$OUT/pid.tmp.$RANK\" && mv \"$OUT/pid.tmp.$RANK\" \"$OUT/pid.$RANK\"\n" +
         then + "\n";
}

TEST_F(LaunchProcessTest, ThreeLocalRanksGetTheirEnvironmentAndLocalRankArgument) {
  LaunchOptions opts = options(script("rank.sh", dump_env_then("exit 0")), 3);
  opts.no_local_rank = false;
  opts.program_args = {"a b", "c"};
  opts.master_port = 31234;
  LaunchContext ctx = context();
  ctx.env["CUDA_VISIBLE_DEVICES"] = "";  // empty: ignored, as in DeepSpeed
  EXPECT_EQ(run_plan(plan_launch(opts, ctx)), 0);
  for (int r = 0; r < 3; ++r) {
    auto env = read_env_dump(out_ / ("env." + std::to_string(r)));
    EXPECT_EQ(env["RANK"], std::to_string(r));
    EXPECT_EQ(env["LOCAL_RANK"], std::to_string(r));
    EXPECT_EQ(env["WORLD_SIZE"], "3");
    EXPECT_EQ(env["LOCAL_WORLD_SIZE"], "3");
    EXPECT_EQ(env["LOCAL_SIZE"], "3");
    EXPECT_EQ(env["MASTER_ADDR"], "127.0.0.1");
    EXPECT_EQ(env["MASTER_PORT"], "31234");
    EXPECT_EQ(env["CROSS_RANK"], "0");
    EXPECT_EQ(env["CROSS_SIZE"], "1");
    EXPECT_EQ(env["GROUP_RANK"], "0");
    EXPECT_EQ(env["CUDA_VISIBLE_DEVICES"], "0,1,2");
    EXPECT_EQ(env["OUT"], out_.string());
    EXPECT_EQ(read_file(out_ / ("args." + std::to_string(r))), "--local_rank=" + std::to_string(r) + " a b c\n");
  }
}

TEST_F(LaunchProcessTest, FailingRankStopsTheOthersAndSetsTheExitCode) {
  LaunchOptions opts = options(script("rank.sh", dump_env_then(
                                                     "if [ \"$RANK\" = 1 ]; then\n"
                                                     "  while [ ! -f \"$OUT/pid.0\" ] || [ ! -f \"$OUT/pid.2\" ]; do sleep 0.05; done\n"
                                                     "  exit 3\nfi\nexec sleep 100")),
                               3);
  opts.terminate_timeout_s = 20;
  const auto start = Clock::now();
  EXPECT_EQ(run_plan(plan_launch(opts, context())), 3);
  // Sleeping ranks die on SIGTERM at once, far within the 20 s grace period.
  EXPECT_LT(Clock::now() - start, 10s);
  for (int r : {0, 2}) EXPECT_TRUE(process_gone(read_pid(out_ / ("pid." + std::to_string(r))))) << "rank " << r;
}

TEST_F(LaunchProcessTest, RankIgnoringSigtermIsKilledAfterTheGracePeriod) {
  // SIGTERM is ignored before the pid file appears: otherwise rank 1 can exit, and the launcher stop rank 0, before
  // rank 0 has installed the trap.
  LaunchOptions opts = options(script("rank.sh", "trap '' TERM\n" + dump_env_then(
                                                     "if [ \"$RANK\" = 1 ]; then\n"
                                                     "  while [ ! -f \"$OUT/pid.0\" ]; do sleep 0.05; done\n"
                                                     "  exit 5\nfi\nexec sleep 100")),
                               2);
  opts.terminate_timeout_s = 1;
  const auto start = Clock::now();
  EXPECT_EQ(run_plan(plan_launch(opts, context())), 5);
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 1s);
  EXPECT_LT(elapsed, 8s);
  EXPECT_TRUE(process_gone(read_pid(out_ / "pid.0")));
}

TEST_F(LaunchProcessTest, RankKilledBySignalGives128PlusSignal) {
  LaunchOptions opts = options(script("rank.sh", "kill -KILL $$\n"), 1);
  EXPECT_EQ(run_plan(plan_launch(opts, context())), 128 + SIGKILL);
}

TEST_F(LaunchProcessTest, SigtermToTheLauncherStopsEveryRank) {
  LaunchOptions opts = options(script("rank.sh", dump_env_then("exec sleep 100")), 3);
  const pid_t launcher = run_in_child(plan_launch(opts, context()));
  ASSERT_TRUE(wait_files(out_files("pid.", 3)));
  const auto start = Clock::now();
  ::kill(launcher, SIGTERM);
  const int status = wait_exit(launcher);
  EXPECT_LT(Clock::now() - start, 10s);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
  for (const auto& f : out_files("pid.", 3)) EXPECT_TRUE(process_gone(read_pid(f))) << f;
}

TEST_F(LaunchProcessTest, SigintIsForwardedToTheRanks) {
  LaunchOptions opts = options(script("rank.sh", "trap 'echo got > \"$OUT/int.$RANK\"; exit 7' INT\n" +
                                                     dump_env_then("while true; do sleep 0.05; done")),
                               2);
  const pid_t launcher = run_in_child(plan_launch(opts, context()));
  ASSERT_TRUE(wait_files(out_files("pid.", 2)));
  ::kill(launcher, SIGINT);
  const int status = wait_exit(launcher);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
  EXPECT_EQ(read_file(out_ / "int.0"), "got\n");
  EXPECT_EQ(read_file(out_ / "int.1"), "got\n");
}

TEST_F(LaunchProcessTest, HardKilledLauncherTakesItsRanksDown) {
  LaunchOptions opts = options(script("rank.sh", dump_env_then("exec sleep 100")), 2);
  const pid_t launcher = run_in_child(plan_launch(opts, context()));
  ASSERT_TRUE(wait_files(out_files("pid.", 2)));
  ::kill(launcher, SIGKILL);
  wait_exit(launcher);
  // PR_SET_PDEATHSIG delivers SIGTERM to each rank when the launcher dies.
  for (const auto& f : out_files("pid.", 2)) {
    const pid_t pid = read_pid(f);
    EXPECT_TRUE(eventually([&] { return process_gone(pid); }, 5s)) << f;
  }
}

TEST_F(LaunchProcessTest, DescendantsLeftBehindAreStopped) {
  LaunchOptions opts = options(script("rank.sh", "sleep 100 > /dev/null 2>&1 &\necho $! > \"$OUT/orphan\"\nexit 0\n"), 1);
  EXPECT_EQ(run_plan(plan_launch(opts, context())), 0);
  const pid_t orphan = read_pid(out_ / "orphan");
  EXPECT_TRUE(process_gone(orphan));
}

TEST_F(LaunchProcessTest, EachRankLogGetsStdoutAndStderr) {
  LaunchOptions opts = options(script("rank.sh", "echo \"out $RANK\"\necho \"err $RANK\" >&2\n"), 2);
  opts.each_rank_log_dir = (dir_ / "logs/nested").string();
  LaunchContext ctx = context();
  ctx.timestamp = "20250101000000";
  EXPECT_EQ(run_plan(plan_launch(opts, ctx)), 0);
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(read_file(dir_ / fmt::format("logs/nested/20250101000000_rank{}.log", r)),
              fmt::format("out {}\nerr {}\n", r, r));
  }
  std::ofstream(dir_ / "afile") << "x";
  opts.each_rank_log_dir = (dir_ / "afile").string();
  try {
    run_plan(plan_launch(opts, ctx));
    ADD_FAILURE() << "a file as --enable_each_rank_log must be an error";
  } catch (const LaunchError& e) {
    EXPECT_EQ(std::string(e.what()), "--enable_each_rank_log " + (dir_ / "afile").string() +
                                         ": exists and is not a directory");
  }
}

TEST_F(LaunchProcessTest, SavePidWritesTheLauncherPidWhileRunning) {
  const std::string pid_file = fmt::format("/tmp/{}.deepspeed", ::getpid());
  LaunchOptions opts = options(script("rank.sh", "cat \"" + pid_file + "\" > \"$OUT/saved\"\n"), 1);
  opts.save_pid = true;
  LaunchContext ctx = context();
  ASSERT_EQ(ctx.pid, ::getpid());
  EXPECT_EQ(run_plan(plan_launch(opts, ctx)), 0);
  EXPECT_EQ(read_file(out_ / "saved"), std::to_string(::getpid()));
  EXPECT_FALSE(fs::exists(pid_file));
}

TEST_F(LaunchProcessTest, BindCoresToRankSetsDisjointAffinities) {
  const std::vector<int> cpus = allowed_cpus();
  const int n = std::min<int>(2, static_cast<int>(cpus.size()));
  LaunchOptions opts = options(script("rank.sh", "grep Cpus_allowed_list /proc/self/status | cut -f2 > "
                                                 "\"$OUT/cpus.$RANK\"\necho $OMP_NUM_THREADS > \"$OUT/omp.$RANK\"\n"),
                               n);
  opts.bind_cores_to_rank = true;
  EXPECT_EQ(run_plan(plan_launch(opts, context())), 0);
  for (int r = 0; r < n; ++r) {
    std::string list = read_file(out_ / ("cpus." + std::to_string(r)));
    list.erase(list.find_last_not_of('\n') + 1);
    const auto want = cores_for_rank(cpus, n, r);
    EXPECT_EQ(parse_core_list(list), want) << "rank " << r;
    EXPECT_EQ(read_file(out_ / ("omp." + std::to_string(r))), std::to_string(want.size()) + "\n");
  }
}

TEST_F(LaunchProcessTest, ProgramThatCannotRunIsAnErrorAndLeavesNothingRunning) {
  LaunchOptions opts = options("no-such-program-zt", 2);
  try {
    run_plan(plan_launch(opts, context()));
    ADD_FAILURE() << "expected a LaunchError";
  } catch (const LaunchError& e) {
    EXPECT_EQ(std::string(e.what()), "rank 0: program 'no-such-program-zt' is not found on PATH");
  }
  const fs::path junk = dir_ / "junk";
  std::ofstream(junk) << std::string("\x7f\x01\x02garbage", 10);
  fs::permissions(junk, fs::perms::owner_all);
  opts.program = junk.string();
  try {
    run_plan(plan_launch(opts, context()));
    ADD_FAILURE() << "expected a LaunchError";
  } catch (const LaunchError& e) {
    EXPECT_EQ(std::string(e.what()), "rank 0: cannot execute " + junk.string() + ": Exec format error");
  }
}

// ---- the CLI ---------------------------------------------------------------------------------------

class LaunchCliTest : public LaunchProcessTest {
 protected:
  void SetUp() override {
    LaunchProcessTest::SetUp();
    ASSERT_FALSE(cli_binary().empty()) << "build the zerotrain CLI (target zerotrain_cli) or set ZEROTRAIN_BIN";
    fs::create_directories(dir_ / "fakebin");
    // Stands in for ssh: records its arguments, then runs the remote command here in a login-like environment
    // (env -i), so only what the launcher exports reaches the ranks.
    const fs::path ssh = dir_ / "fakebin/ssh";
    std::ofstream(ssh) << "#!/bin/sh\n"
                          "echo \"$@\" >> \"$ZT_FAKE_SSH_LOG\"\n"
                          "while [ $# -gt 0 ]; do\n"
                          "  case \"$1\" in -o|-p) shift 2 ;; -*) shift ;; *) break ;; esac\n"
                          "done\n"
                          "host=\"$1\"; shift\n"
                          "exec env -i PATH=\"$PATH\" HOME=\"$HOME\" sh -c \"$*\"\n";
    fs::permissions(ssh, fs::perms::owner_all);
    std::ofstream(dir_ / "hostfile") << "127.0.0.1 slots=2\nlocalhost slots=2\n";
    // Forwarded to every node like DeepSpeed's .deepspeed_env (the fake ssh drops everything else).
    std::ofstream(dir_ / ".deepspeed_env") << "OUT=" << out_.string() << "\n";
  }

  Environment cli_env() const {
    Environment env = environment_from(environ);
    env["PATH"] = (dir_ / "fakebin").string() + ":" + env["PATH"];
    env["ZT_FAKE_SSH_LOG"] = (dir_ / "ssh.log").string();
    env["NCCL_ZT_TEST"] = "forwarded";
    env["HOME"] = (dir_ / "home").string();
    env.erase("CUDA_VISIBLE_DEVICES");
    return env;
  }
};

TEST_F(LaunchCliTest, SingleNodeRunAndUserError) {
  const std::string rank = script("rank.sh", dump_env_then("exit 0"));
  Environment env = cli_env();
  env["OUT"] = out_.string();
  int status = wait_exit(start_cli({"launch", "-q", "--hostfile", (dir_ / "hostfile").string(), "--include",
                                    "localhost:1", "--no_local_rank", rank},
                                   env));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  auto e = read_env_dump(out_ / "env.0");
  EXPECT_EQ(e["WORLD_SIZE"], "1");
  EXPECT_EQ(e["CUDA_VISIBLE_DEVICES"], "1");
  EXPECT_EQ(e["MASTER_ADDR"], "127.0.0.1");

  std::ofstream(dir_ / "bad_hostfile") << "worker-1 slots=abc\n";
  status = wait_exit(start_cli({"launch", "--hostfile", (dir_ / "bad_hostfile").string(), rank}, env));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

TEST_F(LaunchCliTest, SshRunnerStartsFourRanksOnTwoNodes) {
  const std::string rank = script("rank.sh", dump_env_then("exit 0"));
  const int status = wait_exit(start_cli({"launch", "-q", "--hostfile", (dir_ / "hostfile").string(), "--launcher",
                                          "ssh", "--master_addr", "127.0.0.1", "--master_port", "31555", rank, "x"},
                                         cli_env()));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (int r = 0; r < 4; ++r) {
    auto env = read_env_dump(out_ / ("env." + std::to_string(r)));
    EXPECT_EQ(env["RANK"], std::to_string(r));
    EXPECT_EQ(env["LOCAL_RANK"], std::to_string(r % 2));
    EXPECT_EQ(env["WORLD_SIZE"], "4");
    EXPECT_EQ(env["LOCAL_WORLD_SIZE"], "2");
    EXPECT_EQ(env["CROSS_RANK"], std::to_string(r / 2));
    EXPECT_EQ(env["CROSS_SIZE"], "2");
    EXPECT_EQ(env["MASTER_ADDR"], "127.0.0.1");
    EXPECT_EQ(env["MASTER_PORT"], "31555");
    EXPECT_EQ(env["CUDA_VISIBLE_DEVICES"], "0,1");
    EXPECT_EQ(env["NCCL_ZT_TEST"], "forwarded");           // NCCL_* is exported to every node
    EXPECT_EQ(env["PYTHONPATH"].substr(0, dir_.string().size()), dir_.string());  // cwd first
    EXPECT_EQ(env.count("ZT_FAKE_SSH_LOG"), 0u);           // other variables are not
    EXPECT_EQ(read_file(out_ / ("args." + std::to_string(r))), fmt::format("--local_rank={} x\n", r % 2));
  }
  // Each node agent was started through ssh, by host name, in this directory.
  const std::string log = read_file(dir_ / "ssh.log");
  EXPECT_NE(log.find("-o BatchMode=yes 127.0.0.1 cd " + dir_.string() + " && export"), std::string::npos) << log;
  EXPECT_NE(log.find("-o BatchMode=yes localhost cd " + dir_.string() + " && export"), std::string::npos) << log;
}

TEST_F(LaunchCliTest, FailedRankOnOneNodeStopsEveryNode) {
  const std::string rank = script("rank.sh", dump_env_then(
                                                 "if [ \"$RANK\" = 3 ]; then\n"
                                                 "  while [ ! -f \"$OUT/pid.0\" ] || [ ! -f \"$OUT/pid.1\" ] || "
                                                 "[ ! -f \"$OUT/pid.2\" ]; do sleep 0.05; done\n"
                                                 "  exit 3\nfi\nexec sleep 100"));
  const auto start = Clock::now();
  const int status = wait_exit(start_cli({"launch", "-q", "--hostfile", (dir_ / "hostfile").string(), "--launcher",
                                          "ssh", "--no_local_rank", rank},
                                         cli_env()));
  EXPECT_LT(Clock::now() - start, 20s);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  for (const auto& f : out_files("pid.", 3)) EXPECT_TRUE(process_gone(read_pid(f))) << f;
}

TEST_F(LaunchCliTest, HardKilledLauncherStopsRemoteRanks) {
  const std::string rank = script("rank.sh", dump_env_then("exec sleep 100"));
  const pid_t cli = start_cli({"launch", "-q", "--hostfile", (dir_ / "hostfile").string(), "--launcher", "ssh",
                               "--no_local_rank", rank},
                              cli_env());
  ASSERT_TRUE(wait_files(out_files("pid.", 4)));
  ::kill(cli, SIGKILL);
  wait_exit(cli);
  // The agents read EOF on stdin (the launcher's pipe to ssh closed) and stop their ranks.
  for (const auto& f : out_files("pid.", 4)) {
    const pid_t pid = read_pid(f);
    EXPECT_TRUE(eventually([&] { return process_gone(pid); }, 10s)) << f;
  }
}

TEST_F(LaunchCliTest, PdshRunnerFindsNodeRanksByHostName) {
  const Environment env = cli_env();
  if (!find_program("pdsh", env.at("PATH"))) GTEST_SKIP() << "pdsh is not installed";
  // pdsh sorts its targets (127.0.0.1 before localhost); node ranks must still follow the hostfile.
  std::ofstream(dir_ / "hostfile") << "localhost slots=2\n127.0.0.1 slots=1\n";
  const std::string rank = script("rank.sh", dump_env_then("exit 0"));
  const int status = wait_exit(start_cli({"launch", "-q", "--hostfile", (dir_ / "hostfile").string(), "--launcher",
                                          "pdsh", "--no_local_rank", rank, "50%"},
                                         env));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (int r = 0; r < 3; ++r) {
    auto e = read_env_dump(out_ / ("env." + std::to_string(r)));
    EXPECT_EQ(e["CROSS_RANK"], r < 2 ? "0" : "1");
    EXPECT_EQ(e["LOCAL_RANK"], r < 2 ? std::to_string(r) : "0");
    EXPECT_EQ(e["WORLD_SIZE"], "3");
    EXPECT_EQ(e["MASTER_ADDR"], "localhost");
    EXPECT_EQ(read_file(out_ / ("args." + std::to_string(r))), "50%\n");  // pdsh left the '%' alone
  }
}

TEST_F(LaunchCliTest, PdshRunnerStopCommandReachesNodeAgents) {
  Environment env = cli_env();
  if (!find_program("pdsh", env.at("PATH"))) GTEST_SKIP() << "pdsh is not installed";
  // Like a real ssh, this one leaves the remote command running when it is killed: only the launcher's stop
  // command (pdsh ... pkill) can end the node agents.
  const fs::path ssh = dir_ / "fakebin/ssh";
  std::ofstream(ssh) << "#!/bin/sh\n"
                        "while [ $# -gt 0 ]; do\n"
                        "  case \"$1\" in -o|-p) shift 2 ;; -*) shift ;; *) break ;; esac\n"
                        "done\n"
                        "host=\"$1\"; shift\n"
                        "flag=$(mktemp); rm -f \"$flag\"\n"
                        "(setsid env -i PATH=\"$PATH\" HOME=\"$HOME\" sh -c \"$*\" < /dev/null; echo > \"$flag\") &\n"
                        "while [ ! -f \"$flag\" ]; do sleep 0.05; done\n"
                        "rm -f \"$flag\"\n";
  const std::string rank = script("rank.sh", dump_env_then("exec sleep 100"));
  const pid_t cli = start_cli({"launch", "-q", "--hostfile", (dir_ / "hostfile").string(), "--launcher", "pdsh",
                               "--master_port", "31777", "--terminate_timeout", "5", "--no_local_rank", rank},
                              env);
  ASSERT_TRUE(wait_files(out_files("pid.", 4)));
  ::kill(cli, SIGTERM);
  const int status = wait_exit(cli);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
  for (const auto& f : out_files("pid.", 4)) {
    const pid_t pid = read_pid(f);
    EXPECT_TRUE(eventually([&] { return process_gone(pid); }, 10s)) << f;
  }
}

TEST_F(LaunchCliTest, OpenMpiRunnerRunsMpirunForReal) {
  const Environment env = cli_env();
  if (!find_program("mpirun", env.at("PATH"))) GTEST_SKIP() << "mpirun is not installed";
  const std::string rank = script("rank.sh", dump_env_then("exit 0"));
  std::ofstream(dir_ / "one_node") << "localhost slots=4\n";
  const int status = wait_exit(start_cli({"launch", "-q", "--launcher", "openmpi", "--hostfile",
                                          (dir_ / "one_node").string(), "--num_gpus", "2", rank},
                                         env),
                               90s);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (int r = 0; r < 2; ++r) {
    auto e = read_env_dump(out_ / ("env." + std::to_string(r)));
    EXPECT_EQ(e["OMPI_COMM_WORLD_RANK"], std::to_string(r));
    EXPECT_EQ(e["RANK"], e["OMPI_COMM_WORLD_RANK"]);
    EXPECT_EQ(e["LOCAL_RANK"], std::to_string(r));
    EXPECT_EQ(e["WORLD_SIZE"], "2");
    EXPECT_EQ(e["MASTER_ADDR"], "127.0.0.1");
    EXPECT_EQ(e["CUDA_VISIBLE_DEVICES"], "0,1");
    EXPECT_EQ(e["NCCL_ZT_TEST"], "forwarded");
    EXPECT_EQ(read_file(out_ / ("args." + std::to_string(r))), fmt::format("--local_rank={}\n", r));
  }
}

}  // namespace
}  // namespace zerotrain::detail
