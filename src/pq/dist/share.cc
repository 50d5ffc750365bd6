#include "pq/dist/share.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>

#include "pq/core/check.h"
#include "pq/dist/comm.h"

namespace pq::dist {

std::vector<int> AssignOwners(std::span<const double> costs, int ranks) {
  PQ_CHECK(ranks >= 1, "AssignOwners: ranks must be >= 1");
  std::vector<size_t> order(costs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(static_cast<size_t>(ranks), 0.0);
  std::vector<int> owner(costs.size(), 0);
  for (size_t j : order) {
    const auto r = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[j] = static_cast<int>(r);
    load[r] += costs[j];
  }
  return owner;
}

Status BroadcastBlob(std::vector<std::byte>& blob, int root) {
  if (Size() == 1) return Status::Ok();
  int64_t n = static_cast<int64_t>(blob.size());
  std::byte size_bytes[sizeof n];
  std::memcpy(size_bytes, &n, sizeof n);
  PQ_RETURN_IF_ERROR(Broadcast(size_bytes, root));
  std::memcpy(&n, size_bytes, sizeof n);
  blob.resize(static_cast<size_t>(n));
  return Broadcast(blob, root);
}

}  // namespace pq::dist
