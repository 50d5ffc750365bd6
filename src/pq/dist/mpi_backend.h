// The MPI backend of dist/ (library pq_dist_mpi, built with -DPQ_MPI=ON; Open MPI from
// Debian). No MPI header here: only comm_mpi.cc includes <mpi.h>.
#pragma once

#include "pq/dist/backend.h"

namespace pq::dist {

// The process's MPI backend (MPI_Init_thread funneled on Init: only the calling thread talks
// to MPI). Install it with UseBackend before Init.
Backend& MpiBackend();

}  // namespace pq::dist
