#include "pq/core/thread_pool.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace pq {

int DefaultThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void ParallelFor(size_t n, int num_threads, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  const size_t t = std::min(n, static_cast<size_t>(std::max(1, num_threads)));
  if (t == 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(t - 1);
  const size_t chunk = (n + t - 1) / t;
  for (size_t i = 1; i < t; ++i) {
    const size_t b = i * chunk, e = std::min(n, b + chunk);
    if (b < e) workers.emplace_back([&fn, b, e] { fn(b, e); });
  }
  fn(0, std::min(n, chunk));
  for (auto& w : workers) w.join();
}

}  // namespace pq
