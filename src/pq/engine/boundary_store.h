// Layer-boundary hidden states of the streaming engine: kept in memory while they fit a
// budget, else in an (unlinked) file in the work dir.
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

  // `count` slots of `floats_each` floats. Spills to a file under `spill_dir` when
  // count * floats_each * 4 exceeds `memory_budget_bytes`.
  static Result<BoundaryStore> Create(int64_t count, int64_t floats_each,
                                      uint64_t memory_budget_bytes, const std::string& spill_dir);
  Status Put(int64_t slot, std::span<const float> values);
  Status Get(int64_t slot, std::span<float> out) const;
  bool spilled() const { return fd_ >= 0; }
  int64_t floats_each() const { return floats_each_; }

 private:
  int64_t count_ = 0, floats_each_ = 0;
  std::vector<std::vector<float>> memory_;
  int fd_ = -1;
};

}  // namespace pq::engine
