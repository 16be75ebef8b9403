#include "engine/flops_profiler.h"

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <set>
#include <stdexcept>

namespace zerotrain::detail {
namespace {

thread_local FlopsProfiler* t_profiler = nullptr;
// The profiler counting now, if any: a callback left on a thread whose profiler is gone (the engine destroyed
// mid-forward on another thread) finds it null and does nothing.
std::atomic<FlopsProfiler*> g_counting{nullptr};
thread_local int t_counted_depth = 0;  // counted operators running on this thread (nested ones are not counted)

const std::set<std::string, std::less<>>& counted_ops() {
  static const std::set<std::string, std::less<>> ops = {
      "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::convolution",
      "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_efficient_attention",
      "aten::_scaled_dot_product_cudnn_attention", "aten::_scaled_dot_product_flash_attention_for_cpu"};
  return ops;
}

int64_t prod(const std::vector<int64_t>& v, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < v.size(); ++i) p *= v[i];
  return p;
}

std::vector<std::vector<int64_t>> input_shapes(const at::RecordFunction& fn) {
  std::vector<std::vector<int64_t>> shapes;
  for (const c10::IValue& v : fn.inputs()) {
    if (v.isTensor() && v.toTensor().defined()) {
      shapes.push_back(v.toTensor().sizes().vec());
    } else {
      shapes.emplace_back();
    }
  }
  return shapes;
}

// "zerotrain::LlamaBlockImpl" -> "LlamaBlock", as Python prints a module's class.
std::string class_name(const std::string& type) {
  std::string s = type.substr(type.rfind("::") == std::string::npos ? 0 : type.rfind("::") + 2);
  if (s.size() > 4 && s.ends_with("Impl")) s.resize(s.size() - 4);
  return s;
}

struct OpContext final : at::ObserverContext {
  bool counted = false;
  int node = 0;
  std::vector<std::vector<int64_t>> shapes;  // convolutions: counted at the end, with the output's size
};

std::string pct(double part, double total) {
  return total > 0 ? fmt::format("{:g}", std::round(10000.0 * part / total) / 100.0) : "0";
}

}  // namespace

int64_t operator_macs(std::string_view name, const std::vector<std::vector<int64_t>>& s, int64_t output_numel) {
  auto dim = [&](size_t i) { return i < s.size() ? s[i].size() : 0; };
  if (name == "aten::mm" && dim(0) == 2 && dim(1) == 2) return s[0][0] * s[0][1] * s[1][1];
  if (name == "aten::addmm" && dim(1) == 2 && dim(2) == 2) return s[1][0] * s[1][1] * s[2][1];
  if (name == "aten::bmm" && dim(0) == 3 && dim(1) == 3) return s[0][0] * s[0][1] * s[0][2] * s[1][2];
  if (name == "aten::baddbmm" && dim(1) == 3 && dim(2) == 3) return s[1][0] * s[1][1] * s[1][2] * s[2][2];
  if (name.starts_with("aten::_scaled_dot_product_") && dim(0) >= 2 && dim(1) >= 2 && dim(2) >= 2) {
    // QK^T: batch x Sq x Sk x D, then PV: batch x Sq x Sk x Dv (batch = every leading dimension of Q)
    const auto& q = s[0];
    const int64_t batch = prod(q, 0, q.size() - 2), sq = q[q.size() - 2], d = q.back();
    const int64_t sk = s[1][s[1].size() - 2], dv = s[2].back();
    return batch * sq * sk * (d + dv);
  }
  if (name == "aten::convolution" && dim(1) >= 3) return output_numel * prod(s[1], 1, s[1].size());
  return 0;
}

std::string ds_number(double num) {
  double magnitude = 1;
  const char* units = "";
  if (num >= 1e12) {
    magnitude = 1e12, units = "T";
  } else if (num >= 1e9) {
    magnitude = 1e9, units = "G";
  } else if (num >= 1e6) {
    magnitude = 1e6, units = "M";
  } else if (num >= 1e3) {
    magnitude = 1e3, units = "K";
  } else if (num >= 1 || num == 0) {
    magnitude = 1, units = "";
  } else if (num >= 1e-3) {
    magnitude = 1e-3, units = "m";
  } else {
    magnitude = 1e-6, units = "u";
  }
  return fmt::format("{:g} {}", std::round(num / magnitude * 100) / 100, units);
}

namespace {
std::string params_str(double n) {
  std::string s = ds_number(n);
  std::replace(s.begin(), s.end(), 'G', 'B');
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}
std::string macs_str(double n) { return ds_number(n) + "MACs"; }
std::string flops_str(double n) { return ds_number(n) + "FLOPS"; }
std::string duration_str(double seconds) { return ds_number(seconds) + "s"; }
}  // namespace

std::unique_ptr<at::ObserverContext> flops_on_enter(const at::RecordFunction& fn) {
  FlopsProfiler* p = t_profiler;
  if (p == nullptr || p != g_counting.load() || !p->counting_ || !counted_ops().contains(fn.name())) return nullptr;
  auto ctx = std::make_unique<OpContext>();
  if (t_counted_depth++ > 0) return ctx;  // inside a counted operator: its own kernels
  ctx->counted = true;
  ctx->node = p->owner_of(fn);
  ctx->shapes = input_shapes(fn);
  if (std::string_view(fn.name()) != "aten::convolution") {
    p->add(ctx->node, operator_macs(fn.name(), ctx->shapes));
    p->op_macs_[fn.name()] += operator_macs(fn.name(), ctx->shapes);
  }
  return ctx;
}

void flops_on_exit(const at::RecordFunction& fn, at::ObserverContext* base) {
  auto* ctx = static_cast<OpContext*>(base);
  if (ctx == nullptr) return;
  --t_counted_depth;
  FlopsProfiler* p = t_profiler;
  if (!ctx->counted || p == nullptr || p != g_counting.load() || std::string_view(fn.name()) != "aten::convolution") {
    return;
  }
  int64_t out = 0;
  for (const c10::IValue& v : fn.outputs()) {
    if (v.isTensor() && v.toTensor().defined()) out += v.toTensor().numel();
  }
  const int64_t macs = operator_macs(fn.name(), ctx->shapes, out);
  p->add(ctx->node, macs);
  p->op_macs_[fn.name()] += macs;
}

FlopsProfiler::FlopsProfiler(const FlopsProfilerConfig& config, torch::nn::Module& root,
                             const std::vector<std::vector<at::Tensor>>& segments, c10::Device device)
    : config_(config), device_(device) {
  std::vector<int> parent;
  std::function<void(torch::nn::Module&, const std::string&, int, int)> build =
      [&](torch::nn::Module& m, const std::string& name, int depth, int up) {
        const int id = static_cast<int>(nodes_.size());
        Node n;
        n.name = name;
        n.type = class_name(m.name());
        n.module = &m;
        n.depth = depth;
        std::vector<at::Tensor> own;
        for (const auto& item : m.named_parameters(/*recurse=*/false)) {
          n.own_params += item.value().numel();
          own.push_back(item.value());
        }
        nodes_.push_back(std::move(n));
        parent.push_back(up);
        own_params_.emplace_back(&m, std::move(own));
        by_name_.emplace(name, id);
        if (up >= 0) nodes_[up].children.push_back(id);
        for (const auto& child : m.named_children()) {
          build(*child.value(), name.empty() ? child.key() : name + "." + child.key(), depth + 1, id);
        }
      };
  build(root, "", 0, -1);
  // A segment's module: the deepest one whose subtree owns every parameter of the segment.
  std::unordered_map<const void*, int> owner;
  for (size_t i = 0; i < own_params_.size(); ++i) {
    for (const auto& t : own_params_[i].second) owner.emplace(t.unsafeGetTensorImpl(), static_cast<int>(i));
  }
  for (const auto& params : segments) {
    std::optional<std::vector<int>> common;  // root-to-node path shared by every owner so far
    for (const auto& t : params) {
      auto it = owner.find(t.unsafeGetTensorImpl());
      if (it == owner.end()) continue;
      std::vector<int> path;
      for (int n = it->second; n >= 0; n = parent[n]) path.insert(path.begin(), n);
      if (!common) {
        common = path;
      } else {
        size_t k = 0;
        while (k < common->size() && k < path.size() && (*common)[k] == path[k]) ++k;
        common->resize(k);
      }
    }
    segment_node_.push_back(common && !common->empty() ? common->back() : 0);
  }
}

FlopsProfiler::~FlopsProfiler() {
  FlopsProfiler* self = this;
  g_counting.compare_exchange_strong(self, nullptr);
  if (handle_) at::removeCallback(*handle_);
  if (t_profiler == this) t_profiler = nullptr;
}

void FlopsProfiler::index_parameters() {
  places_.clear();
  for (size_t i = 0; i < own_params_.size(); ++i) {
    for (const auto& t : own_params_[i].second) {
      if (!t.has_storage()) continue;
      places_[t.storage().unsafeGetStorageImpl()].push_back(
          {t.storage_offset(), t.storage_offset() + t.numel(), static_cast<int>(i)});
    }
  }
  for (auto& [key, v] : places_) std::sort(v.begin(), v.end(), [](const Place& a, const Place& b) { return a.begin < b.begin; });
}

int FlopsProfiler::owner_of(const at::RecordFunction& fn) const {
  for (const c10::IValue& v : fn.inputs()) {
    if (!v.isTensor()) continue;
    const at::Tensor& t = v.toTensor();
    if (!t.defined() || !t.has_storage()) continue;
    auto it = places_.find(t.storage().unsafeGetStorageImpl());
    if (it == places_.end()) continue;
    const int64_t off = t.storage_offset();
    auto p = std::upper_bound(it->second.begin(), it->second.end(), off,
                              [](int64_t o, const Place& pl) { return o < pl.begin; });
    if (p != it->second.begin() && off < std::prev(p)->end) return std::prev(p)->node;
  }
  return stack_.empty() ? 0 : stack_.back();
}

void FlopsProfiler::add(int node, int64_t macs) { nodes_[node].own_macs += macs; }

void FlopsProfiler::begin_forward(int64_t global_steps, bool first_micro_step) {
  if (counted_ || counting_ || global_steps != config_.profile_step || !first_micro_step) return;
  index_parameters();
  t_profiler = this;
  g_counting.store(this);
  t_counted_depth = 0;
  handle_ = at::addThreadLocalCallback(
      at::RecordFunctionCallback(flops_on_enter, flops_on_exit).needsInputs(true).needsOutputs(true).scopes(
          {at::RecordScope::FUNCTION}));
  counting_ = true;
}

void FlopsProfiler::end_forward() {
  if (!counting_) return;
  while (!stack_.empty()) exit();
  counting_ = false;
  counted_ = true;
  FlopsProfiler* self = this;
  g_counting.compare_exchange_strong(self, nullptr);
  if (handle_) at::removeCallback(*handle_);
  handle_.reset();
  t_profiler = nullptr;
}

void FlopsProfiler::enter_segment(int64_t index) {
  if (!counting_) return;
  const int node = index >= 0 && index < static_cast<int64_t>(segment_node_.size()) ? segment_node_[index] : 0;
  Span s;
  // The same module entered again inside itself (a stage-3 segment and the Python hook of its module): one span. A
  // segment of the root (one spanning top-level modules, such as a head of norm and projection) is not timed: the
  // root's time is the whole forward's.
  s.node = (!stack_.empty() && stack_.back() == node) || (node == 0 && !timing_root_) ? -1 : node;
  stack_.push_back(node);
  if (s.node < 0) {
  } else if (device_.is_cpu()) {
    s.host_begin = std::chrono::steady_clock::now();
  } else {
    s.begin.emplace(device_.type(), c10::EventFlag::BACKEND_DEFAULT);
    s.begin->record(c10::impl::getDeviceGuardImpl(device_.type())->getStream(device_));
  }
  open_.push_back(std::move(s));
}

void FlopsProfiler::enter_module(const std::string& qualified_name) {
  if (!counting_) return;
  auto it = by_name_.find(qualified_name);
  const int node = it == by_name_.end() ? (stack_.empty() ? 0 : stack_.back()) : it->second;
  // Reuse enter_segment's span bookkeeping with the node found by name.
  segment_node_.push_back(node);
  timing_root_ = true;  // a frontend's module hooks bracket the root's forward itself
  enter_segment(static_cast<int64_t>(segment_node_.size()) - 1);
  timing_root_ = false;
  segment_node_.pop_back();
}

void FlopsProfiler::exit() {
  if (!counting_ || stack_.empty() || open_.empty()) return;
  stack_.pop_back();
  Span s = std::move(open_.back());
  open_.pop_back();
  if (s.node < 0) return;
  if (device_.is_cpu()) {
    s.host_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.host_begin).count();
  } else {
    s.end.emplace(device_.type(), c10::EventFlag::BACKEND_DEFAULT);
    s.end->record(c10::impl::getDeviceGuardImpl(device_.type())->getStream(device_));
  }
  spans_.push_back(std::move(s));
}

int64_t FlopsProfiler::subtree_macs(int node) const {
  int64_t m = nodes_[node].own_macs;
  for (int c : nodes_[node].children) m += subtree_macs(c);
  return m;
}

int64_t FlopsProfiler::subtree_params(int node) const {
  int64_t p = nodes_[node].own_params;
  for (int c : nodes_[node].children) p += subtree_params(c);
  return p;
}

// DeepSpeed's get_module_duration: the module's own time, or its children's when it ran none itself (a container).
double FlopsProfiler::subtree_seconds(int node) const {
  double s = nodes_[node].own_seconds;
  if (s == 0) {
    for (int c : nodes_[node].children) s += subtree_seconds(c);
  }
  return s;
}

int64_t FlopsProfiler::total_macs() const { return subtree_macs(0); }

int64_t FlopsProfiler::macs_of(const std::string& qualified_name) const {
  auto it = by_name_.find(qualified_name);
  return it == by_name_.end() ? 0 : subtree_macs(it->second);
}

std::string FlopsProfiler::tree(int node, int indent, int64_t total_params, int64_t total_macs,
                                double total_seconds) const {
  const Node& n = nodes_[node];
  const int64_t params = subtree_params(node), macs = subtree_macs(node);
  const double seconds = subtree_seconds(node);
  const std::string stats = fmt::format(
      "{} = {}% Params, {} = {}% MACs, {} = {}% latency, {}", params_str(static_cast<double>(params)),
      pct(static_cast<double>(params), static_cast<double>(total_params)), macs_str(static_cast<double>(macs)),
      pct(static_cast<double>(macs), static_cast<double>(total_macs)), duration_str(seconds),
      pct(seconds, total_seconds), flops_str(seconds > 0 ? std::round(2.0 * macs / seconds * 100) / 100 : 0));
  if (n.children.empty()) return n.type + "(" + stats + ")";
  const std::string pad(indent + 2, ' ');
  std::string out = n.type + "(\n" + pad + stats + "\n";
  for (int c : n.children) {
    const std::string local = nodes_[c].name.substr(n.name.empty() ? 0 : n.name.size() + 1);
    out += pad + "(" + local + "): " + tree(c, indent + 2, total_params, total_macs, total_seconds) + "\n";
  }
  return out + std::string(indent, ' ') + ")";
}

void FlopsProfiler::report(const ProfileFacts& f) {
  if (!report_due()) return;
  reported_ = true;
  for (Span& s : spans_) {
    if (s.begin) {
      s.end->synchronize();
      s.host_seconds = s.begin->elapsedTime(*s.end) / 1e3;
    }
    nodes_[s.node].own_seconds += s.host_seconds;
  }
  spans_.clear();
  // The root's latency is its forward's: bracketed by a frontend's hook, else the engine's forward timer.
  if (nodes_[0].own_seconds == 0) nodes_[0].own_seconds = f.fwd_ms / 1e3;
  const double macs = static_cast<double>(total_macs()), flops = 2 * macs;
  const double params = static_cast<double>(subtree_params(0));
  const double fwd = f.fwd_ms / 1e3, bwd = f.bwd_ms / 1e3, step = f.step_ms / 1e3;
  const double bwd_factor = 2 + config_.recompute_fwd_factor;
  std::string out;
  auto line = [&](const std::string& label, const std::string& value) {
    out += fmt::format("{:<70}  {:<8}\n", label, value);
  };
  out += "\n-------------------------- DeepSpeed Flops Profiler --------------------------\n";
  out += fmt::format("Profile Summary at step {}:\n", config_.profile_step);
  out += "Notations:\n"
         "data parallel size (dp_size), model parallel size(mp_size),\n"
         "number of parameters (params), number of multiply-accumulate operations(MACs),\n"
         "number of floating-point operations (flops), floating-point operations per second (FLOPS),\n"
         "fwd latency (forward propagation latency), bwd latency (backward propagation latency),\n"
         "step (weights update latency), iter latency (sum of fwd, bwd and step latency)\n\n";
  line("world size: ", std::to_string(f.world_size));
  line("data parallel size: ", std::to_string(f.world_size));
  line("model parallel size: ", "1");
  line("batch size per GPU: ", std::to_string(f.micro_batch_per_gpu));
  line("params per GPU: ", params_str(params));
  line("params of model = params per GPU * mp_size: ", params_str(params));
  line("fwd MACs per GPU: ", macs_str(macs));
  line("fwd flops per GPU: ", ds_number(flops));
  line("fwd flops of model = fwd flops per GPU * mp_size: ", ds_number(flops));
  line("fwd latency: ", duration_str(fwd));
  line("fwd FLOPS per GPU = fwd flops per GPU / fwd latency: ", flops_str(fwd > 0 ? flops / fwd : 0));
  if (f.have_bwd) {
    line("bwd latency: ", duration_str(bwd));
    line(fmt::format("bwd FLOPS per GPU = {:g} * fwd flops per GPU / bwd latency: ", bwd_factor),
         flops_str(bwd > 0 ? bwd_factor * flops / bwd : 0));
    line(fmt::format("fwd+bwd FLOPS per GPU = {:g} * fwd flops per GPU / (fwd+bwd latency): ", bwd_factor + 1),
         flops_str(fwd + bwd > 0 ? (bwd_factor + 1) * flops / (fwd + bwd) : 0));
    line("step latency: ", duration_str(step));
    const double iter = fwd + bwd + step;
    line("iter latency: ", duration_str(iter));
    line(fmt::format("FLOPS per GPU = {:g} * fwd flops per GPU / iter latency: ", bwd_factor + 1),
         flops_str(iter > 0 ? (bwd_factor + 1) * flops / iter : 0));
    line("samples/second: ", fmt::format("{:g}", iter > 0 ? std::round(static_cast<double>(f.micro_batch_per_gpu *
                                                                                        f.world_size) / iter * 100) / 100
                                                          : 0.0));
  }
  out += "\n----------------------------- Aggregated Profile per GPU -----------------------------\n";
  // By depth and class: MACs, params, latency summed over the modules of a class at that depth.
  std::map<int, std::vector<std::pair<std::string, std::array<double, 3>>>> info;
  int max_depth = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    max_depth = std::max(max_depth, n.depth);
    auto& row = info[n.depth];
    auto it = std::find_if(row.begin(), row.end(), [&](const auto& e) { return e.first == n.type; });
    if (it == row.end()) it = row.insert(row.end(), {n.type, {0, 0, 0}});
    it->second[0] += static_cast<double>(subtree_macs(static_cast<int>(i)));
    it->second[1] += static_cast<double>(subtree_params(static_cast<int>(i)));
    it->second[2] += subtree_seconds(static_cast<int>(i));
  }
  const int depth = config_.module_depth == -1 ? max_depth : static_cast<int>(config_.module_depth);
  out += fmt::format("Top {} modules in terms of params, MACs or fwd latency at different model depths:\n",
                     config_.top_modules);
  for (int d = 0; d < depth && info.contains(d); ++d) {
    auto top = [&](int key, auto show) {
      auto row = info[d];
      std::stable_sort(row.begin(), row.end(), [&](const auto& a, const auto& b) { return a.second[key] > b.second[key]; });
      std::string s = "{";
      for (int64_t k = 0; k < config_.top_modules && k < static_cast<int64_t>(row.size()); ++k) {
        s += fmt::format("{}'{}': '{}'", k ? ", " : "", row[k].first, show(row[k].second[key]));
      }
      return s + "}";
    };
    out += fmt::format("depth {}:\n", d);
    out += fmt::format("    params      - {}\n", top(1, params_str));
    out += fmt::format("    MACs        - {}\n", top(0, macs_str));
    out += fmt::format("    fwd latency - {}\n", top(2, duration_str));
  }
  if (config_.detailed) {
    out += "\n------------------------------ Detailed Profile per GPU ------------------------------\n";
    out += "Each module profile is listed after its name in the following order: \nparams, percentage of total "
           "params, MACs, percentage of total MACs, fwd latency, percentage of total fwd latency, fwd FLOPS\n";
    out += "\nNote: 1. MACs are counted for matrix products, attention and convolutions (elementwise operators, "
           "norms and softmax are not counted); an operator is counted in the module owning a parameter it reads, "
           "else in the innermost module running. A module's MACs include its submodules'.\n2. Number of "
           "floating-point operations is a theoretical estimation, thus FLOPS computed using that could be larger "
           "than the maximum system throughput.\n3. Latency is measured for the modules the engine brackets "
           "(stage-3 segments, Python modules); a container shows its children's sum; the fwd latency above is "
           "the engine's forward timer.\n\n";
    out += tree(0, 0, subtree_params(0), subtree_macs(0), subtree_seconds(0)) + "\n";
  }
  out += "\nMACs by operator: ";
  bool first = true;
  for (const auto& [op, m] : op_macs_) {
    out += fmt::format("{}{} {}", first ? "" : ", ", op, macs_str(static_cast<double>(m)));
    first = false;
  }
  out += "\n------------------------------------------------------------------------------\n";
  if (config_.output_file) {
    // Rank 0 alone writes: a failure is said, not thrown (the other ranks are already in the next step's collectives).
    const std::filesystem::path path(*config_.output_file);
    std::error_code ec;
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
    std::ofstream file(*config_.output_file, std::ios::trunc);
    file << out;
    file.flush();
    if (!file) {
      fmt::print(stderr, "zerotrain: flops_profiler.output_file: cannot write {}: {}; the profile is printed here\n",
                 *config_.output_file, std::strerror(errno));
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
    }
  } else {
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
  }
}

}  // namespace zerotrain::detail
