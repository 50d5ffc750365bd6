// Which cost estimator to trust, measured (DESIGN §3): every Linear of a probed model — or,
// per_unit, every decision unit (all its Linears at once: the experts of an MoE layer, fused
// q/k/v, ...) — is quantized alone in each requested format exactly as the probe priced it
// (ProbedCandidates: RTN or the export's passes, the probe's global scales and calibrated
// input global scale), and the model is evaluated on held-out text with those Linears' inputs
// quantized as the runtime does. The measured ΔNLL and KL(base || perturbed) are compared with
// each estimator's prediction from W/probe.json (a unit's: the sum over its members, as
// allocate sums them): Spearman rank correlation (over all (Linear or unit, format) pairs) and
// the median ratio predicted / measured. The MTP head is not perturbed (the body's NLL does
// not see it).
#pragma once

#include <array>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
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
  EvalInput text;            // held-out text
  engine::EvalOptions eval;  // ctx, stride, runner
  std::vector<formats::FormatId> formats = {formats::FormatId::kNVFP4, formats::FormatId::kMXFP8};
  bool include_lm_head = false;
  bool per_unit = false;  // perturb whole decision units instead of single Linears
  // Perturb only these Linears (or units, when per_unit), by exact name; empty: all.
  std::vector<std::string> only;
  ExecContext exec;  // threads, progress, log level: installed for the call
};

struct CostCheckRow {
  std::string module, format;  // module: the unit's name when per_unit
  double measured_dnll = 0, measured_kl = 0;
  std::array<double, quant::kNumEstimators> predicted{};  // summed over the unit's members
  std::optional<int64_t> routing_changes;                 // the probe's, for block-priced MoE units
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

// The rows as CSV (check-costs --csv; read back by allocate --measured-costs, so its columns
// are an ABI): module,format,measured_dnll,measured_kl,pred_<estimator>...,routing_changes.
std::string CostCheckCsv(const CostCheckResult& r);

// measured KL (nats/token) by module (a unit's name for --per-unit rows), then format name.
using MeasuredCosts = std::map<std::string, std::map<std::string, double>>;
// Reads CostCheckCsv's module, format and measured_kl columns. DataLoss naming the file and
// line on a bad header, row, number (non-finite or negative beyond rounding) or a repeated
// (module, format); tiny negative KLs (rounding) read as 0.
Result<MeasuredCosts> ReadMeasuredCosts(const std::string& path);

// Spearman rank correlation (average ranks for ties); 0 if fewer than 2 points or no spread.
double Spearman(std::span<const double> a, std::span<const double> b);

}  // namespace pq::pipeline
