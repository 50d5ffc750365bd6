#include "pq/core/io_clock.h"

#include <atomic>
#include <cstdint>

namespace pq {
namespace {

std::atomic<int64_t> io_ns{0};
thread_local int depth = 0;

}  // namespace

double IoSeconds() { return static_cast<double>(io_ns.load()) * 1e-9; }

IoTimer::IoTimer() : outer_(depth++ == 0), t0_(std::chrono::steady_clock::now()) {}

IoTimer::~IoTimer() {
  --depth;
  if (!outer_) return;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - t0_)
                      .count();
  io_ns.fetch_add(static_cast<int64_t>(ns));
}

}  // namespace pq
