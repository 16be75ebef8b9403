// MPI collectives over CPU tensors. Reductions of 16-bit tensors run in fp32 (MPI has no 16-bit float types);
// gathers and broadcasts move raw bytes. Every collective is registered with the watchdog, which calls
// MPI_Abort (ending every rank) when one outlives the timeout.
#include "comm/mpi_comm.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include "comm/watchdog.h"

#ifdef ZEROTRAIN_WITH_MPI
#include <mpi.h>
#endif

namespace zerotrain::detail {

#ifndef ZEROTRAIN_WITH_MPI

bool mpi_available() { return false; }
std::shared_ptr<Comm> make_mpi_comm(std::chrono::milliseconds) {
  throw std::runtime_error("this zerotrain build has no MPI: install libopenmpi-dev and rebuild (scripts/bootstrap.sh)");
}

#else

namespace {

// Checks an MPI return code; MPI's default error handler aborts before we get here, but a changed handler
// returns codes.
#define ZT_MPI_CHECK(call)                                                                             \
  do {                                                                                                 \
    const int zt_rc = (call);                                                                          \
    if (zt_rc != MPI_SUCCESS) {                                                                        \
      char zt_msg[MPI_MAX_ERROR_STRING];                                                               \
      int zt_len = 0;                                                                                  \
      MPI_Error_string(zt_rc, zt_msg, &zt_len);                                                        \
      throw std::runtime_error(std::string(#call) + " failed at " __FILE__ ":" + std::to_string(__LINE__) + \
                               ": " + std::string(zt_msg, zt_len));                                     \
    }                                                                                                  \
  } while (0)

// MPI is initialized once per process and finalized at exit.
struct MpiEnvironment {
  MpiEnvironment() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      ZT_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
      owns = true;
      if (provided < MPI_THREAD_SERIALIZED) {
        throw std::runtime_error("MPI provides thread level " + std::to_string(provided) +
                                 "; zerotrain needs MPI_THREAD_SERIALIZED (autograd hooks issue collectives)");
      }
    }
  }
  ~MpiEnvironment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns && !finalized) MPI_Finalize();
  }
  bool owns = false;
};

std::shared_ptr<MpiEnvironment> mpi_environment() {
  static std::shared_ptr<MpiEnvironment> env = std::make_shared<MpiEnvironment>();
  return env;
}

MPI_Op to_mpi(ReduceOp op) { return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM; }

// The MPI type reductions use for a dtype; 16-bit floats are reduced as fp32.
at::ScalarType reduce_dtype(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

MPI_Datatype to_mpi(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    case at::kChar: return MPI_INT8_T;
    case at::kBool: return MPI_C_BOOL;
    default: throw std::invalid_argument(std::string("MPI reduction of dtype ") + c10::toString(t) + " is not supported");
  }
}

void check_cpu_contiguous(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.device().is_cpu(), op, ": the mpi backend handles CPU tensors; got a tensor on ", t.device(),
              " (use the nccl backend for CUDA tensors)");
  TORCH_CHECK(t.is_contiguous(), op, ": tensor must be contiguous");
  // MPI counts are ints (in bytes for gathers and broadcasts).
  TORCH_CHECK(t.numel() * t.element_size() < (int64_t{1} << 31), op, ": ", t.numel(),
              " elements exceed what one MPI call moves (2 GiB); use smaller buckets");
}

// An MPI request plus what must happen when it completes (copy back a 16-bit result, divide for an average).
class MpiWork final : public CommWork {
 public:
  MpiWork(MPI_Request request, CollectiveWatchdog* watchdog, uint64_t watch_id, std::function<void()> finish)
      : request_(request), watchdog_(watchdog), watch_id_(watch_id), finish_(std::move(finish)) {}
  ~MpiWork() override {
    if (!done_) {
      try {
        wait();
      } catch (...) {
      }
    }
  }
  void wait() override {
    if (done_) return;
    ZT_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE));
    watchdog_->finish(watch_id_);
    done_ = true;
    if (finish_) finish_();
  }

 private:
  MPI_Request request_;
  CollectiveWatchdog* watchdog_;
  uint64_t watch_id_;
  std::function<void()> finish_;
  bool done_ = false;
};

class MpiComm final : public Comm {
 public:
  explicit MpiComm(std::chrono::milliseconds timeout) : env_(mpi_environment()) {
    ZT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    ZT_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    ZT_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    watchdog_ = std::make_unique<CollectiveWatchdog>(rank_, timeout, [](const std::string& msg) {
      std::fprintf(stderr, "%s\n", msg.c_str());
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    });
  }
  ~MpiComm() override {
    watchdog_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(at::Tensor& t, ReduceOp op) override { all_reduce_async(t, op)->wait(); }

  std::unique_ptr<CommWork> all_reduce_async(at::Tensor& t, ReduceOp op) override {
    check_cpu_contiguous(t, "all_reduce");
    at::Tensor buf = t.scalar_type() == reduce_dtype(t.scalar_type()) ? t : t.to(reduce_dtype(t.scalar_type()));
    const uint64_t id = watchdog_->start("all_reduce", t.numel());
    MPI_Request req;
    ZT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf.data_ptr(), static_cast<int>(buf.numel()), to_mpi(buf.scalar_type()),
                                to_mpi(op), comm_, &req));
    const int n = size_;
    return std::make_unique<MpiWork>(req, watchdog_.get(), id, [t, buf, op, n]() mutable {
      if (op == ReduceOp::kAvg) buf.div_(n);
      if (!buf.is_same(t)) t.copy_(buf);
    });
  }

  std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor& out, const at::Tensor& in, ReduceOp op) override {
    check_cpu_contiguous(out, "reduce_scatter");
    check_cpu_contiguous(in, "reduce_scatter");
    TORCH_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input has ", in.numel(), " elements, expected ",
                out.numel(), " x ", size_, " ranks");
    const auto rt = reduce_dtype(in.scalar_type());
    at::Tensor send = in.scalar_type() == rt ? in : in.to(rt);
    at::Tensor recv = out.scalar_type() == rt ? out : at::empty({out.numel()}, out.options().dtype(rt));
    const uint64_t id = watchdog_->start("reduce_scatter", in.numel());
    MPI_Request req;
    ZT_MPI_CHECK(MPI_Ireduce_scatter_block(send.data_ptr(), recv.data_ptr(), static_cast<int>(out.numel()),
                                           to_mpi(rt), to_mpi(op), comm_, &req));
    const int n = size_;
    return std::make_unique<MpiWork>(req, watchdog_.get(), id, [out, send, recv, op, n]() mutable {
      if (op == ReduceOp::kAvg) recv.div_(n);
      if (!recv.is_same(out)) out.copy_(recv);
    });
  }

  std::unique_ptr<CommWork> all_gather_async(at::Tensor& out, const at::Tensor& in) override {
    check_cpu_contiguous(out, "all_gather");
    check_cpu_contiguous(in, "all_gather");
    TORCH_CHECK(out.numel() == in.numel() * size_, "all_gather: output has ", out.numel(), " elements, expected ",
                in.numel(), " x ", size_, " ranks");
    TORCH_CHECK(out.scalar_type() == in.scalar_type(), "all_gather: dtypes differ");
    const int bytes = static_cast<int>(in.numel() * in.element_size());
    const uint64_t id = watchdog_->start("all_gather", in.numel());
    MPI_Request req;
    // In place (in is this rank's slice of out) must be said with MPI_IN_PLACE: MPI forbids aliased buffers.
    const bool in_place = in.data_ptr() == static_cast<char*>(out.data_ptr()) + static_cast<int64_t>(rank_) * bytes;
    ZT_MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.data_ptr(), bytes, MPI_BYTE, out.data_ptr(), bytes,
                                MPI_BYTE, comm_, &req));
    return std::make_unique<MpiWork>(req, watchdog_.get(), id, [in, out]() {});
  }

  void broadcast(at::Tensor& t, int root) override {
    check_cpu_contiguous(t, "broadcast");
    TORCH_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " is not a rank (world size ", size_, ")");
    const uint64_t id = watchdog_->start("broadcast", t.numel());
    ZT_MPI_CHECK(MPI_Bcast(t.data_ptr(), static_cast<int>(t.numel() * t.element_size()), MPI_BYTE, root, comm_));
    watchdog_->finish(id);
  }

  void barrier() override {
    const uint64_t id = watchdog_->start("barrier", 0);
    ZT_MPI_CHECK(MPI_Barrier(comm_));
    watchdog_->finish(id);
  }

 private:
  std::shared_ptr<MpiEnvironment> env_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::unique_ptr<CollectiveWatchdog> watchdog_;
};

}  // namespace

bool mpi_available() { return true; }

std::shared_ptr<Comm> make_mpi_comm(std::chrono::milliseconds timeout) { return std::make_shared<MpiComm>(timeout); }

#endif  // ZEROTRAIN_WITH_MPI

}  // namespace zerotrain::detail
