// KL(source ‖ perturbed) and ΔNLL for many perturbations of one model over the same windows —
// the measurement behind `check-costs` and `allocate --measured-costs`, where each perturbation
// replaces some Linears of one decoder layer (one decision unit in one format) or lm_head.
//
// Evaluating each perturbed model from scratch repeats work that does not change: the layers
// below the perturbed one and the source's own output distribution. Here the source runs once
// (Runner::Forward keeping every layer boundary; its next-token distribution p at every scored
// position kept as float probabilities with Σ_j p_j·log p_j per position in double), and each
// perturbation re-runs only its layer (from the stored input boundary), the layers above it and
// the head. With q the perturbed model's log-probs at a position, logits z and log-sum-exp lse:
//   KL = Σ_j p_j (log p_j − q_j) = Σ_j p_j log p_j − Σ_j p_j z_j + lse · Σ_j p_j,
// which needs only the lse the cross-entropy already computes and one dot product (p as stored,
// so the identity perturbation gives exactly 0).
//
// Memory: the boundaries (spilled beyond RunnerOptions::memory_budget_bytes), p [scored, V]
// as float (refused above `max_probs_bytes`: evaluate fewer tokens), and the source's layers
// resident up to `layer_cache_bytes` (loaded again per perturbation beyond it).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "pq/core/status.h"
#include "pq/engine/runner.h"
#include "pq/model/weights.h"

namespace pq::engine {

struct PerturbedEvalOptions {
  RunnerOptions runner;
  uint64_t layer_cache_bytes = 2ull << 30;
  uint64_t max_probs_bytes = 4ull << 30;
};

// Sums over the scored tokens.
struct PerturbedSums {
  double nll = 0, kl = 0;
};

class PerturbedEval {
 public:
  // Runs the source over `windows` (Sequence targets: -1 = not scored).
  static Result<std::unique_ptr<PerturbedEval>> Create(const model::WeightSource& src,
                                                       std::span<const Sequence> windows,
                                                       const PerturbedEvalOptions& o);

  int64_t scored() const { return scored_; }
  double base_nll_sum() const { return base_nll_; }

  // Replaces Linears of decoder layer `layer` (0..L-1; L: lm_head) — `replace` is called on a
  // copy of each of the layer's Linears (model::ForEachLinear order; on lm_head alone for L) —
  // and evaluates the model from there. The source is left as it was.
  using ReplaceFn = std::function<Status(model::LinearWeights&)>;
  Result<PerturbedSums> Measure(int64_t layer, const ReplaceFn& replace);

 private:
  PerturbedEval(const model::WeightSource& src, std::span<const Sequence> windows,
                const PerturbedEvalOptions& o)
      : src_(src), seqs_(windows.begin(), windows.end()), opt_(o), runner_(src, seqs_, o.runner) {}
  Result<const model::LayerWeights*> Layer(int64_t l, model::LayerWeights& scratch);
  // The head over final hidden states h [sum T, D]: NLL and KL sums (no KL before probs_ exist,
  // which this call then records).
  Result<PerturbedSums> HeadSums(std::span<const float> h, const model::HeadWeights& head);

  const model::WeightSource& src_;
  std::vector<Sequence> seqs_;
  PerturbedEvalOptions opt_;
  Runner runner_;
  model::HeadWeights head_;
  std::vector<model::LayerWeights> cache_;  // layers 0 .. cache_.size()-1 resident
  std::vector<float> probs_;                // [scored, V] the source's next-token probabilities
  std::vector<double> plogp_;               // [scored] Σ_j p_j log p_j (p as stored)
  int64_t scored_ = 0;
  double base_nll_ = 0;
};

}  // namespace pq::engine
