#include "host_sampler.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace zt_bench {
namespace {

constexpr int kMaxSamples = 40000;
constexpr int kDepth = 64;
// Frames of the handler itself and the kernel's signal trampoline, above the interrupted function.
constexpr int kSkip = 2;

void* g_frames[kMaxSamples][kDepth];
int g_depth[kMaxSamples];
std::atomic<int> g_count{0};
std::atomic<int> g_dropped{0};

void on_sigprof(int /*sig*/, siginfo_t* /*info*/, void* /*ucontext*/) {
  const int saved_errno = errno;
  const int i = g_count.fetch_add(1, std::memory_order_relaxed);
  if (i < kMaxSamples) {
    g_depth[i] = backtrace(g_frames[i], kDepth);
  } else {
    g_dropped.fetch_add(1, std::memory_order_relaxed);
  }
  errno = saved_errno;
}

std::string demangle(const char* name) {
  int status = 0;
  char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string s = status == 0 && out != nullptr ? out : name;
  std::free(out);
  return s;
}

// Function names without argument lists and template arguments: "ns::Class::method".
std::string shorten(std::string s) {
  std::string out;
  int depth = 0;
  for (char c : s) {
    if (c == '<' || c == '(') ++depth;
    if (depth == 0) out.push_back(c);
    if ((c == '>' || c == ')') && depth > 0) --depth;
  }
  return out.size() > 110 ? out.substr(0, 110) : out;
}

struct Symbol {
  std::string function, library;
};

const Symbol& symbolize(void* address, std::unordered_map<void*, Symbol>& cache) {
  auto it = cache.find(address);
  if (it != cache.end()) return it->second;
  Symbol s;
  Dl_info info{};
  // A return address points past the call: look up the byte before it.
  if (dladdr(static_cast<char*>(address) - 1, &info) != 0) {
    const char* file = info.dli_fname != nullptr ? std::strrchr(info.dli_fname, '/') : nullptr;
    s.library = file != nullptr ? file + 1 : (info.dli_fname != nullptr ? info.dli_fname : "?");
    s.function = info.dli_sname != nullptr ? shorten(demangle(info.dli_sname)) : "[" + s.library + "]";
  } else {
    s.library = "?";
    s.function = "[?]";
  }
  return cache.emplace(address, std::move(s)).first->second;
}

void print_table(const char* title, const char* table, const std::map<std::string, int>& counts, int total, int top) {
  std::vector<std::pair<int, std::string>> rows;
  for (const auto& [name, n] : counts) rows.emplace_back(n, name);
  std::sort(rows.rbegin(), rows.rend());
  for (int i = 0; i < top && i < static_cast<int>(rows.size()); ++i) {
    fmt::print("SAMPLE {} {} {:5.1f}% {}\n", title, table, 100.0 * rows[i].first / std::max(total, 1), rows[i].second);
  }
}

}  // namespace

void sampler_start(int period_us) {
  void* warm[4];
  backtrace(warm, 4);  // the first call loads the unwinder (it allocates): not inside the handler
  g_count = 0;
  g_dropped = 0;
  struct sigaction sa {};
  sa.sa_sigaction = on_sigprof;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPROF, &sa, nullptr);
  itimerval timer{};
  timer.it_interval.tv_usec = period_us;
  timer.it_value.tv_usec = period_us;
  setitimer(ITIMER_PROF, &timer, nullptr);
}

void sampler_stop() {
  itimerval off{};
  setitimer(ITIMER_PROF, &off, nullptr);
  signal(SIGPROF, SIG_IGN);
}

void sampler_report(const char* title, int top) {
  const int n = std::min(g_count.load(), kMaxSamples);
  std::unordered_map<void*, Symbol> cache;
  std::map<std::string, int> self, inclusive, engine, calls, library;
  for (int i = 0; i < n; ++i) {
    if (g_depth[i] <= kSkip) continue;
    const Symbol& leaf = symbolize(g_frames[i][kSkip], cache);
    ++self[leaf.function];
    ++library[leaf.library];
    std::set<std::string> seen;
    std::string owner = "(none)", callee = "(itself)";
    for (int k = kSkip; k < g_depth[i]; ++k) {
      const Symbol& s = symbolize(g_frames[i][k], cache);
      if (seen.insert(s.function).second) ++inclusive[s.function];
      if (owner == "(none)" && s.function.find("zerotrain::") != std::string::npos) {
        owner = s.function;
        // The function it called; the engine's own unexported helpers (anonymous namespaces, lambdas: no symbol)
        // are looked through to what they called.
        for (int j = k - 1; j >= kSkip; --j) {
          callee = symbolize(g_frames[i][j], cache).function;
          if (callee.rfind("[libzerotrain", 0) != 0) break;
        }
      }
    }
    ++engine[owner];
    if (owner != "(none)") ++calls[owner + " -> " + callee];
  }
  fmt::print("SAMPLE {} samples {} (dropped {})\n", title, n, g_dropped.load());
  print_table(title, "self", self, n, top);
  print_table(title, "inclusive", inclusive, n, 4 * top);
  print_table(title, "zerotrain", engine, n, top);
  print_table(title, "calls", calls, n, 2 * top);
  print_table(title, "library", library, n, 12);
  g_count = 0;
}

}  // namespace zt_bench
