#include "pq/quant/cost.h"

#include <string>
#include <vector>

namespace pq::quant {

std::string_view EstimatorName(CostEstimator e) {
  switch (e) {
    case CostEstimator::kTrace:
      return "trace";
    case CostEstimator::kChannel:
      return "channel";
    case CostEstimator::kHessian:
      return "hessian";
    case CostEstimator::kOutput:
      return "output";
    case CostEstimator::kBlock:
      return "block";
    case CostEstimator::kToken:
      return "token";
  }
  return "?";
}

bool NeedsPerTokenError(CostEstimator e) {
  return e == CostEstimator::kOutput || e == CostEstimator::kToken;
}

Result<CostEstimator> ParseCostEstimator(std::string_view name) {
  for (int i = 0; i < kNumEstimators; ++i) {
    const auto e = static_cast<CostEstimator>(i);
    if (name == EstimatorName(e)) return e;
  }
  return InvalidArgument("unknown cost estimator \"" + std::string(name) +
                         "\" (trace, channel, hessian, output, block, token)");
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
    case CostEstimator::kOutput:
      return InvalidArgument("cost: the output estimator needs the probe's energies");
    case CostEstimator::kBlock:
      return InvalidArgument("cost: the block estimator needs a block rerun");
    case CostEstimator::kToken:
      return InvalidArgument("cost: the token estimator needs the probe's per-token energies");
  }
  return Internal("unreachable");
}

namespace {

double Sum(std::span<const double> v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

// Σ_o g[o] · v[o]
double Weighted(std::span<const double> g2, std::span<const double> v) {
  double s = 0;
  for (size_t o = 0; o < g2.size(); ++o) s += g2[o] * v[o];
  return s;
}

}  // namespace

Result<double> CandidateCost(CostEstimator est, const CostInputs& in, const CandidateEnergies& e,
                             std::span<const float> w, std::span<const float> w_hat) {
  const int64_t n = in.rows, k = in.cols;
  const auto nk = static_cast<size_t>(n * k);
  const bool act = !e.e_act.empty();
  if (n <= 0 || k <= 0 || in.tokens <= 0 || w.size() != nk || w_hat.size() != nk ||
      in.g2_out.size() != static_cast<size_t>(n) || in.x2_in.size() != static_cast<size_t>(k) ||
      e.e_weight.size() != static_cast<size_t>(n) ||
      (act &&
       (e.e_act.size() != static_cast<size_t>(n) || e.dx2.size() != static_cast<size_t>(k))) ||
      (!e.e_out.empty() && e.e_out.size() != static_cast<size_t>(n)) ||
      (!e.e_token.empty() && e.e_token.size() != static_cast<size_t>(n)))
    return InvalidArgument("cost: sizes of the weight, statistics and energies do not match");
  const auto t = static_cast<double>(in.tokens);
  switch (est) {
    case CostEstimator::kTrace: {
      double dw2 = 0, w2 = 0;
      for (size_t j = 0; j < nk; ++j) {
        const double d = static_cast<double>(w[j]) - w_hat[j];
        dw2 += d * d;
        w2 += static_cast<double>(w[j]) * w[j];
      }
      const double x2 = Sum(in.x2_in);
      const double rel_act = act && x2 > 0 ? Sum(e.dx2) / x2 : 0.0;
      return 0.5 * (in.fisher_sum / t) * (dw2 + w2 * rel_act) / static_cast<double>(nk);
    }
    case CostEstimator::kChannel: {
      double sum = 0;
      for (int64_t o = 0; o < n; ++o) {
        double row = 0;
        for (int64_t i = 0; i < k; ++i) {
          const size_t j = static_cast<size_t>(o * k + i);
          const double d = static_cast<double>(w[j]) - w_hat[j];
          row += in.x2_in[static_cast<size_t>(i)] * d * d;
          if (act) row += e.dx2[static_cast<size_t>(i)] * static_cast<double>(w[j]) * w[j];
        }
        sum += in.g2_out[static_cast<size_t>(o)] * row;
      }
      return 0.5 * sum / (t * t);
    }
    case CostEstimator::kHessian:
    case CostEstimator::kBlock: {  // block: the hessian value where no block rerun priced it
      double sum = Weighted(in.g2_out, e.e_weight);
      if (act) sum += Weighted(in.g2_out, e.e_act);
      return 0.5 * sum / (t * t);
    }
    case CostEstimator::kOutput:
      return 0.5 * Weighted(in.g2_out, e.e_out.empty() ? e.e_weight : e.e_out) / (t * t);
    case CostEstimator::kToken:
      if (e.e_token.empty())
        return InvalidArgument("cost: the token estimator needs per-token energies");
      return 0.5 * Sum(e.e_token) / t;
  }
  return Internal("unreachable");
}

double BlockEnergy(std::span<const float> dy, std::span<const float> y,
                   std::span<const float> y_hat) {
  double sum = 0;
  for (size_t i = 0; i < dy.size(); ++i) {
    const double g = dy[i], d = static_cast<double>(y_hat[i]) - y[i];
    sum += g * g * d * d;
  }
  return sum;
}

std::vector<double> SplitUnitCost(double unit_cost, std::span<const double> share,
                                  std::span<const double> params) {
  std::span<const double> by = Sum(share) > 0 ? share : params;
  const double total = Sum(by);
  std::vector<double> out(by.size(), 0.0);
  for (size_t i = 0; i < by.size(); ++i) out[i] = total > 0 ? unit_cost * by[i] / total : 0.0;
  return out;
}

}  // namespace pq::quant
