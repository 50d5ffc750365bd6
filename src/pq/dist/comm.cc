#include "pq/dist/comm.h"

#include <cstdio>
#include <cstdlib>

#include "pq/dist/backend.h"

namespace pq::dist {
namespace {

// One rank, no messages: the build without MPI, or an MPI executable not yet installed.
class SingleRank final : public Backend {
 public:
  Status Init(int*, char***) override { return Status::Ok(); }
  void Finalize() override {}
  bool Built() const override { return false; }
  int Rank() const override { return 0; }
  int Size() const override { return 1; }
  Status Barrier() override { return Status::Ok(); }
  Status Broadcast(std::span<std::byte>, int) override { return Status::Ok(); }
  Status Send(std::span<const std::byte>, int) override {
    return Internal("Send: no other rank");
  }
  Status Recv(std::span<std::byte>, int) override { return Internal("Recv: no other rank"); }
  Status AllMax(std::span<float>) override { return Status::Ok(); }
  Status AllSum(std::span<int64_t>) override { return Status::Ok(); }
  Status Gather(std::span<const float> mine, std::vector<float>& all, int) override {
    all.assign(mine.begin(), mine.end());
    return Status::Ok();
  }
  Status Gather(std::span<const double> mine, std::vector<double>& all, int) override {
    all.assign(mine.begin(), mine.end());
    return Status::Ok();
  }
  double CommSeconds() const override { return 0; }
  void AbortJob(int) override {}
};

SingleRank single_rank;
Backend* backend = &single_rank;

}  // namespace

void UseBackend(Backend& b) { backend = &b; }

Status Init(int* argc, char*** argv) { return backend->Init(argc, argv); }
void Finalize() { backend->Finalize(); }
bool Built() { return backend->Built(); }
int Rank() { return backend->Rank(); }
int Size() { return backend->Size(); }
Status Barrier() { return backend->Barrier(); }
Status Broadcast(std::span<std::byte> data, int root) { return backend->Broadcast(data, root); }
Status Send(std::span<const std::byte> data, int to) { return backend->Send(data, to); }
Status Recv(std::span<std::byte> data, int from) { return backend->Recv(data, from); }
Status AllMax(std::span<float> v) { return backend->AllMax(v); }
Status AllSum(std::span<int64_t> v) { return backend->AllSum(v); }
Status Gather(std::span<const float> mine, std::vector<float>& all, int root) {
  return backend->Gather(mine, all, root);
}
Status Gather(std::span<const double> mine, std::vector<double>& all, int root) {
  return backend->Gather(mine, all, root);
}
double CommSeconds() { return backend->CommSeconds(); }

void Abort(const std::string& message, int code) {
  std::fprintf(stderr, "prismaquant: rank %d of %d: %s\n", Rank(), Size(), message.c_str());
  std::fflush(stderr);
  backend->AbortJob(code);
  std::exit(code);
}

}  // namespace pq::dist
