// Per-format totals of Linears (count, parameters, bytes) for summaries.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pq::pipeline {

struct LinearTotals {
  size_t count = 0;
  int64_t params = 0;
  uint64_t bytes = 0;

  void Add(int64_t p, uint64_t b) {
    ++count;
    params += p;
    bytes += b;
  }
  double BitsPerParam() const {
    return params ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0;
  }
};

}  // namespace pq::pipeline
