#include "pq/engine/linear_stats.h"

#include "pq/compute/ops.h"
#include "pq/core/check.h"

namespace pq::engine {

void LinearStatsObserver::OnLinear(const model::LinearWeights& l, std::span<const float> x,
                                   std::span<const float> dy, int64_t rows) {
  OnLinearRows(l, 0, l.rows, x, dy, rows);
}

void LinearStatsObserver::OnLinearRows(const model::LinearWeights& l, int64_t row0, int64_t n,
                                       std::span<const float> x, std::span<const float> dy,
                                       int64_t rows) {
  const int64_t k = l.cols;
  PQ_CHECK(row0 >= 0 && n >= 0 && row0 + n <= l.rows, "OnLinearRows: rows outside the Linear");
  LinearStats& s = Entry(l);
  // Gamma = G_cᵀ X_s [n, K]; its squared Frobenius norm.
  gamma_.assign(static_cast<size_t>(n * k), 0.0f);
  compute::cpu::MatMulBackward(dy, x, {}, {}, gamma_, {}, rows, k, n);
  double f = 0;
  for (float g : gamma_) f += static_cast<double>(g) * g;
  s.fisher_sum += f;
  const bool first = row0 == 0;
  if (first) {
    ++s.samples;
    s.tokens += rows;
  }
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t o = 0; o < n; ++o) {
      const double g = dy[static_cast<size_t>(t * n + o)];
      s.g2_out[static_cast<size_t>(row0 + o)] += g * g;
    }
    if (!first) continue;
    for (int64_t i = 0; i < k; ++i) {
      const double v = x[static_cast<size_t>(t * k + i)];
      s.x2_in[static_cast<size_t>(i)] += v * v;
    }
  }
}

LinearStats& LinearStatsObserver::Entry(const model::LinearWeights& l) {
  LinearStats& s = stats_[l.module];
  if (s.g2_out.empty()) {
    s.rows = l.rows;
    s.cols = l.cols;
    s.g2_out.assign(static_cast<size_t>(l.rows), 0.0);
    s.x2_in.assign(static_cast<size_t>(l.cols), 0.0);
  }
  return s;
}

void LinearStatsObserver::AddSums(const model::LinearWeights& l, dist::Sums& sums) {
  LinearStats& s = Entry(l);
  sums.Add(s.fisher_sum);
  sums.Add(std::span(s.g2_out));
  sums.Add(std::span(s.x2_in));
  sums.Add(s.samples);
  sums.Add(s.tokens);
}

LinearStats LinearStatsObserver::Take(const std::string& module) {
  auto node = stats_.extract(module);
  return node.empty() ? LinearStats{} : std::move(node.mapped());
}

}  // namespace pq::engine
