// aio, checkpoint, nebula, datastates_ckpt. DeepSpeed sources: runtime/swap_tensor/{aio_config,constants}.py,
// runtime/constants.py (CHECKPOINT_*), runtime/model_checkpointing/{config,constants}.py, runtime/config.py
// (get_checkpoint_*), nebula/{config,constants}.py, datastates/config.py. See docs/config-sources.md.
// aio keys and checkpoint.{tag_validation,load_universal,use_node_local_storage} are honoured by zerotrain.
#include "config/schema.h"

namespace zerotrain::detail {

namespace {
constexpr std::string_view kCkptEngine = "checkpoint engine options";
constexpr std::string_view kNebula = "nebula checkpointing";
constexpr std::string_view kDataStates = "datastates checkpointing";
}  // namespace

std::vector<KeySpec> schema_io() {
  return {
      // aio: read by get_aio_config (plain dict lookups, no validation in DeepSpeed; a null section means defaults).
      // DeepSpeed's docs still call intra_op_parallelism "thread_count" (renamed in DeepSpeed PR #7056).
      {.path = "aio", .type = KeyType::kObject, .def = "",
       .doc = "Asynchronous I/O settings for NVMe offload and checkpoint writes (null: all defaults).",
       .rule = {.nullable = true}},
      {.path = "aio.block_size", .type = KeyType::kInt, .def = "1048576",
       .doc = "Size in bytes of each I/O request submitted to the device.", .rule = {.min = 1}},
      {.path = "aio.queue_depth", .type = KeyType::kInt, .def = "8",
       .doc = "Maximum number of I/O requests in flight per submitting thread.", .rule = {.min = 1}},
      {.path = "aio.intra_op_parallelism", .type = KeyType::kInt, .def = "1",
       .doc = "Threads that split one read or write request between them.", .rule = {.min = 1}},
      {.path = "aio.single_submit", .type = KeyType::kBool, .def = "false",
       .doc = "Submit requests one at a time instead of as one batch."},
      {.path = "aio.overlap_events", .type = KeyType::kBool, .def = "true",
       .doc = "Keep submitting requests without waiting for earlier ones to complete."},
      {.path = "aio.use_gds", .type = KeyType::kBool, .def = "false",
       .doc = "Move data between GPU and NVMe with GPUDirect Storage (CUDA only).",
       .feature = "GPUDirect Storage"},

      // checkpoint: tag_validation/load_universal/use_node_local_storage/parallel_write come from runtime/config.py,
      // checkpoint_serialization/writer from model_checkpointing/config.py (tag_validation is read by both).
      {.path = "checkpoint", .type = KeyType::kObject, .def = "", .doc = "Checkpoint save and load options."},
      {.path = "checkpoint.tag_validation", .type = KeyType::kString, .def = "\"WARN\"",
       .doc = "What to do when ranks disagree on the checkpoint tag: Warn, Ignore or Fail.",
       .rule = {.choices = "WARN|IGNORE|FAIL", .choices_ignore_case = true}},
      {.path = "checkpoint.load_universal", .type = KeyType::kBool, .def = "false",
       .doc = "Load from a universal (parallelism-independent) checkpoint."},
      {.path = "checkpoint.use_node_local_storage", .type = KeyType::kBool, .def = "false",
       .doc = "Save and load by local rank so each node needs only its own disk."},
      {.path = "checkpoint.parallel_write", .type = KeyType::kObject, .def = "",
       .doc = "Options for writing pipeline checkpoints in parallel."},
      {.path = "checkpoint.parallel_write.pipeline_stage", .type = KeyType::kBool, .def = "false",
       .doc = "Spread the layer files of each pipeline stage over its data-parallel ranks.", .feature = kCkptEngine},
      {.path = "checkpoint.checkpoint_serialization", .type = KeyType::kBool, .def = "true",
       .doc = "Write torch.save files in the zipfile format (false: legacy serialization).", .feature = kCkptEngine},
      {.path = "checkpoint.writer", .type = KeyType::kObject, .def = "",
       .doc = "Save through DeepSpeed's fast checkpoint writer with these options (null: torch.save).",
       .rule = {.nullable = true}, .feature = kCkptEngine},
      {.path = "checkpoint.writer.type", .type = KeyType::kString, .def = "\"FAST\"",
       .doc = "Writer implementation: MOCK, PYTHON or FAST.",
       .rule = {.choices = "MOCK|PYTHON|FAST", .choices_ignore_case = true}, .feature = kCkptEngine},
      {.path = "checkpoint.writer.decoupled", .type = KeyType::kBool, .def = "false",
       .doc = "Write from a separate process so training continues during the save.", .feature = kCkptEngine},
      {.path = "checkpoint.writer.io_buffer_size", .type = KeyType::kInt, .def = "67108864",
       .doc = "Bytes of pinned staging buffer the fast writer fills per write.", .feature = kCkptEngine},
      {.path = "checkpoint.writer.io_buffer_double", .type = KeyType::kBool, .def = "true",
       .doc = "Use two staging buffers so filling and writing overlap.", .feature = kCkptEngine},
      {.path = "checkpoint.writer.show_statistics", .type = KeyType::kBool, .def = "false",
       .doc = "Log write throughput statistics after each save.", .feature = kCkptEngine},
      {.path = "checkpoint.writer.data_parallel", .type = KeyType::kString, .def = "",
       .doc = "Ranks that share writing replicated state: REPLICA, SOCKET or MACHINE (null: one rank).",
       .rule = {.choices = "REPLICA|SOCKET|MACHINE", .choices_ignore_case = true, .nullable = true},
       .feature = kCkptEngine},
      {.path = "checkpoint.writer.io_multiplier", .type = KeyType::kInt, .def = "1",
       .doc = "Multiplies the number of parallel writers.", .feature = kCkptEngine},

      // nebula: nebula/config.py (get_scalar_param, no validation).
      {.path = "nebula", .type = KeyType::kObject, .def = "",
       .doc = "Azure Nebula asynchronous checkpoint service (torch_nebula)."},
      {.path = "nebula.enabled", .type = KeyType::kBool, .def = "false", .doc = "Save checkpoints through Nebula.",
       .feature = kNebula},
      {.path = "nebula.nebula_load_path", .type = KeyType::kString, .def = "",
       .doc = "Directory to resume Nebula checkpoints from (null: persistent_storage_path).",
       .rule = {.nullable = true}, .feature = kNebula},
      {.path = "nebula.enable_nebula_load", .type = KeyType::kBool, .def = "true",
       .doc = "Load through Nebula (false: plain torch.load, e.g. for torch-saved checkpoints).", .feature = kNebula},
      {.path = "nebula.persistent_storage_path", .type = KeyType::kString, .def = "",
       .doc = "Directory where Nebula persists checkpoints.", .rule = {.nullable = true}, .feature = kNebula},
      {.path = "nebula.persistent_time_interval", .type = KeyType::kInt, .def = "100",
       .doc = "Interval at which Nebula persists in-memory checkpoints.", .feature = kNebula},
      {.path = "nebula.num_of_version_in_retention", .type = KeyType::kInt, .def = "2",
       .doc = "Number of checkpoint versions Nebula keeps in memory.", .feature = kNebula},

      // datastates_ckpt: datastates/config.py. Any value other than false (even {} or null) enables it; the object is
      // handed to the external datastates library, which reads host_cache_size.
      {.path = "datastates_ckpt", .type = KeyType::kObject, .def = "false",
       .doc = "DataStates-LLM asynchronous checkpointing; present and not false enables it.",
       .rule = {.alt = KeyType::kBool}, .feature = kDataStates},
      {.path = "datastates_ckpt.host_cache_size", .type = KeyType::kInt, .def = "",
       .doc = "GiB of pinned host memory reserved for asynchronous checkpoint flushing.", .rule = {.min = 0},
       .feature = kDataStates},
  };
}

}  // namespace zerotrain::detail
