// Per-Linear calibration statistics gathered through the observer hook while each layer is
// resident (DESIGN §3 "Sensitivity"): for sample s with output gradients G_s [R, N] and
// inputs X_s [R, K] (R = its tokens, or for an expert the tokens routed to it):
//   fisher_sum  = sum_s ||G_s^T X_s||_F^2   (per-sample empirical Fisher, before / T_total)
//   g2_out[o]   = sum_t G[t, o]^2,  x2_in[i] = sum_t X[t, i]^2
// (The input Hessian XᵀX is engine/hessian_observer.h's.) One OnLinear call must carry exactly
// one sample: run the Runner with batch_tokens = 1 so every batch is a single sequence.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "pq/dist/block_fold.h"
#include "pq/model/decoder.h"

namespace pq::engine {

struct LinearStats {
  int64_t rows = 0, cols = 0;       // N, K
  int64_t samples = 0, tokens = 0;  // observed samples (calls) and rows
  double fisher_sum = 0;            // sum over samples of ||G_s^T X_s||_F^2
  std::vector<double> g2_out;       // [N]
  std::vector<double> x2_in;        // [K]
};

class LinearStatsObserver : public model::LinearObserver {
 public:
  void OnLinear(const model::LinearWeights& linear, std::span<const float> x,
                std::span<const float> dy, int64_t rows) override;
  // Output rows [row0, row0 + n) of one sample (row0 == 0 counts the sample and its inputs):
  // fisher_sum adds ||G_cᵀ X_s||² of the slice, which sums to the sample's ||G_sᵀ X_s||².
  void OnLinearRows(const model::LinearWeights& linear, int64_t row0, int64_t n,
                    std::span<const float> x, std::span<const float> dy, int64_t rows) override;
  const std::map<std::string, LinearStats>& stats() const { return stats_; }
  // The statistics of `linear`, zero until observed.
  LinearStats& Entry(const model::LinearWeights& linear);
  // Its sums over samples (dist/block_fold.h), created if need be.
  void AddSums(const model::LinearWeights& linear, dist::Sums& sums);
  // Removes and returns one Linear's statistics (empty stats if it was never observed).
  LinearStats Take(const std::string& module);

 private:
  std::map<std::string, LinearStats> stats_;
  std::vector<float> gamma_;  // scratch [n, K]
};

}  // namespace pq::engine
