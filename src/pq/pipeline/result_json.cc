// The JSON the CLI prints with --json for the pipeline stages' results (kept together so the
// stages' files hold the work, not the presentation). nlohmann::json orders keys
// alphabetically, so the insertion order here does not show in the output.
#include <string>

#include "pq/pipeline/allocate.h"
#include "pq/pipeline/cost_check.h"
#include "pq/pipeline/export_calibrated.h"
#include "pq/pipeline/probe.h"
#include "pq/pipeline/quantize.h"

namespace pq::pipeline {
namespace {

nlohmann::json PointJson(const AllocateResult& r, const ParetoPoint& p) {
  nlohmann::json counts = nlohmann::json::object();
  for (size_t i = 0; i < r.formats.size(); ++i) counts[r.formats[i]] = p.count[i];
  return {{"target_bits", p.target_bits},
          {"achieved_bits", p.achieved_bits},
          {"unit_bytes", p.unit_bytes},
          {"total_bytes", p.total_bytes},
          {"predicted_dloss", p.predicted_dloss},
          {"optimal", p.optimal},
          {"units_per_format", counts}};
}

}  // namespace

nlohmann::json ProbeSummary::ToJson() const {
  return {{"probe", probe_json}, {"linears", linears},
          {"layers", layers},    {"resumed_layers", resumed_layers},
          {"tokens", tokens},    {"calibration_nll", calib_nll}};
}

nlohmann::json AllocateResult::ToJson() const {
  nlohmann::json j = {{"layer_config", layer_config},
                      {"pareto_csv", pareto_csv},
                      {"units", units},
                      {"linears", linears},
                      {"fixed_bytes", fixed_bytes},
                      {"min_bits", min_bits},
                      {"max_bits", max_bits},
                      {"chosen", PointJson(*this, chosen)},
                      {"pareto", nlohmann::json::array()}};
  for (const auto& p : pareto) j["pareto"].push_back(PointJson(*this, p));
  j["knee_bits"] = knee ? nlohmann::json(pareto[*knee].achieved_bits) : nullptr;
  return j;
}

nlohmann::json CostCheckResult::ToJson(const CostCheckOptions& o) const {
  nlohmann::json est = nlohmann::json::object();
  for (int e = 0; e < quant::kNumEstimators; ++e) {
    const auto i = static_cast<size_t>(e);
    est[std::string(quant::EstimatorName(static_cast<quant::CostEstimator>(e)))] = {
        {"spearman_dnll", spearman_dnll[i]},
        {"spearman_kl", spearman_kl[i]},
        {"spearman_kl_within_format", spearman_kl_within[i]},
        {"median_pred_over_kl", ratio_kl[i]},
        {"median_pred_over_dnll", ratio_dnll[i]}};
  }
  return {{"model", o.model},     {"base_nll", base_nll},   {"tokens", tokens},
          {"pairs", rows.size()}, {"per_unit", o.per_unit}, {"estimators", est}};
}

nlohmann::json CalibratedExportResult::ToJson(const CalibratedExportOptions& o) const {
  nlohmann::json j = summary.ToJson();
  j["passes"] = ExportPassesName(o.passes);
  j["error_ratio_vs_rtn_geomean"] = error_ratio_geomean;
  j["linears_calibrated"] = linears_calibrated;
  j["linears_rtn"] = linears_rtn;
  return j;
}

nlohmann::json QuantizeResult::ToJson(const QuantizeOptions& o) const {
  const ParetoPoint& c = allocation.chosen;
  nlohmann::json mix = nlohmann::json::object();
  for (size_t i = 0; i < allocation.formats.size(); ++i)
    if (c.params[i]) mix[allocation.formats[i]] = c.params[i];
  nlohmann::json j = {{"out", o.out},
                      {"work", o.probe.work},
                      {"bits_per_param", c.achieved_bits},
                      {"total_bytes", exported.total_bytes},
                      {"predicted_dloss", c.predicted_dloss},
                      {"passes", ExportPassesName(o.passes)},
                      {"error_ratio_vs_rtn_geomean", error_ratio_geomean},
                      {"params_per_format", mix}};
  if (eval_out) {
    j["eval"] = {{"base_nll", eval_base->mean_nll},
                 {"nll", eval_out->mean_nll},
                 {"kl", eval_out->mean_kl.value_or(0)},
                 {"tokens", eval_out->tokens}};
  }
  return j;
}

}  // namespace pq::pipeline
