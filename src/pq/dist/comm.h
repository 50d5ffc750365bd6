// The ranks of a data-parallel run (DESIGN §7): a thin layer over MPI when
// the build has it (-DPQ_MPI=ON, preset release-mpi), and the same API as a single rank that
// does nothing otherwise — so no code outside this layer needs an #ifdef.
//
// Every call is collective unless it says otherwise: all ranks make it in the same order.
// MPI errors are fatal (MPI's default handler ends the job); a rank that dies ends it too
// (mpirun / srun report which).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"

namespace pq::dist {

// MPI_Init_thread (funneled: only the calling thread talks to MPI) when built with MPI and
// started under a launcher; a no-op otherwise. Call once, first thing in main.
Status Init(int* argc, char*** argv);
// MPI_Finalize when Init started MPI (not collective beyond MPI's own).
void Finalize();
// Whether this build has MPI (not collective).
bool Built();
// This process's rank in 0..Size()-1, and the number of ranks (1 without MPI). Not collective.
int Rank();
int Size();

Status Barrier();
// `data` of rank `root` copied to every rank (same size everywhere).
Status Broadcast(std::span<std::byte> data, int root);
// Point to point (not collective): `data` to rank `to` / from rank `from` (same size both
// sides).
Status Send(std::span<const std::byte> data, int to);
Status Recv(std::span<std::byte> data, int from);
// Element-wise maximum / exact integer sum over the ranks, in place on every rank.
Status AllMax(std::span<float> v);
Status AllSum(std::span<int64_t> v);
// Every rank's `mine` concatenated in rank order, on `root` (other ranks: `all` untouched).
Status Gather(std::span<const float> mine, std::vector<float>& all, int root);
Status Gather(std::span<const double> mine, std::vector<double>& all, int root);

// Wall seconds this rank spent in the calls above (waiting for other ranks included); 0
// without MPI. Not collective.
double CommSeconds();

// Ends the job: "prismaquant: rank R of N: message" on stderr and MPI_Abort(code) — the other
// ranks are ended by the launcher — or exit(code) without MPI. Not collective.
[[noreturn]] void Abort(const std::string& message, int code);

}  // namespace pq::dist
