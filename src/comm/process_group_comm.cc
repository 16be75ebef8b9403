// A Comm over a c10d process group that already exists in this process: the one a Python program made with
// torch.distributed.init_process_group (gloo for CPU tensors, nccl for CUDA tensors), found by its name in c10d's
// group registry. The group's own timeout and error handling apply.
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <stdexcept>

#include "comm/c10d_comm.h"

namespace zerotrain {
namespace {

// gloo (CPU tensors) has no coalesced collectives: Comm's one-at-a-time fallback serves them.
class ProcessGroupComm final : public detail::C10dComm<c10d::ProcessGroup> {
 public:
  explicit ProcessGroupComm(c10::intrusive_ptr<c10d::ProcessGroup> pg)
      : C10dComm(pg, pg->getBackendName(), pg->getBackendName() == "nccl") {}
};

}  // namespace

std::shared_ptr<Comm> make_process_group_comm(const std::string& group_name) {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  try {
    pg = c10d::resolve_process_group(group_name);
  } catch (const std::exception& e) {
    throw std::invalid_argument("process group \"" + group_name +
                                "\" is not registered in this process (initialize it with "
                                "torch.distributed.init_process_group first): " + e.what());
  }
  return std::make_shared<ProcessGroupComm>(std::move(pg));
}

}  // namespace zerotrain
