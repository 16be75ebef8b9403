// How stage 3 partitions a model into units (see [Note: stage-3 units] in param_units.h).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace zerotrain::detail {

struct Stage3Plan {
  std::vector<std::vector<int>> groups;         // parameter indices per unit, units in layout order
  std::vector<bool> persistent;                 // per unit
  std::vector<std::vector<int>> segment_units;  // per segment; empty: the whole module is one unit
};

struct Stage3PlanOptions {
  int64_t persistence_threshold = 100'000;  // stage3_param_persistence_threshold
  int64_t model_persistence_threshold = INT64_MAX;
  // Neighbouring segments' units of fewer elements than this are joined into one unit of at most this many
  // elements (gathered, freed and reduced as one); 0 keeps a unit per segment. See merge_numel_for.
  int64_t merge_numel = 0;
  // The layout pads each unit's buckets to a multiple of world_size x kChunkAlign elements (flat_layout.h): sizes are
  // compared with merge_numel rounded up to a multiple of this, so a joined unit stays within it as ParamUnits sees it.
  int64_t pad = 1;
};

// `params`: the trainable parameters (registration order). `segments`: the parameters each forward segment reads,
// or empty. Units are laid out last segment first (backward completes the head's gradients first): a parameter
// belongs to the first segment that reads it; parameters of at most persistence_threshold elements (up to
// model_persistence_threshold in total) stay gathered in one persistent unit, as do trainable parameters no segment
// reads; without segments the module is one unit.
//
// [Note: small units]
// Each unit costs the host a fixed amount per step whatever its size (its buffer allocated and freed, its entries
// in the gather's cast and collective, its gradient bucket's views, its reduce-scatter entry): on a model of many
// small blocks that, not the GPU, sets the step's pace. Neighbouring units smaller than merge_numel are therefore
// joined, as DeepSpeed's stage3_module_granularity_threshold fetches fine-grained modules as one and FSDP users
// wrap coarser. A joined unit is gathered when its first segment runs and kept until the last one is done with
// it; prefetch gathers units that small several at a time anyway, so the device holds no more than prefetch would.
Stage3Plan plan_stage3(const std::vector<at::Tensor>& params, const std::vector<std::vector<at::Tensor>>& segments,
                       const Stage3PlanOptions& options);

// The unit-joining size for a config: stage3_module_granularity_threshold when set (0: one unit per segment),
// else (-1, unset) an eighth of the smaller of stage3_prefetch_bucket_size and stage3_max_live_parameters: the size
// below which prefetch gathers units in batches, so joining them holds no more memory than prefetch does.
int64_t merge_numel_for(int64_t granularity_threshold, int64_t prefetch_bucket_size, int64_t max_live_parameters);

}  // namespace zerotrain::detail
