// Choosing a backend from the options and the launcher's environment.
#include <ATen/Context.h>
#include <c10/util/Exception.h>

#include <stdexcept>

#include "comm/coalesced.h"
#include "comm/mpi_comm.h"
#include "comm/nccl_comm.h"
#include "zerotrain/comm.h"

namespace zerotrain {
namespace {

class WorkList final : public CommWork {
 public:
  explicit WorkList(std::vector<std::unique_ptr<CommWork>> works) : works_(std::move(works)) {}
  void wait() override {
    for (auto& w : works_) w->wait();
  }

 private:
  std::vector<std::unique_ptr<CommWork>> works_;
};

}  // namespace

namespace detail {

void check_coalesced(const char* op, const std::vector<at::Tensor>& small, const std::vector<at::Tensor>& big,
                     int world_size) {
  TORCH_CHECK(small.size() == big.size(), op, ": ", big.size(), " tensors for ", small.size());
  for (size_t i = 0; i < small.size(); ++i) {
    TORCH_CHECK(big[i].numel() == small[i].numel() * world_size, op, ": tensor ", i, " has ", big[i].numel(),
                " elements, expected ", small[i].numel(), " x ", world_size, " ranks");
  }
}

}  // namespace detail

std::unique_ptr<CommWork> Comm::reduce_scatter_coalesced_async(std::vector<at::Tensor>& outs,
                                                               const std::vector<at::Tensor>& ins, ReduceOp op) {
  TORCH_CHECK(outs.size() == ins.size(), "reduce_scatter_coalesced: ", outs.size(), " outputs for ", ins.size(),
              " inputs");
  std::vector<std::unique_ptr<CommWork>> works;
  works.reserve(outs.size());
  for (size_t i = 0; i < outs.size(); ++i) works.push_back(reduce_scatter_async(outs[i], ins[i], op));
  return std::make_unique<WorkList>(std::move(works));
}

std::unique_ptr<CommWork> Comm::all_gather_coalesced_async(std::vector<at::Tensor>& outs,
                                                           const std::vector<at::Tensor>& ins) {
  TORCH_CHECK(outs.size() == ins.size(), "all_gather_coalesced: ", outs.size(), " outputs for ", ins.size(),
              " inputs");
  std::vector<std::unique_ptr<CommWork>> works;
  works.reserve(outs.size());
  for (size_t i = 0; i < outs.size(); ++i) works.push_back(all_gather_async(outs[i], ins[i]));
  return std::make_unique<WorkList>(std::move(works));
}

std::shared_ptr<Comm> make_comm(const CommOptions& options) {
  const RankInfo info = rank_info_from_env();
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options.timeout);
  if (options.timeout.count() <= 0) {
    throw std::invalid_argument("CommOptions::timeout " + std::to_string(options.timeout.count()) +
                                " s is invalid; allowed: a positive number of seconds");
  }
  std::string backend = options.backend;
  if (backend == "auto") {
    if (info.world_size == 1) {
      backend = "single";
    } else if (detail::nccl_available() && at::hasCUDA()) {
      backend = "nccl";
    } else {
      backend = "mpi";
    }
  }
  if (backend == "single") {
    if (info.world_size != 1) {
      throw std::invalid_argument("backend \"single\" with a world size of " + std::to_string(info.world_size) +
                                  " (from the " + info.source + " environment); allowed: \"nccl\", \"mpi\" or \"auto\"");
    }
    return make_single_comm();
  }
  if (backend == "nccl") return detail::make_nccl_comm(info, timeout);
  if (backend == "mpi") {
    if (info.source != "openmpi" && info.world_size > 1) {
      throw std::runtime_error("the mpi backend needs processes started by mpirun (found a " + info.source +
                               " environment with " + std::to_string(info.world_size) +
                               " ranks): start CPU ranks with `zerotrain launch --launcher openmpi` or mpirun");
    }
    auto comm = detail::make_mpi_comm(timeout);
    if (comm->world_size() != info.world_size && info.source == "openmpi") {
      throw std::runtime_error("MPI reports " + std::to_string(comm->world_size()) + " ranks but the environment says " +
                               std::to_string(info.world_size));
    }
    return comm;
  }
  throw std::invalid_argument("comm backend \"" + backend + "\" is unknown; allowed: \"auto\", \"nccl\", \"mpi\", \"single\"");
}

}  // namespace zerotrain
