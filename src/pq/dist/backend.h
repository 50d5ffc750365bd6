// How the ranks talk (internal to dist/ and its backends): comm.h's calls dispatch to one
// Backend. The default is one rank with no messages; an executable built with MPI installs
// MpiBackend() (dist/mpi_backend.h, library pq_dist_mpi) before dist::Init. Keeping MPI out of
// pq_dist lets one build hold both executables (`prismaquant`, `prismaquant-mpi`) over the
// same libraries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pq/core/status.h"

namespace pq::dist {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Status Init(int* argc, char*** argv) = 0;
  virtual void Finalize() = 0;
  virtual bool Built() const = 0;
  virtual int Rank() const = 0;
  virtual int Size() const = 0;
  virtual Status Barrier() = 0;
  virtual Status Broadcast(std::span<std::byte> data, int root) = 0;
  virtual Status Send(std::span<const std::byte> data, int to) = 0;
  virtual Status Recv(std::span<std::byte> data, int from) = 0;
  virtual Status AllMax(std::span<float> v) = 0;
  virtual Status AllSum(std::span<int64_t> v) = 0;
  virtual Status Gather(std::span<const float> mine, std::vector<float>& all, int root) = 0;
  virtual Status Gather(std::span<const double> mine, std::vector<double>& all, int root) = 0;
  virtual double CommSeconds() const = 0;
  // Ends every rank of the job with `code` (after the message is printed); returns only
  // when the backend has no job to end.
  virtual void AbortJob(int code) = 0;
};

// Makes `backend` the one comm.h's calls use (it must outlive them). Call before dist::Init,
// from one thread; not collective.
void UseBackend(Backend& backend);

}  // namespace pq::dist
