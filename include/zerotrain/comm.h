// Collective communication between data-parallel ranks. One small interface, three backends:
//   nccl   - c10d ProcessGroupNCCL with TCPStore rendezvous (CUDA tensors);
//   mpi    - MPI (OpenMPI, started by mpirun) for CPU tensors;
//   single - one rank, every collective an identity.
// A collective that does not finish within CommOptions::timeout ends every rank with a message naming the rank and
// the operation: never a silent hang.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace zerotrain {

enum class ReduceOp { kSum, kAvg, kMax };

// A collective in flight. wait() makes the caller (CPU: the calling thread; CUDA: the current stream) wait for
// its completion. Waiting twice is harmless.
class CommWork {
 public:
  virtual ~CommWork() = default;
  virtual void wait() = 0;
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;                // this rank, 0 .. world_size - 1
  virtual int world_size() const = 0;          // number of data-parallel ranks
  virtual std::string backend() const = 0;     // "nccl", "mpi" or "single"

  // In-place reduction of `t` (contiguous) over all ranks.
  virtual void all_reduce(at::Tensor& t, ReduceOp op) = 0;
  // in: (world_size * n,) contiguous; out: (n,) receives this rank's chunk of the reduction.
  virtual std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor& out, const at::Tensor& in, ReduceOp op) = 0;
  // in: (n,) contiguous; out: (world_size * n,) receives every rank's `in`, in rank order. `in` may be this rank's
  // slice of `out` (elements [rank * n, (rank + 1) * n)): the gather is then in place.
  virtual std::unique_ptr<CommWork> all_gather_async(at::Tensor& out, const at::Tensor& in) = 0;
  // all_gather_async(outs[i], ins[i]) for every i, as one collective where the backend can (nccl: one grouped
  // launch); one work for all. Every rank passes the same sizes in the same order.
  virtual std::unique_ptr<CommWork> all_gather_coalesced_async(std::vector<at::Tensor>& outs,
                                                               const std::vector<at::Tensor>& ins);
  // reduce_scatter_async(outs[i], ins[i], op) for every i, as one collective where the backend can (nccl: one
  // grouped launch); one work for all. Every rank passes the same sizes in the same order.
  virtual std::unique_ptr<CommWork> reduce_scatter_coalesced_async(std::vector<at::Tensor>& outs,
                                                                   const std::vector<at::Tensor>& ins, ReduceOp op);
  // In-place all-reduce that may overlap with the caller's work.
  virtual std::unique_ptr<CommWork> all_reduce_async(at::Tensor& t, ReduceOp op) = 0;
  // `t` on every rank becomes root's `t`.
  virtual void broadcast(at::Tensor& t, int root) = 0;
  virtual void barrier() = 0;

  // Blocking forms.
  void reduce_scatter(at::Tensor& out, const at::Tensor& in, ReduceOp op) { reduce_scatter_async(out, in, op)->wait(); }
  void all_gather(at::Tensor& out, const at::Tensor& in) { all_gather_async(out, in)->wait(); }
};

struct CommOptions {
  std::string backend = "auto";               // "auto" (nccl when CUDA is available, else mpi when started by
                                              // mpirun, else single), "nccl", "mpi" or "single"
  std::chrono::seconds timeout{1800};         // a collective taking longer ends every rank (DeepSpeed's default)
};

// Builds the backend from the environment the launchers set: RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
// MASTER_PORT (torchrun, DeepSpeed, zerotrain launch), else OMPI_COMM_WORLD_* (mpirun), else SLURM_* (srun).
// Throws std::runtime_error naming the missing variable or the failed rendezvous.
std::shared_ptr<Comm> make_comm(const CommOptions& options = {});

// A single-rank communicator.
std::shared_ptr<Comm> make_single_comm();

// A communicator over a c10d process group registered in this process under `group_name` (what Python's
// torch.distributed.init_process_group makes: gloo or nccl); backend() is the group's backend name. Throws
// std::invalid_argument when no such group exists.
std::shared_ptr<Comm> make_process_group_comm(const std::string& group_name);

// The launcher's view of this process.
struct RankInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source;  // which environment it came from: "torchrun", "openmpi", "slurm" or "none"
};

// Reads RankInfo from the environment (see make_comm). Throws std::runtime_error on malformed values.
RankInfo rank_info_from_env();

}  // namespace zerotrain
