// DeepSpeed's flops profiler (`flops_profiler` config section; profiling/flops_profiler/profiler.py), on rank 0.
//
// [Note: flops profiler]
// The first forward of optimizer step `profile_step` (counted from 0, as DeepSpeed's global_steps) runs with an
// ATen RecordFunction observer on the calling thread. It counts the multiply-accumulates of the operators that carry
// a model's FLOPs: matrix products (mm, addmm, bmm, baddbmm), attention kernels (scaled_dot_product flash /
// efficient / cuDNN / CPU: QK^T and PV) and convolutions; elementwise operators, norms and softmax (under 1% of a
// transformer's FLOPs) are not counted, and an operator inside a counted one (a kernel behind an attention op) is
// not counted again. FLOPs = 2 x MACs.
// Each count goes to a module: the module owning a parameter among the operator's inputs (a Linear's weight,
// found by storage and offset, so stage 3's gathered parameters and stage 0-2's flat buffer both resolve), else
// the innermost module running (a segment's module, or a module a frontend names with enter/exit: the Python
// package's hooks), else the root. A module's MACs include its submodules'. Latency per module is measured where
// the module is bracketed (segments, Python modules): device events on a GPU, the steady clock on a CPU.
// The report is DeepSpeed's: the summary (params, MACs, FLOPs, fwd / bwd / step latency from the engine timers,
// FLOPS per GPU, samples/s), the aggregated profile by depth and class, and the module tree.
#pragma once

#include <ATen/record_function.h>
#include <c10/core/Device.h>
#include <c10/core/Event.h>
#include <torch/nn/module.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "zerotrain/config.h"

namespace zerotrain::detail {

// Multiply-accumulates of one operator call, from its name and input shapes (0: not a counted operator).
// `output_numel`: the convolution's output elements (known after it ran).
int64_t operator_macs(std::string_view name, const std::vector<std::vector<int64_t>>& input_shapes,
                      int64_t output_numel = 0);

// DeepSpeed's number formatting: number_to_string(1.234e12) = "1.23 T" (round to 2 decimals, %g).
std::string ds_number(double value);

struct ProfileFacts {
  int world_size = 1;
  int64_t micro_batch_per_gpu = 1;
  double fwd_ms = 0, bwd_ms = 0, step_ms = 0;  // the profiled micro-step's engine timers
  bool have_bwd = false;                       // bwd/step timed (always, from the engine's timers)
};

class FlopsProfiler {
 public:
  // `segments`: the parameters of each segment (their module is the deepest one holding all of them).
  FlopsProfiler(const FlopsProfilerConfig& config, torch::nn::Module& root,
                const std::vector<std::vector<at::Tensor>>& segments, c10::Device device);
  ~FlopsProfiler();
  FlopsProfiler(const FlopsProfiler&) = delete;
  FlopsProfiler& operator=(const FlopsProfiler&) = delete;

  // Starts counting when this forward is the one to profile (`global_steps` == profile_step, first micro-step).
  void begin_forward(int64_t global_steps, bool first_micro_step);
  void end_forward();
  bool counting() const { return counting_; }
  // A module starts / ends running (segment runs, frontends' module hooks): attribution and latency.
  void enter_segment(int64_t index);
  void enter_module(const std::string& qualified_name);
  void exit();
  // The profiled forward has run and its step() is ending: the report (written to output_file or stdout); once.
  bool report_due() const { return counted_ && !reported_; }
  void report(const ProfileFacts& facts);

  // Totals of the profiled forward (tests).
  int64_t total_macs() const;
  int64_t macs_of(const std::string& qualified_name) const;  // the module and its submodules

 private:
  struct Node {
    std::string name;       // qualified ("" = root)
    std::string type;       // class name
    torch::nn::Module* module = nullptr;
    int depth = 0;
    std::vector<int> children;
    int64_t own_params = 0;
    int64_t own_macs = 0;
    double own_seconds = 0;
  };
  struct Span {
    int node = 0;
    std::optional<c10::Event> begin, end;
    std::chrono::steady_clock::time_point host_begin;
    double host_seconds = 0;
  };
  friend std::unique_ptr<at::ObserverContext> flops_on_enter(const at::RecordFunction& fn);
  friend void flops_on_exit(const at::RecordFunction& fn, at::ObserverContext* ctx);
  int owner_of(const at::RecordFunction& fn) const;
  void index_parameters();
  void add(int node, int64_t macs);
  int64_t subtree_macs(int node) const;
  int64_t subtree_params(int node) const;
  double subtree_seconds(int node) const;
  std::string tree(int node, int indent, int64_t total_params, int64_t total_macs, double total_seconds) const;

  FlopsProfilerConfig config_;
  c10::Device device_;
  std::vector<Node> nodes_;                       // nodes_[0] = root, depth-first order
  std::unordered_map<std::string, int> by_name_;  // qualified name -> node
  std::vector<int> segment_node_;                 // segment index -> node
  // A parameter's place: its storage, [offset, offset + numel) in it, the module that owns it.
  struct Place {
    int64_t begin, end;
    int node;
  };
  std::unordered_map<const void*, std::vector<Place>> places_;
  std::vector<std::pair<torch::nn::Module*, std::vector<at::Tensor>>> own_params_;  // per node
  std::vector<int> stack_;                        // modules running, innermost last
  std::vector<Span> open_, spans_;
  std::optional<at::CallbackHandle> handle_;
  bool counting_ = false, counted_ = false, reported_ = false;
  bool timing_root_ = false;  // enter_module: the root is timed like any module
  std::map<std::string, int64_t> op_macs_;        // operator name -> MACs (the per-operator table)
};

}  // namespace zerotrain::detail
