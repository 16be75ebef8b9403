// Fault injection for the communicator: ranks all-reduce in a loop, and one rank misbehaves. Every rank must end
// within the collective timeout with a message naming the rank and the operation - never hang.
//
//   mpirun -np 3 fault_worker kill   # rank 1 dies (SIGKILL) mid-run
//   mpirun -np 3 fault_worker stall  # rank 1 stops calling collectives (sleeps)
#include <ATen/ATen.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include "zerotrain/comm.h"

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "kill";
  auto comm = zerotrain::make_comm({.backend = "mpi", .timeout = std::chrono::seconds(5)});
  at::Tensor t = at::ones({1024});
  for (int i = 0; i < 1000; ++i) {
    if (comm->rank() == 1 && i == 20) {
      std::fprintf(stderr, "fault_worker: rank 1 injects '%s' at iteration %d\n", mode.c_str(), i);
      std::fflush(stderr);
      if (mode == "kill") std::raise(SIGKILL);
      std::this_thread::sleep_for(std::chrono::seconds(120));
    }
    comm->all_reduce(t, zerotrain::ReduceOp::kAvg);
  }
  std::printf("fault_worker: no fault happened\n");
  return 0;
}
