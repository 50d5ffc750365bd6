// Layer-boundary hidden states of the streaming engine: the first slots in memory, as many
// as fit a budget, the others in an (unlinked) file in the work dir.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"

namespace pq::engine {

class BoundaryStore {
 public:
  BoundaryStore() = default;
  BoundaryStore(BoundaryStore&&) noexcept;
  BoundaryStore& operator=(BoundaryStore&&) noexcept;
  ~BoundaryStore();

  // `count` slots of `floats_each` floats: the first memory_budget_bytes / (floats_each * 4)
  // in memory, the rest in a file under `spill_dir`.
  static Result<BoundaryStore> Create(int64_t count, int64_t floats_each,
                                      uint64_t memory_budget_bytes, const std::string& spill_dir);
  Status Put(int64_t slot, std::span<const float> values);
  Status Get(int64_t slot, std::span<float> out) const;
  bool spilled() const { return fd_ >= 0; }
  int64_t floats_each() const { return floats_each_; }

 private:
  int64_t count_ = 0, floats_each_ = 0;
  int64_t in_memory_ = 0;  // slots [0, in_memory_) are in memory_
  std::vector<std::vector<float>> memory_;
  int fd_ = -1;
};

}  // namespace pq::engine
