// The MPI backend for CPU tensors (C++ programs on CPU ranks, started by mpirun).
#pragma once

#include <chrono>
#include <memory>

#include "zerotrain/comm.h"

namespace zerotrain::detail {

// True when this build has MPI.
bool mpi_available();

// Initializes MPI (once per process; finalized at exit) and returns a communicator over MPI_COMM_WORLD. Throws
// std::runtime_error when the build has no MPI.
std::shared_ptr<Comm> make_mpi_comm(std::chrono::milliseconds timeout);

}  // namespace zerotrain::detail
