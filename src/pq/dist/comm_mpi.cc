// The MPI backend (library pq_dist_mpi; not part of pq_dist, see backend.h).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>

#include "pq/dist/mpi_backend.h"

namespace pq::dist {
namespace {

constexpr size_t kChunk = size_t{1} << 30;  // MPI counts are int: bytes in pieces of 1 GiB

Status Check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return Status::Ok();
  return Internal(std::string("MPI ") + what + " failed");
}

// Adds the scope's wall time to *seconds.
class CommTimer {
 public:
  explicit CommTimer(double* seconds)
      : seconds_(seconds), t0_(std::chrono::steady_clock::now()) {}
  ~CommTimer() {
    *seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  CommTimer(const CommTimer&) = delete;
  CommTimer& operator=(const CommTimer&) = delete;

 private:
  double* seconds_;
  std::chrono::steady_clock::time_point t0_;
};

class Mpi final : public Backend {
 public:
  Status Init(int* argc, char*** argv) override {
    int provided = 0;
    PQ_RETURN_IF_ERROR(
        Check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "Init_thread"));
    started_ = true;
    if (provided < MPI_THREAD_FUNNELED)
      return Internal("MPI does not provide MPI_THREAD_FUNNELED");
    return Status::Ok();
  }

  void Finalize() override {
    if (started_) MPI_Finalize();
    started_ = false;
  }

  bool Built() const override { return true; }

  int Rank() const override {
    if (!started_) return 0;
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
  }

  int Size() const override {
    if (!started_) return 1;
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
  }

  Status Barrier() override {
    const CommTimer timer(&comm_s_);
    return started_ ? Check(MPI_Barrier(MPI_COMM_WORLD), "Barrier") : Status::Ok();
  }

  Status Broadcast(std::span<std::byte> data, int root) override {
    const CommTimer timer(&comm_s_);
    if (Size() == 1) return Status::Ok();
    for (size_t off = 0; off < data.size(); off += kChunk) {
      const auto n = static_cast<int>(std::min(kChunk, data.size() - off));
      PQ_RETURN_IF_ERROR(
          Check(MPI_Bcast(data.data() + off, n, MPI_BYTE, root, MPI_COMM_WORLD), "Bcast"));
    }
    return Status::Ok();
  }

  Status Send(std::span<const std::byte> data, int to) override {
    const CommTimer timer(&comm_s_);
    for (size_t off = 0; off < data.size(); off += kChunk) {
      const auto n = static_cast<int>(std::min(kChunk, data.size() - off));
      PQ_RETURN_IF_ERROR(
          Check(MPI_Send(data.data() + off, n, MPI_BYTE, to, 0, MPI_COMM_WORLD), "Send"));
    }
    return Status::Ok();
  }

  Status Recv(std::span<std::byte> data, int from) override {
    const CommTimer timer(&comm_s_);
    for (size_t off = 0; off < data.size(); off += kChunk) {
      const auto n = static_cast<int>(std::min(kChunk, data.size() - off));
      PQ_RETURN_IF_ERROR(Check(MPI_Recv(data.data() + off, n, MPI_BYTE, from, 0, MPI_COMM_WORLD,
                                        MPI_STATUS_IGNORE),
                               "Recv"));
    }
    return Status::Ok();
  }

  Status AllMax(std::span<float> v) override {
    const CommTimer timer(&comm_s_);
    if (Size() == 1 || v.empty()) return Status::Ok();
    if (v.size() > INT_MAX) return InvalidArgument("AllMax: too many values");
    return Check(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_FLOAT,
                               MPI_MAX, MPI_COMM_WORLD),
                 "Allreduce(max)");
  }

  Status AllSum(std::span<int64_t> v) override {
    const CommTimer timer(&comm_s_);
    if (Size() == 1 || v.empty()) return Status::Ok();
    if (v.size() > INT_MAX) return InvalidArgument("AllSum: too many values");
    return Check(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_INT64_T,
                               MPI_SUM, MPI_COMM_WORLD),
                 "Allreduce(sum)");
  }

  Status Gather(std::span<const float> mine, std::vector<float>& all, int root) override {
    return GatherOf(mine, all, root);
  }
  Status Gather(std::span<const double> mine, std::vector<double>& all, int root) override {
    return GatherOf(mine, all, root);
  }

  double CommSeconds() const override { return comm_s_; }

  void AbortJob(int code) override {
    int up = 0;
    MPI_Initialized(&up);
    if (up) MPI_Abort(MPI_COMM_WORLD, code);
  }

 private:
  // Gather of T: sizes first, then each rank's values point to point (no int count limit).
  template <typename T>
  Status GatherOf(std::span<const T> mine, std::vector<T>& all, int root) {
    const int size = Size(), rank = Rank();
    if (size == 1) {
      all.assign(mine.begin(), mine.end());
      return Status::Ok();
    }
    const double before = comm_s_;  // Send / Recv below add their own time: count it once
    const auto t0 = std::chrono::steady_clock::now();
    int64_t n = static_cast<int64_t>(mine.size());
    std::vector<int64_t> sizes(static_cast<size_t>(size));
    Status st = Check(
        MPI_Gather(&n, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, root, MPI_COMM_WORLD),
        "Gather");
    if (st.ok() && rank != root) st = Send(std::as_bytes(mine), root);
    if (st.ok() && rank == root) {
      int64_t total = 0;
      for (int64_t s : sizes) total += s;
      all.resize(static_cast<size_t>(total));
      size_t off = 0;
      for (int r = 0; r < size && st.ok(); ++r) {
        const auto count = static_cast<size_t>(sizes[static_cast<size_t>(r)]);
        const std::span<T> dst = std::span(all).subspan(off, count);
        if (r == rank) {
          std::copy(mine.begin(), mine.end(), dst.begin());
        } else {
          st = Recv(std::as_writable_bytes(dst), r);
        }
        off += count;
      }
    }
    comm_s_ = before +
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return st;
  }

  bool started_ = false;
  double comm_s_ = 0;
};

}  // namespace

Backend& MpiBackend() {
  static Mpi mpi;
  return mpi;
}

}  // namespace pq::dist
