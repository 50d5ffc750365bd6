// The --json output of the stages' results (result_json.cc) on hand-made results: keys,
// values, the knee as a number or null, the inputs echoed from the options.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "pq/pipeline/allocate.h"
#include "pq/pipeline/cost_check.h"
#include "pq/pipeline/export_calibrated.h"
#include "pq/pipeline/probe.h"
#include "pq/pipeline/quantize.h"

namespace pq::pipeline {
namespace {

ParetoPoint Point(double bits, int64_t a, int64_t b) {
  ParetoPoint p;
  p.target_bits = bits;
  p.achieved_bits = bits - 0.25;
  p.unit_bytes = 100;
  p.total_bytes = 1000;
  p.predicted_dloss = 0.5;
  p.optimal = true;
  p.count = {a, b};
  p.params = {a * 10, b * 10};
  return p;
}

TEST(ResultJson, Probe) {
  ProbeSummary s;
  s.probe_json = "w/probe.json";
  s.linears = 35;
  s.layers = 5;
  s.resumed_layers = 2;
  s.tokens = 4096;
  s.calib_nll = 1.5;
  EXPECT_EQ(s.ToJson().dump(),
            R"({"calibration_nll":1.5,"layers":5,"linears":35,"probe":"w/probe.json",)"
            R"("resumed_layers":2,"tokens":4096})");
}

TEST(ResultJson, AllocateKneeAndCounts) {
  AllocateResult r;
  r.formats = {"MXFP8", "NVFP4"};
  r.pareto = {Point(4, 0, 3), Point(8, 3, 0)};
  r.chosen = Point(5, 1, 2);
  r.units = 3;
  r.linears = 7;
  r.fixed_bytes = 64;
  r.min_bits = 4.5;
  r.max_bits = 8.25;
  r.layer_config = "w/layer_config.json";
  r.pareto_csv = "w/pareto.csv";
  nlohmann::json j = r.ToJson();
  EXPECT_TRUE(j["knee_bits"].is_null());
  EXPECT_EQ(j["pareto"].size(), 2u);
  EXPECT_EQ(j["chosen"].dump(),
            R"({"achieved_bits":4.75,"optimal":true,"predicted_dloss":0.5,"target_bits":5.0,)"
            R"("total_bytes":1000,"unit_bytes":100,"units_per_format":{"MXFP8":1,"NVFP4":2}})");
  EXPECT_EQ(j["units"], 3);
  EXPECT_EQ(j["linears"], 7);
  EXPECT_EQ(j["fixed_bytes"], 64);
  EXPECT_EQ(j["layer_config"], "w/layer_config.json");
  r.knee = 1;
  EXPECT_EQ(r.ToJson()["knee_bits"], 7.75);
}

TEST(ResultJson, CostCheckEchoesTheModel) {
  CostCheckResult r;
  r.base_nll = 2;
  r.tokens = 10;
  r.rows.resize(4);
  r.spearman_kl[0] = 0.5;
  CostCheckOptions o;
  o.model = "m";
  const nlohmann::json j = r.ToJson(o);
  EXPECT_EQ(j["model"], "m");
  EXPECT_EQ(j["pairs"], 4);
  EXPECT_EQ(j["estimators"].size(), static_cast<size_t>(quant::kNumEstimators));
  const std::string first(quant::EstimatorName(static_cast<quant::CostEstimator>(0)));
  EXPECT_EQ(j["estimators"][first]["spearman_kl"], 0.5);
  EXPECT_EQ(j["estimators"][first].size(), 5u);
}

TEST(ResultJson, QuantizeAndCalibratedExportEchoTheirInputs) {
  QuantizeResult r;
  r.allocation.formats = {"MXFP8", "NVFP4"};
  r.allocation.chosen = Point(5, 0, 2);
  r.exported.total_bytes = 1234;
  r.error_ratio_geomean = 0.75;
  QuantizeOptions o;
  o.out = "out";
  o.probe.work = "out.work";
  o.passes = ExportPasses::kGptq;
  nlohmann::json j = r.ToJson(o);
  EXPECT_EQ(j.dump(), R"({"bits_per_param":4.75,"error_ratio_vs_rtn_geomean":0.75,"out":"out",)"
                      R"("params_per_format":{"NVFP4":20},"passes":"gptq","predicted_dloss":0.5,)"
                      R"("total_bytes":1234,"work":"out.work"})");
  r.eval_base = engine::EvalResult{};
  r.eval_base->mean_nll = 2;
  r.eval_out = engine::EvalResult{};
  r.eval_out->mean_nll = 2.5;
  r.eval_out->tokens = 9;
  EXPECT_EQ(r.ToJson(o)["eval"].dump(), R"({"base_nll":2.0,"kl":0.0,"nll":2.5,"tokens":9})");

  CalibratedExportResult c;
  c.linears_calibrated = 6;
  c.linears_rtn = 1;
  CalibratedExportOptions co;
  co.passes = ExportPasses::kSearchGptq;
  const nlohmann::json cj = c.ToJson(co);
  EXPECT_EQ(cj["passes"], "search+gptq");
  EXPECT_EQ(cj["linears_calibrated"], 6);
  EXPECT_EQ(cj["linears_rtn"], 1);
  EXPECT_EQ(cj["error_ratio_vs_rtn_geomean"], 1.0);
  EXPECT_TRUE(cj.contains("total_bytes"));  // the export summary's own keys
}

}  // namespace
}  // namespace pq::pipeline
