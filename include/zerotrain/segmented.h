// Segmented modules: how a C++ module tells the engine where ZeRO-3 units and activation-checkpointing regions are.
//
// LibTorch modules have no forward hooks, so the engine cannot see inside an arbitrary module's forward. A module
// that derives from Segmented runs its forward as a sequence of segments (a transformer block, an embedding, ...)
// through run_segment(), and lists the parameters each segment reads. The engine then makes each segment's
// parameters a stage-3 unit (gathered just before the segment runs, prefetched in execution order, freed after)
// and, with EngineOptions::activation_checkpointing, recomputes the checkpointable segments in backward. Without an
// engine, run_segment() just calls the segment. The built-in CausalLM is a Segmented module.
//
//   struct Net : torch::nn::Module, zerotrain::Segmented {
//     at::Tensor forward(const at::Tensor& x) {
//       for (size_t i = 0; i < layers.size(); ++i)
//         x = run_segment(i, [&, i](const at::Tensor& h) { return layers[i]->forward(h); }, x);
//       return x;
//     }
//     std::vector<std::vector<at::Tensor>> segment_parameters() const override { ... one list per segment ... }
//   };
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace zerotrain {

// Computes a segment from its input. It must depend only on the input and the segment's parameters (activation
// checkpointing calls it again in backward).
using SegmentFn = std::function<at::Tensor(const at::Tensor& input)>;
// Runs segment `index` as fn(input), possibly with work around it (gathering, recomputation).
using SegmentRunner = std::function<at::Tensor(int64_t index, const SegmentFn& fn, const at::Tensor& input)>;

class Segmented {
 public:
  virtual ~Segmented() = default;

  // The parameters each segment reads, one list per segment index (a parameter read by several segments, such as a
  // tied weight, is listed in each). A parameter listed nowhere stays gathered at stage 3.
  virtual std::vector<std::vector<at::Tensor>> segment_parameters() const = 0;

  // Whether activation checkpointing may recompute segment `index` (default: all).
  virtual bool checkpointable(int64_t index) const {
    (void)index;
    return true;
  }

  // Routes every run_segment() call through `runner`; an empty function restores direct calls.
  void set_segment_runner(SegmentRunner runner) { runner_ = std::move(runner); }

 protected:
  // Runs segment `index`: fn(input), through the installed runner if any.
  at::Tensor run_segment(int64_t index, const SegmentFn& fn, const at::Tensor& input) const {
    return runner_ ? runner_(index, fn, input) : fn(input);
  }

 private:
  SegmentRunner runner_;
};

// A module that can compute its parameters' initial values itself. Such a module may be built without parameter
// data (every parameter keeps its shape but holds no storage; see make_model_deferred): a stage-3 engine then
// creates each parameter directly in its unit's buffer on the device and initializes it there, one unit at a time,
// so no process ever holds the whole model (DeepSpeed's zero.Init). Rank 0's values are broadcast, as always.
class DeferredInit {
 public:
  virtual ~DeferredInit() = default;
  // Initializes parameter `name` (as named_parameters() names it) in place, on whatever device it lives.
  virtual void init_parameter(const std::string& name, at::Tensor& param) const = 0;
};

}  // namespace zerotrain
