// Predicted loss increase (nats/token) of replacing a Linear's weight W by Ŵ, from the
// calibration statistics of engine/linear_stats.h (DESIGN §3 "Cost of a candidate format").
// With ΔW = W − Ŵ [N, K], T = calibration tokens:
//   trace    ½ · (fisher_sum / T) · mean(ΔW²)
//   channel  ½ · Σ_o Σ_i (g2_out[o] / T) · (x2_in[i] / T) · ΔW[o,i]²        (diagonal K-FAC)
//   hessian  ½ · Σ_o (g2_out[o] / T) · (ΔW_o H ΔW_oᵀ) / T,  H = XᵀX        (output-diagonal K-FAC)
// PredictedLossIncrease prices the weight error only (the direct reference, used by tests).
// The probe prices whole candidates, activation quantization included, with CandidateCost
// below from energies accumulated on the calibration tokens.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

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

enum class CostEstimator { kTrace, kChannel, kHessian, kOutput };
inline constexpr int kNumEstimators = 4;
// Stable names (persisted in work dirs): "trace", "channel", "hessian", "output".
std::string_view EstimatorName(CostEstimator e);
Result<CostEstimator> ParseCostEstimator(std::string_view name);

// w, w_hat: [N, K]. InvalidArgument on size mismatches or a missing Hessian.
Result<double> PredictedLossIncrease(CostEstimator estimator, const CostInputs& in,
                                     std::span<const float> w, std::span<const float> w_hat);

// What the probe accumulates for one (Linear, candidate format) over the calibration tokens,
// with X [T, K] the Linear's inputs, Q_a the format's run-time activation quantization
// (identity for weight-only formats), Y = X Wᵀ and Ŵ the candidate's dequantized weight:
struct CandidateEnergies {
  std::vector<double> e_weight;  // [N] Σ_t ((X (W − Ŵ)ᵀ)[t, o])²
  std::vector<double> e_act;     // [N] Σ_t (((X − Q_a X) Wᵀ)[t, o])²      (empty: no Q_a)
  std::vector<double> e_out;     // [N] Σ_t ((Y − Q_a(X) Ŵᵀ)[t, o])²       (empty: = e_weight)
  std::vector<double> dx2;       // [K] Σ_t ((X − Q_a X)[t, i])²           (empty: no Q_a)
};

// Predicted Δloss (nats/token) of a whole candidate — weight and activation quantization —
// with g[o] = g2_out[o]/T and x[i] = x2_in[i]/T:
//   trace    ½ · (fisher_sum/T) · (mean ΔW² + mean W² · Σ dx2 / Σ x2_in)
//            (the activation error as the relative weight error it equals for ΔX ∝ X)
//   channel  ½ · Σ_o Σ_i g[o] · (x[i] ΔW[o,i]² + (dx2[i]/T) W[o,i]²)
//   hessian  ½ · Σ_o g[o] · (e_weight[o] + e_act[o]) / T    (ΔW_o H ΔW_oᵀ = e_weight[o])
//   output   ½ · Σ_o g[o] · e_out[o] / T                      (AutoQuantize's score; also
//            prices the interaction of weight and activation errors)
// w, w_hat: [N, K]; `in.hessian` is not used.
Result<double> CandidateCost(CostEstimator estimator, const CostInputs& in,
                             const CandidateEnergies& e, std::span<const float> w,
                             std::span<const float> w_hat);

}  // namespace pq::quant
