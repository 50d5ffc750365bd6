// ParallelFor over [0, n) on a fixed number of threads (no globals: pass `num_threads`).
#pragma once

#include <cstddef>
#include <functional>

namespace pq {

// Number of hardware threads (at least 1).
int DefaultThreads();

// Calls fn(begin, end) on contiguous chunks covering [0, n), using up to `num_threads`
// threads (the caller's thread included). Blocks until all chunks are done.
void ParallelFor(size_t n, int num_threads, const std::function<void(size_t, size_t)>& fn);

}  // namespace pq
