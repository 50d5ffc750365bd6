// Kneedle on a Pareto curve: normalise, chord between the endpoints, farthest point below.
#include "pq/alloc/knee.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace pq::alloc {

std::optional<int> KneeIndex(std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size() || x.size() < 3) return std::nullopt;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) return std::nullopt;
  }
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (x[a] != x[b]) return x[a] < x[b];
    if (y[a] != y[b]) return y[a] < y[b];
    return a < b;
  });
  const auto [xlo, xhi] = std::minmax_element(x.begin(), x.end());
  const auto [ylo, yhi] = std::minmax_element(y.begin(), y.end());
  const double xmin = *xlo, ymin = *ylo, xr = *xhi - xmin, yr = *yhi - ymin;
  if (!(xr > 0.0) || !(yr > 0.0)) return std::nullopt;
  const auto nx = [&](size_t i) { return (x[i] - xmin) / xr; };
  const auto ny = [&](size_t i) { return (y[i] - ymin) / yr; };
  const size_t first = order.front(), last = order.back();
  const double x0 = nx(first), y0 = ny(first), x1 = nx(last), y1 = ny(last);
  double best = 0.0;
  std::optional<int> knee;
  for (size_t j = 1; j + 1 < order.size(); ++j) {
    const size_t i = order[j];
    const double chord = y0 + (y1 - y0) * (nx(i) - x0) / (x1 - x0);
    const double d = chord - ny(i);
    if (d > best) {
      best = d;
      knee = static_cast<int>(i);
    }
  }
  return knee;
}

}  // namespace pq::alloc
