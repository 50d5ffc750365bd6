// prismaquant-mpi: the ranks are MPI's (built with -DPQ_MPI=ON).
#include "commands.h"
#include "pq/dist/mpi_backend.h"

namespace pq::cli {

void InstallRanksBackend() { dist::UseBackend(dist::MpiBackend()); }

}  // namespace pq::cli
