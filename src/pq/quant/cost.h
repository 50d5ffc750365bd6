// Predicted loss increase (nats/token) of replacing a Linear's weight W by Ŵ, from the
// calibration statistics of engine/linear_stats.h (DESIGN §3 "Cost of a candidate format").
// With ΔW = W − Ŵ [N, K], T = calibration tokens:
//   trace    ½ · (fisher_sum / T) · mean(ΔW²)
//   channel  ½ · Σ_o Σ_i (g2_out[o] / T) · (x2_in[i] / T) · ΔW[o,i]²        (diagonal K-FAC)
//   hessian  ½ · Σ_o (g2_out[o] / T) · (ΔW_o H ΔW_oᵀ) / T,  H = XᵀX        (output-diagonal K-FAC)
// These price the weight error only; formats that also quantize activations at run time need
// the activation term added by the caller (the probe), which this file does not do yet.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "pq/core/status.h"

namespace pq::quant {

struct CostInputs {
  int64_t rows = 0, cols = 0;      // N, K
  int64_t tokens = 0;              // T (calibration tokens, > 0)
  double fisher_sum = 0;           // Σ_s ||G_sᵀ X_s||²_F
  std::span<const double> g2_out;  // [N]
  std::span<const double> x2_in;   // [K]
  std::span<const float> hessian;  // [K, K] (hessian cost only)
};

enum class CostEstimator { kTrace, kChannel, kHessian };
Result<CostEstimator> ParseCostEstimator(std::string_view name);

// w, w_hat: [N, K]. InvalidArgument on size mismatches or a missing Hessian.
Result<double> PredictedLossIncrease(CostEstimator estimator, const CostInputs& in,
                                     std::span<const float> w, std::span<const float> w_hat);

}  // namespace pq::quant
