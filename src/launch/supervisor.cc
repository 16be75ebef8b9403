#include "launch/supervisor.h"

#include <dirent.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>

#include "launch/error.h"

namespace zerotrain::detail {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kKillWait = std::chrono::seconds(10);     // after SIGKILL, before giving up on a process
constexpr auto kOrphanGrace = std::chrono::seconds(2);   // SIGTERM -> SIGKILL for left-behind descendants

template <typename... Args>
void say(fmt::format_string<Args...> format, Args&&... args) {
  fmt::print(stderr, "zerotrain launch: {}\n", fmt::format(format, std::forward<Args>(args)...));
  std::fflush(stderr);
}

// Blocks the signals the launcher handles and receives them through a signalfd; restores the mask on exit.
class SignalScope {
 public:
  SignalScope() {
    sigemptyset(&handled_);
    for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&handled_, s);
    if (::pthread_sigmask(SIG_BLOCK, &handled_, &previous_) != 0) throw LaunchError("pthread_sigmask failed");
    fd_.reset(::signalfd(-1, &handled_, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd_) {
      ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
      throw LaunchError(fmt::format("signalfd: {}", std::strerror(errno)));
    }
  }
  ~SignalScope() {
    fd_.reset();
    // Drain what arrived while blocked, so unblocking does not deliver a stale SIGCHLD/SIGTERM.
    timespec zero{};
    while (::sigtimedwait(&handled_, nullptr, &zero) > 0) {
    }
    ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

  int fd() const { return fd_.get(); }
  const sigset_t& previous_mask() const { return previous_; }

 private:
  sigset_t handled_{};
  sigset_t previous_{};
  UniqueFd fd_;
};

// Makes this process the child subreaper for the launch (descendants of dead ranks are reparented here, so
// they can be stopped), and restores the previous setting.
class SubreaperScope {
 public:
  SubreaperScope() {
    ::prctl(PR_GET_CHILD_SUBREAPER, &previous_);
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  }
  ~SubreaperScope() { ::prctl(PR_SET_CHILD_SUBREAPER, previous_); }
  SubreaperScope(const SubreaperScope&) = delete;
  SubreaperScope& operator=(const SubreaperScope&) = delete;

 private:
  int previous_ = 0;
};

// The pids of this process's children, from /proc/self/task/*/children.
std::set<pid_t> list_children() {
  std::set<pid_t> pids;
  std::unique_ptr<DIR, int (*)(DIR*)> tasks(::opendir("/proc/self/task"), ::closedir);
  if (!tasks) return pids;
  while (const dirent* e = ::readdir(tasks.get())) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(fmt::format("/proc/self/task/{}/children", e->d_name));
    pid_t pid = 0;
    while (in >> pid) pids.insert(pid);
  }
  return pids;
}

class Run {
 public:
  Run(const SupervisorOptions& options, const SignalScope& signals)
      : options_(options), signals_(signals), watch_stdin_(options.stop_on_stdin_eof) {}

  void start(const std::vector<ProcessSpec>& specs) {
    try {
      for (const auto& spec : specs) children_.push_back(ChildProcess::start(spec, signals_.previous_mask()));
    } catch (const LaunchError&) {
      begin_stop(SIGTERM);
      wait_all();
      throw;
    }
  }

  void wait_all() {
    while (true) {
      reap();
      if (num_running() == 0) break;
      if (stopping_ && !killed_ && Clock::now() >= deadline_) {
        say("{} process{} still running {:g} s after being asked to stop; sending SIGKILL", num_running(),
            num_running() == 1 ? "" : "es", options_.terminate_timeout_s);
        kill_all();
      }
      if (killed_ && Clock::now() >= deadline_) {
        for (auto& c : children_) {
          if (!c.running()) continue;
          say("{} (pid {}) did not exit after SIGKILL; abandoning it", c.label(), c.pid());
          c.abandon();
        }
        break;
      }
      wait_for_event();
    }
  }

  int exit_code() const {
    if (failure_) return exit_code_of(*failure_);
    if (stop_signal_) return 128 + stop_signal_;
    return 0;
  }

 private:
  int num_running() const {
    return static_cast<int>(std::count_if(children_.begin(), children_.end(),
                                          [](const ChildProcess& c) { return c.running(); }));
  }

  void wait_for_event() {
    int timeout_ms = -1;
    if (stopping_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(left + 1, 0, 1000));
    }
    pollfd fds[2] = {{signals_.fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    const int n = ::poll(fds, watch_stdin_ ? 2 : 1, timeout_ms);
    if (n <= 0) return;
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(signals_.fd(), &info, sizeof(info)) == sizeof(info)) {
        if (info.ssi_signo != SIGCHLD) on_signal(static_cast<int>(info.ssi_signo));
      }
    }
    if (watch_stdin_ && fds[1].revents) {
      char buf[256];
      const ssize_t r = ::read(STDIN_FILENO, buf, sizeof(buf));
      if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
        watch_stdin_ = false;
        if (!stopping_) {
          say("stdin closed: the launcher that started this node is gone; stopping {} process{}", num_running(),
              num_running() == 1 ? "" : "es");
          stop_signal_ = SIGTERM;
          begin_stop(SIGTERM);
        }
      }
    }
  }

  void reap() {
    for (auto& c : children_) {
      if (!c.running() || !c.poll()) continue;
      const int status = c.wait_status();
      if (stopping_ || status == 0) continue;
      failure_ = status;
      const int others = num_running();
      if (others == 0) {
        say("{} (pid {}) {}", c.label(), c.pid(), describe_wait_status(status));
      } else {
        say("{} (pid {}) {}; stopping the other {} process{}", c.label(), c.pid(), describe_wait_status(status),
            others, others == 1 ? "" : "es");
      }
      begin_stop(SIGTERM);
    }
  }

  void on_signal(int signo) {
    if (stopping_) {
      if (!killed_) {
        say("received {} again; sending SIGKILL", signal_name(signo));
        kill_all();
      }
      return;
    }
    stop_signal_ = signo;
    say("received {}; stopping {} process{}", signal_name(signo), num_running(), num_running() == 1 ? "" : "es");
    begin_stop(signo);
  }

  // Asks every running process to stop; see [Note: stopping a launch].
  void begin_stop(int signo) {
    stopping_ = true;
    deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(options_.terminate_timeout_s));
    for (auto& c : children_) {
      if (c.has_stdin_pipe()) {
        c.close_stdin();
      } else {
        c.signal(signo);
      }
    }
    if (!options_.stop_command.empty()) {
      ProcessSpec stop{"stop command", options_.stop_command, options_.stop_command_env, {}, {}, StdinMode::kNull};
      try {
        children_.push_back(ChildProcess::start(stop, signals_.previous_mask()));
      } catch (const LaunchError& e) {
        say("{}", e.what());
      }
    }
  }

  void kill_all() {
    killed_ = true;
    deadline_ = Clock::now() + kKillWait;
    for (auto& c : children_) c.signal(SIGKILL);
  }

  const SupervisorOptions& options_;
  const SignalScope& signals_;
  std::vector<ChildProcess> children_;
  bool watch_stdin_;
  bool stopping_ = false;
  bool killed_ = false;
  Clock::time_point deadline_{};
  std::optional<int> failure_;  // wait status of the first process that failed
  int stop_signal_ = 0;         // the signal that stopped the launch, if one did
};

// Stops the descendants the ranks left behind (reparented to this subreaper): SIGTERM, then SIGKILL.
void stop_orphans(const std::set<pid_t>& before) {
  std::set<pid_t> orphans;
  for (pid_t p : list_children()) {
    if (!before.count(p)) orphans.insert(p);
  }
  if (orphans.empty()) return;
  for (pid_t p : orphans) ::kill(p, SIGTERM);
  const auto deadline = Clock::now() + kOrphanGrace;
  bool killed = false;
  while (!orphans.empty()) {
    for (auto it = orphans.begin(); it != orphans.end();) {
      int status = 0;
      const pid_t r = ::waitpid(*it, &status, WNOHANG);
      it = (r == *it || (r < 0 && errno == ECHILD)) ? orphans.erase(it) : std::next(it);
    }
    if (orphans.empty()) break;
    if (Clock::now() >= deadline) {
      if (killed) {
        say("{} left-behind process{} did not exit after SIGKILL; abandoning", orphans.size(),
            orphans.size() == 1 ? "" : "es");
        break;
      }
      for (pid_t p : orphans) ::kill(p, SIGKILL);
      killed = true;
    }
    ::usleep(20'000);
  }
}

}  // namespace

int supervise(const std::vector<ProcessSpec>& processes, const SupervisorOptions& options) {
  SignalScope signals;
  SubreaperScope subreaper;
  const std::set<pid_t> before = list_children();
  int code = 0;
  {
    Run run(options, signals);
    run.start(processes);
    run.wait_all();
    code = run.exit_code();
  }
  stop_orphans(before);
  return code;
}

}  // namespace zerotrain::detail
