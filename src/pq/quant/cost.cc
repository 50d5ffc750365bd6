#include "pq/quant/cost.h"

#include <string>
#include <vector>

namespace pq::quant {

Result<CostEstimator> ParseCostEstimator(std::string_view name) {
  if (name == "trace") return CostEstimator::kTrace;
  if (name == "channel") return CostEstimator::kChannel;
  if (name == "hessian") return CostEstimator::kHessian;
  return InvalidArgument("unknown cost estimator \"" + std::string(name) +
                         "\" (trace, channel, hessian)");
}

Result<double> PredictedLossIncrease(CostEstimator est, const CostInputs& in,
                                     std::span<const float> w, std::span<const float> w_hat) {
  const int64_t n = in.rows, k = in.cols;
  const auto nk = static_cast<size_t>(n * k);
  if (n <= 0 || k <= 0 || in.tokens <= 0 || w.size() != nk || w_hat.size() != nk ||
      in.g2_out.size() != static_cast<size_t>(n) || in.x2_in.size() != static_cast<size_t>(k))
    return InvalidArgument("cost: sizes of the weight and statistics do not match [N, K]");
  const auto t = static_cast<double>(in.tokens);
  auto dw = [&](int64_t o, int64_t i) {
    const size_t j = static_cast<size_t>(o * k + i);
    return static_cast<double>(w[j]) - static_cast<double>(w_hat[j]);
  };
  double sum = 0;
  switch (est) {
    case CostEstimator::kTrace:
      for (int64_t o = 0; o < n; ++o)
        for (int64_t i = 0; i < k; ++i) sum += dw(o, i) * dw(o, i);
      return 0.5 * (in.fisher_sum / t) * sum / static_cast<double>(nk);
    case CostEstimator::kChannel:
      for (int64_t o = 0; o < n; ++o)
        for (int64_t i = 0; i < k; ++i)
          sum += (in.g2_out[static_cast<size_t>(o)] / t) * (in.x2_in[static_cast<size_t>(i)] / t) *
                 dw(o, i) * dw(o, i);
      return 0.5 * sum;
    case CostEstimator::kHessian: {
      if (in.hessian.size() != static_cast<size_t>(k * k))
        return InvalidArgument("cost: the hessian estimator needs H = XᵀX [K, K]");
      std::vector<double> row(static_cast<size_t>(k));
      for (int64_t o = 0; o < n; ++o) {
        for (int64_t i = 0; i < k; ++i) row[static_cast<size_t>(i)] = dw(o, i);
        double quad = 0;  // ΔW_o H ΔW_oᵀ
        for (int64_t i = 0; i < k; ++i) {
          double hi = 0;
          for (int64_t j = 0; j < k; ++j)
            hi += static_cast<double>(in.hessian[static_cast<size_t>(i * k + j)]) *
                  row[static_cast<size_t>(j)];
          quad += row[static_cast<size_t>(i)] * hi;
        }
        sum += (in.g2_out[static_cast<size_t>(o)] / t) * quad / t;
      }
      return 0.5 * sum;
    }
  }
  return Internal("unreachable");
}

}  // namespace pq::quant
