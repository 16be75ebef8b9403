#include "launch/process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "launch/error.h"
#include "launch/shell.h"

namespace zerotrain::detail {
namespace {

// Reports errno from the child to the parent over a close-on-exec pipe, then exits.
[[noreturn]] void child_fail(int report_fd, int err) {
  (void)!::write(report_fd, &err, sizeof(err));
  ::_exit(127);
}

}  // namespace

ChildProcess ChildProcess::start(const ProcessSpec& spec, const sigset_t& child_mask) {
  if (spec.argv.empty()) throw LaunchError(fmt::format("{}: no program to run", spec.label));
  const auto path_it = spec.env.find("PATH");
  const auto program = find_program(spec.argv[0], path_it == spec.env.end() ? "" : path_it->second);
  if (!program) {
    throw LaunchError(fmt::format("{}: program '{}' {}", spec.label, spec.argv[0],
                                  spec.argv[0].find('/') == std::string::npos
                                      ? "is not found on PATH"
                                      : "does not exist or is not an executable file"));
  }
  // Everything the child needs is built before fork: after it only async-signal-safe calls are allowed.
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::vector<std::string> env_strings = environment_strings(spec.env);
  std::vector<char*> envp;
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  UniqueFd log_fd;
  if (!spec.log_path.empty()) {
    log_fd.reset(::open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!log_fd) {
      throw LaunchError(fmt::format("{}: cannot open log file {}: {}", spec.label, spec.log_path,
                                    std::strerror(errno)));
    }
  }
  UniqueFd stdin_read, stdin_write;
  if (spec.stdin_mode == StdinMode::kNull) {
    stdin_read.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  } else if (spec.stdin_mode == StdinMode::kPipe) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw LaunchError(fmt::format("{}: pipe: {}", spec.label, std::strerror(errno)));
    stdin_read.reset(fds[0]);
    stdin_write.reset(fds[1]);
  }
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  for (int c : spec.cpus) CPU_SET(c, &cpus);
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) throw LaunchError(fmt::format("{}: pipe: {}", spec.label, std::strerror(errno)));
  UniqueFd report_read(report[0]), report_write(report[1]);
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) throw LaunchError(fmt::format("{}: fork: {}", spec.label, std::strerror(errno)));
  if (pid == 0) {
    const int rfd = report_write.get();
    if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) child_fail(rfd, errno);
    if (::getppid() != parent) ::_exit(128 + SIGTERM);  // the launcher died before prctl took effect
    if (stdin_read && ::dup2(stdin_read.get(), STDIN_FILENO) < 0) child_fail(rfd, errno);
    if (log_fd && (::dup2(log_fd.get(), STDOUT_FILENO) < 0 || ::dup2(log_fd.get(), STDERR_FILENO) < 0)) {
      child_fail(rfd, errno);
    }
    if (!spec.cpus.empty() && ::sched_setaffinity(0, sizeof(cpus), &cpus) != 0) child_fail(rfd, errno);
    ::pthread_sigmask(SIG_SETMASK, &child_mask, nullptr);
    ::execve(program->c_str(), argv.data(), envp.data());
    child_fail(rfd, errno);
  }
  report_write.reset();
  ChildProcess child(pid, spec.label, std::move(stdin_write));
  int err = 0;
  ssize_t n;
  do {
    n = ::read(report_read.get(), &err, sizeof(err));
  } while (n < 0 && errno == EINTR);
  if (n == sizeof(err)) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    child.pid_ = -1;
    throw LaunchError(fmt::format("{}: cannot execute {}: {}", spec.label, *program, std::strerror(err)));
  }
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      label_(std::move(other.label_)),
      stdin_pipe_(std::move(other.stdin_pipe_)),
      exited_(other.exited_),
      status_(other.status_) {}

ChildProcess::~ChildProcess() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

bool ChildProcess::poll() {
  if (!running()) return true;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = status;
  } else if (r < 0 && errno == ECHILD) {
    exited_ = true;  // reaped elsewhere; nothing is known about how it ended
    status_ = 0;
  }
  return exited_;
}

void ChildProcess::signal(int signo) const {
  if (running()) ::kill(pid_, signo);
}

std::string signal_name(int signo) {
  const char* abbrev = ::sigabbrev_np(signo);
  return abbrev ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", signo);
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("was killed by signal {} ({}){}", WTERMSIG(status), signal_name(WTERMSIG(status)),
                       WCOREDUMP(status) ? ", core dumped" : "");
  }
  return fmt::format("ended with wait status {:#x}", status);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace zerotrain::detail
