#include "pq/engine/boundary_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace pq::engine {

BoundaryStore::BoundaryStore(BoundaryStore&& o) noexcept { *this = std::move(o); }
BoundaryStore& BoundaryStore::operator=(BoundaryStore&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    count_ = o.count_;
    floats_each_ = o.floats_each_;
    in_memory_ = o.in_memory_;
    memory_ = std::move(o.memory_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}
BoundaryStore::~BoundaryStore() {
  if (fd_ >= 0) close(fd_);
}

Result<BoundaryStore> BoundaryStore::Create(int64_t count, int64_t floats_each,
                                            uint64_t memory_budget_bytes,
                                            const std::string& spill_dir) {
  BoundaryStore s;
  s.count_ = count;
  s.floats_each_ = floats_each;
  const auto slot_bytes = std::max<uint64_t>(static_cast<uint64_t>(floats_each) * 4, 1);
  s.in_memory_ = std::min<int64_t>(count, static_cast<int64_t>(memory_budget_bytes / slot_bytes));
  s.memory_.assign(static_cast<size_t>(s.in_memory_), {});
  if (s.in_memory_ == count) return s;
  std::string tmpl =
      (spill_dir.empty() ? std::string("/tmp") : spill_dir) + "/pq-boundaries-XXXXXX";
  s.fd_ = mkstemp(tmpl.data());
  if (s.fd_ < 0)
    return IoError("cannot create a spill file in " + spill_dir + ": " + std::strerror(errno) +
                   " (pass a writable --work dir or a larger --memory-budget)");
  unlink(tmpl.c_str());  // removed when closed, even after a crash
  return s;
}

Status BoundaryStore::Put(int64_t slot, std::span<const float> v) {
  if (slot < 0 || slot >= count_ || static_cast<int64_t>(v.size()) != floats_each_)
    return Internal("BoundaryStore::Put: bad slot or size");
  if (slot < in_memory_) {
    memory_[static_cast<size_t>(slot)].assign(v.begin(), v.end());
    return Status::Ok();
  }
  const auto* p = reinterpret_cast<const char*>(v.data());
  size_t left = v.size_bytes();
  auto off = static_cast<off_t>((slot - in_memory_) * floats_each_ * 4);
  while (left > 0) {
    const ssize_t n = pwrite(fd_, p, left, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return IoError(std::string("writing the boundary spill file: ") + std::strerror(errno));
    p += n;
    off += n;
    left -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status BoundaryStore::Get(int64_t slot, std::span<float> out) const {
  if (slot < 0 || slot >= count_ || static_cast<int64_t>(out.size()) != floats_each_)
    return Internal("BoundaryStore::Get: bad slot or size");
  if (slot < in_memory_) {
    const auto& m = memory_[static_cast<size_t>(slot)];
    if (m.size() != out.size()) return Internal("BoundaryStore::Get: slot never written");
    std::copy(m.begin(), m.end(), out.begin());
    return Status::Ok();
  }
  auto* p = reinterpret_cast<char*>(out.data());
  size_t left = out.size_bytes();
  auto off = static_cast<off_t>((slot - in_memory_) * floats_each_ * 4);
  while (left > 0) {
    const ssize_t n = pread(fd_, p, left, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return IoError(std::string("reading the boundary spill file: ") + std::strerror(errno));
    p += n;
    off += n;
    left -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace pq::engine
