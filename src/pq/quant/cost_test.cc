// The cost estimators against hand-computed values, and their defining properties: zero for
// Ŵ = W, quadratic in ΔW, and the Hessian estimator equal to the channel one when XᵀX is
// diagonal (that is exactly when the two models agree).
#include "pq/quant/cost.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace pq::quant {
namespace {

TEST(Cost, HandValues) {
  // N=2, K=2, T=2; ΔW = [[1, 0], [0, 2]].
  const std::vector<float> w = {1, 5, 3, 4}, w_hat = {0, 5, 3, 2};
  const std::vector<double> g2 = {4, 2}, x2 = {2, 6};
  const std::vector<float> h = {2, 1, 1, 6};
  CostInputs in{2, 2, 2, 10.0, g2, x2, h};
  // trace: ½ · (10/2) · mean(1, 0, 0, 4) = ½ · 5 · 1.25
  EXPECT_DOUBLE_EQ(*PredictedLossIncrease(CostEstimator::kTrace, in, w, w_hat), 3.125);
  // channel: ½ · [(4/2)(2/2)·1 + (2/2)(6/2)·4] = ½ · (2 + 12)
  EXPECT_DOUBLE_EQ(*PredictedLossIncrease(CostEstimator::kChannel, in, w, w_hat), 7.0);
  // hessian: row0 [1,0]: H00 = 2 -> (4/2)·2/2 = 2; row1 [0,2]: 4·H11 = 24 -> (2/2)·24/2 = 12.
  EXPECT_DOUBLE_EQ(*PredictedLossIncrease(CostEstimator::kHessian, in, w, w_hat), 7.0);
}

TEST(Cost, ZeroQuadraticAndDiagonalAgreement) {
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0, 1);
  const int64_t n = 5, k = 7, t = 11;
  std::vector<float> w(n * k), w_hat(n * k), w_half(n * k);
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] = g(rng);
    w_hat[i] = w[i] + 0.1f * g(rng);
    w_half[i] = w[i] + 0.5f * (w_hat[i] - w[i]);
  }
  std::vector<double> g2(n), x2(k);
  for (auto& v : g2) v = std::fabs(g(rng));
  for (auto& v : x2) v = std::fabs(g(rng)) * t;
  std::vector<float> h(k * k, 0.0f);  // diagonal XᵀX: channel and hessian must agree
  for (int64_t i = 0; i < k; ++i) h[i * k + i] = static_cast<float>(x2[i]);
  CostInputs in{n, k, t, 3.0, g2, x2, h};
  for (auto e : {CostEstimator::kTrace, CostEstimator::kChannel, CostEstimator::kHessian}) {
    EXPECT_EQ(*PredictedLossIncrease(e, in, w, w), 0.0);
    const double full = *PredictedLossIncrease(e, in, w, w_hat);
    const double half = *PredictedLossIncrease(e, in, w, w_half);
    EXPECT_GT(full, 0.0);
    EXPECT_NEAR(half, full / 4, 1e-3 * full);  // quadratic (float rounding of w_half)
  }
  EXPECT_NEAR(*PredictedLossIncrease(CostEstimator::kHessian, in, w, w_hat),
              *PredictedLossIncrease(CostEstimator::kChannel, in, w, w_hat), 1e-9);
}

TEST(Cost, BadInput) {
  const std::vector<float> w(4), bad(3);
  const std::vector<double> g2(2), x2(2);
  CostInputs in{2, 2, 1, 1.0, g2, x2, {}};
  EXPECT_FALSE(PredictedLossIncrease(CostEstimator::kTrace, in, w, bad).ok());
  EXPECT_FALSE(PredictedLossIncrease(CostEstimator::kHessian, in, w, w).ok());  // no H
  in.tokens = 0;
  EXPECT_FALSE(PredictedLossIncrease(CostEstimator::kChannel, in, w, w).ok());
  EXPECT_FALSE(ParseCostEstimator("fisher").ok());
  EXPECT_FALSE(PredictedLossIncrease(CostEstimator::kOutput, in, w, w).ok());  // needs energies
  for (int e = 0; e < kNumEstimators; ++e) {
    const auto est = static_cast<CostEstimator>(e);
    EXPECT_EQ(*ParseCostEstimator(EstimatorName(est)), est);
  }
}

// CandidateCost by hand: N=2, K=2, T=2, with an activation term.
TEST(CandidateCost, HandValues) {
  const std::vector<float> w = {1, 5, 3, 4}, w_hat = {0, 5, 3, 2};  // ΔW = [[1,0],[0,2]]
  const std::vector<double> g2 = {4, 2}, x2 = {2, 6};
  CostInputs in{2, 2, 2, 10.0, g2, x2, {}};
  CandidateEnergies e;
  e.e_weight = {3, 5};
  e.e_act = {1, 2};
  e.e_out = {6, 4};
  e.dx2 = {0.5, 1.5};
  // trace: ½ · (10/2) · (mean ΔW² + mean W² · Σdx2/Σx2) = 2.5 · (5/4 + (51/4) · (2/8))
  EXPECT_DOUBLE_EQ(*CandidateCost(CostEstimator::kTrace, in, e, w, w_hat),
                   2.5 * (1.25 + 12.75 * 0.25));
  // channel: ½/T² Σ_o g2[o] Σ_i (x2[i] ΔW² + dx2[i] W²)
  //   o=0: 4 · (2·1 + 0 + 0.5·1 + 1.5·25) = 4 · 40 = 160
  //   o=1: 2 · (0 + 6·4 + 0.5·9 + 1.5·16) = 2 · 52.5 = 105
  EXPECT_DOUBLE_EQ(*CandidateCost(CostEstimator::kChannel, in, e, w, w_hat), 0.5 * 265 / 4);
  // hessian: ½/T² Σ_o g2[o] (e_weight + e_act) = ½/4 · (4·4 + 2·7)
  EXPECT_DOUBLE_EQ(*CandidateCost(CostEstimator::kHessian, in, e, w, w_hat), 0.5 * 30 / 4);
  // output: ½/T² Σ_o g2[o] e_out = ½/4 · (24 + 8)
  EXPECT_DOUBLE_EQ(*CandidateCost(CostEstimator::kOutput, in, e, w, w_hat), 0.5 * 32 / 4);
  // Weight-only candidate: no activation terms, output falls back to e_weight.
  CandidateEnergies wo;
  wo.e_weight = {3, 5};
  EXPECT_DOUBLE_EQ(*CandidateCost(CostEstimator::kOutput, in, wo, w, w_hat), 0.5 * 22 / 4);
  EXPECT_DOUBLE_EQ(*CandidateCost(CostEstimator::kHessian, in, wo, w, w_hat), 0.5 * 22 / 4);
  EXPECT_DOUBLE_EQ(*CandidateCost(CostEstimator::kTrace, in, wo, w, w_hat), 2.5 * 1.25);
  wo.e_weight = {3};
  EXPECT_FALSE(CandidateCost(CostEstimator::kOutput, in, wo, w, w_hat).ok());
  // block without a block rerun: the hessian value.
  EXPECT_DOUBLE_EQ(*CandidateCost(CostEstimator::kBlock, in, e, w, w_hat), 0.5 * 30 / 4);
  // token: ½/T Σ_o e_token[o]; it needs the per-token energies.
  EXPECT_FALSE(CandidateCost(CostEstimator::kToken, in, e, w, w_hat).ok());
  e.e_token = {8, 4};
  EXPECT_DOUBLE_EQ(*CandidateCost(CostEstimator::kToken, in, e, w, w_hat), 0.5 * 12 / 2);
  e.e_token = {8};
  EXPECT_FALSE(CandidateCost(CostEstimator::kToken, in, e, w, w_hat).ok());
}

TEST(BlockCost, HandValues) {
  // Σ dy² (ŷ − y)² = 4·1 + 1·4 + 0 + 9·0.25 = 10.25; ½ · 10.25 / T with T = 5.
  const std::vector<float> dy = {2, -1, 3, 3}, y = {1, 1, 0, 0}, y_hat = {2, -1, 0, 0.5};
  EXPECT_DOUBLE_EQ(BlockEnergy(dy, y, y_hat), 10.25);
  EXPECT_DOUBLE_EQ(BlockCost(10.25, 5), 1.025);
  EXPECT_EQ(EstimatorName(CostEstimator::kBlock), "block");
  EXPECT_EQ(*ParseCostEstimator("block"), CostEstimator::kBlock);
}

TEST(BlockCost, SplitFollowsTheSharesAndKeepsTheSum) {
  const std::vector<double> share = {1, 3, 0}, params = {10, 10, 20};
  const auto part = SplitUnitCost(8.0, share, params);
  EXPECT_DOUBLE_EQ(part[0], 2.0);
  EXPECT_DOUBLE_EQ(part[1], 6.0);
  EXPECT_DOUBLE_EQ(part[2], 0.0);
  // No member has a share (e.g. no routed token reached them): by parameters.
  const std::vector<double> none = {0, 0, 0};
  const auto by_params = SplitUnitCost(8.0, none, params);
  EXPECT_DOUBLE_EQ(by_params[0], 2.0);
  EXPECT_DOUBLE_EQ(by_params[2], 4.0);
  EXPECT_DOUBLE_EQ(by_params[0] + by_params[1] + by_params[2], 8.0);
}

}  // namespace
}  // namespace pq::quant
