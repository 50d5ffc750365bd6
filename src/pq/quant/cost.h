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

enum class CostEstimator { kTrace, kChannel, kHessian, kOutput, kBlock, kToken };
inline constexpr int kNumEstimators = 6;
// Stable names (persisted in work dirs): "trace", "channel", "hessian", "output", "block",
// "token". Work dirs probed before "block" / "token" existed lack them; they read both as
// "hessian" (what "block" is wherever no block rerun priced the Linear, see below).
std::string_view EstimatorName(CostEstimator e);
Result<CostEstimator> ParseCostEstimator(std::string_view name);

// Whether the estimator needs each token's output error (CandidateEnergies e_out, e_token):
// output and token. The probe can leave them unrecorded (ProbeObserverOptions::per_token).
bool NeedsPerTokenError(CostEstimator e);

// w, w_hat: [N, K]. InvalidArgument on size mismatches or a missing Hessian.
Result<double> PredictedLossIncrease(CostEstimator estimator, const CostInputs& in,
                                     std::span<const float> w, std::span<const float> w_hat);

// What the probe accumulates for one (Linear, candidate format) over the calibration tokens,
// with X [T, K] the Linear's inputs, Q_a the format's run-time activation quantization
// (identity for weight-only formats), Y = X Wᵀ and Ŵ the candidate's dequantized weight:
struct CandidateEnergies {
  std::vector<double> e_weight;  // [N] Σ_t ((X (W − Ŵ)ᵀ)[t, o])²
  std::vector<double> e_act;     // [N] Σ_t (((X − Q_a X) Wᵀ)[t, o])²      (empty: no Q_a)
  std::vector<double> e_out;  // [N] Σ_t ((Y − Q_a(X) Ŵᵀ)[t, o])²       (empty: = e_weight)
  std::vector<double> dx2;    // [K] Σ_t ((X − Q_a X)[t, i])²           (empty: no Q_a)
  // [N] Σ_t dY[t, o]² · ((Y − Q_a(X) Ŵᵀ)[t, o])², dY = dL/dY (L = Σ scored NLL): the output
  // error weighted token by token by that token's own output gradient (empty: not recorded).
  std::vector<double> e_token;
};

// Predicted Δloss (nats/token) of a whole candidate — weight and activation quantization —
// with g[o] = g2_out[o]/T and x[i] = x2_in[i]/T:
//   trace    ½ · (fisher_sum/T) · (mean ΔW² + mean W² · Σ dx2 / Σ x2_in)
//            (the activation error as the relative weight error it equals for ΔX ∝ X)
//   channel  ½ · Σ_o Σ_i g[o] · (x[i] ΔW[o,i]² + (dx2[i]/T) W[o,i]²)
//   hessian  ½ · Σ_o g[o] · (e_weight[o] + e_act[o]) / T    (ΔW_o H ΔW_oᵀ = e_weight[o])
//   output   ½ · Σ_o g[o] · e_out[o] / T                      (AutoQuantize's score; also
//            prices the interaction of weight and activation errors)
//   block    = hessian here: a Linear's own statistics cannot see routing; an MoE layer's
//            units are priced at the block output instead (BlockCost below)
//   token    ½ · Σ_o e_token[o] / T = ½ · Σ_t Σ_o dY[t,o]² · ΔY[t,o]² / T — output's
//            diagonal Fisher taken per token instead of as the product of two token means.
//            Where the error and the gradient concentrate on different tokens, output and
//            hessian are wrong by their correlation: on SmolLM2 the inputs of layer 11's
//            down_proj reach |x| ≈ 3200 on each sequence's first token (the attention sink),
//            whose output gradient is small, and hessian over-predicts that Linear ~17×.
// w, w_hat: [N, K]; `in.hessian` is not used.
Result<double> CandidateCost(CostEstimator estimator, const CostInputs& in,
                             const CandidateEnergies& e, std::span<const float> w,
                             std::span<const float> w_hat);

// "block": the price of a whole decision unit of an MoE decoder layer (its experts, its shared
// expert, or an attention / DeltaNet unit upstream of the router), measured downstream of the
// unit: its layer is re-run from its stored input with every Linear of the unit replaced by
// its candidate (Ŵ and the run-time activation quantization export writes), routers included,
// followed through the next layer(s) of a window (engine/block_cost.h; the probe's default is
// the unit's layer and the next, so the next router's changed choices count too). With y, ŷ
// [T_all, D] the window's output before and after, dy = dL/dy there (L = Σ scored NLL, so dy[t]
// is token t's gradient) and T the scored calibration tokens:
//   block    ½ · Σ_t Σ_d dy[t,d]² · (ŷ[t,d] − y[t,d])² / T
// — the per-token diagonal empirical Fisher at the window's output: AutoQuantize's block score,
// in output's normalisation (output = ½ Σ_o mean_t dy² · mean_t Δy², here the mean over tokens
// of the products, so an expert's routed tokens are not averaged with the tokens it never
// sees). Dense layers are not re-run: their "block" is the hessian value (CandidateCost).
// BlockEnergy returns Σ_t Σ_d dy² (ŷ − y)² (all spans [T_all·D]); BlockCost = ½ · energy / T.
double BlockEnergy(std::span<const float> dy, std::span<const float> y,
                   std::span<const float> y_hat);
inline double BlockCost(double energy, int64_t tokens) {
  return 0.5 * energy / static_cast<double>(tokens);
}

// How a unit's block cost is written per Linear (probe.json stores costs per Linear; allocate
// sums a unit's members): member i gets unit_cost · share[i] / Σ share, with share = its own
// `output` price of the same candidate (the part of the unit's output error it causes, to
// first order); when every share is 0 (no routed token reached any member), in proportion
// to `params`. The parts sum to unit_cost (up to rounding).
std::vector<double> SplitUnitCost(double unit_cost, std::span<const double> share,
                                  std::span<const double> params);

}  // namespace pq::quant
