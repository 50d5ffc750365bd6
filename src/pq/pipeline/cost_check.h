// Which cost estimator to trust, measured (DESIGN §3): every Linear of a probed model is
// quantized alone — RTN in each requested format, with the unit's shared NVFP4 global scales
// and the calibrated input global scale, exactly as the probe priced it — and the model is
// evaluated on held-out text with that Linear's input quantized as the runtime does. The
// measured ΔNLL and KL(base || perturbed) are compared with each estimator's prediction from
// W/probe.json: Spearman rank correlation (over all (Linear, format) pairs) and the median
// ratio predicted / measured.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pq/core/exec_context.h"
#include "pq/core/status.h"
#include "pq/engine/eval.h"
#include "pq/formats/format.h"
#include "pq/pipeline/eval_text.h"
#include "pq/quant/cost.h"

namespace pq::pipeline {

struct CostCheckOptions {
  std::string model, work;
  EvalInput text;                      // held-out text
  engine::EvalOptions eval;            // ctx, stride, runner
  std::vector<formats::FormatId> formats = {formats::FormatId::kNVFP4, formats::FormatId::kMXFP8};
  bool include_lm_head = false;
  ExecContext exec;  // threads, progress, log level: installed for the call
};

struct CostCheckRow {
  std::string module, format;
  double measured_dnll = 0, measured_kl = 0;
  std::array<double, quant::kNumEstimators> predicted{};
};

struct CostCheckResult {
  double base_nll = 0;
  int64_t tokens = 0;
  std::vector<CostCheckRow> rows;
  // Per estimator: Spearman ρ of prediction vs measured ΔNLL and vs measured KL, and the
  // median of predicted / measured KL and of predicted / measured ΔNLL (pairs with ΔNLL > 0).
  std::array<double, quant::kNumEstimators> spearman_dnll{}, spearman_kl{}, ratio_kl{},
      ratio_dnll{};
  // Spearman ρ vs KL within each format (ranking Linears, which is what the allocator needs
  // once the format's own level is known), averaged over the formats weighted by their pairs.
  std::array<double, quant::kNumEstimators> spearman_kl_within{};

  // {model (of o), base_nll, tokens, pairs, estimators: {name: {spearman_*, median_*}}}
  nlohmann::json ToJson(const CostCheckOptions& o) const;
};

Result<CostCheckResult> CheckCosts(const CostCheckOptions& o);

// Spearman rank correlation (average ranks for ties); 0 if fewer than 2 points or no spread.
double Spearman(std::span<const double> a, std::span<const double> b);

}  // namespace pq::pipeline
