// The `report` command: one static HTML page (inline CSS and SVG, no script, no network) that
// shows what probe and allocate decided, read from a work dir without the model:
//   header       model, calibration, target and what was achieved, the cost estimator
//   Pareto       W/pareto.csv: predicted Δloss against bits/param (log y when the range
//                spans more than two decades), the knee and the chosen point marked
//   format map   rows = decoder layers (+ one row per Linear outside the layers, e.g.
//                lm_head), columns = module kinds ("self_attn.q_proj", ...); the experts of a
//                layer collapse into one column per projection ("mlp.experts.*.gate_proj"),
//                since they share one format. Cells coloured by the chosen format.
//   sensitivity  the same grid coloured by the predicted Δloss of a reference 4-bit format
//                (NVFP4A16 when probed, else the cheapest probed format) under the allocation's
//                estimator, experts summed, per-row totals; and the 15 most sensitive Linears
//                with their Fisher trace and cost in every probed format.
// Every SVG has a viewBox and width="100%", so the page fits a 1280-px window; cell counts
// grow with layers × module kinds, never with experts.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/status.h"

namespace pq::report {

struct ReportOptions {
  std::string work;
  std::string output;      // empty: WORK/report.html
  bool overwrite = false;  // replace an existing output
};

struct ReportSummary {
  std::string path;  // the HTML written
  uint64_t bytes = 0;
  int64_t linears = 0, rows = 0, columns = 0, cells = 0;
  std::string reference_format;  // of the sensitivity chart
  std::string estimator;

  // {report, bytes, linears, rows, columns, cells, estimator, reference_format}
  nlohmann::json ToJson() const;
};

// Reads W/probe.json, W/layer_config.json and W/pareto.csv and writes the page atomically.
// NotFound names a missing file and the command that makes it; DataLoss a damaged one.
Result<ReportSummary> WriteReport(const ReportOptions& o);

// ---- The data the page is drawn from (report.cc) and its SVG pieces (report_svg.cc). ----

struct ReportCandidate {
  std::string format;
  uint64_t bytes = 0;
  double cost = 0;  // predicted Δloss (nats/token) under the report's estimator
};

struct ReportLinear {
  std::string module;
  int64_t layer = -1;  // -1: outside the decoder layers (lm_head)
  std::string kind;    // map column (layer >= 0) or row label (layer < 0)
  std::string format;  // chosen; "" if layer_config.json has none
  int64_t rows = 0, cols = 0;
  double fisher_trace = 0;
  std::vector<ReportCandidate> candidates;
  const ReportCandidate* Find(std::string_view name) const;
};

struct ReportParetoPoint {
  double target_bits = 0, achieved_bits = 0;
  uint64_t total_bytes = 0;
  double predicted_dloss = 0;
  bool optimal = true;
};

// One map cell: the Linears of one (row, column); experts of a layer share a cell.
struct ReportCell {
  size_t row = 0, column = 0;
  int64_t span = 1;        // columns covered (rows outside the layers span all)
  std::string label;       // "layer 3 · self_attn.q_proj" / "lm_head"
  std::string format;      // chosen; "mixed" if the members disagree, "" if unallocated
  double chosen_cost = 0;  // Σ members' cost in their chosen format
  std::optional<double> reference_cost;  // Σ members' cost in the reference format
  double fisher_trace = 0;               // Σ members
  int64_t members = 0;
};

struct ReportData {
  // probe.json
  std::string model_path, architecture;
  int64_t num_layers = 0, hidden = 0, num_experts = 0;
  bool tied = false;
  int64_t samples = 0, seqlen = 0, tokens = 0;
  double nll = 0;
  std::vector<std::string> probed_formats;
  std::vector<ReportLinear> linears;
  // layer_config.json
  std::string estimator, lm_head, target;  // target: human-readable
  double achieved_bits = 0, predicted_dloss = 0;
  uint64_t total_bytes = 0, unit_bytes = 0;
  bool optimal = true;
  std::optional<double> knee_bits;
  // pareto.csv
  std::vector<ReportParetoPoint> pareto;
  // derived
  std::string reference_format;
  std::vector<std::string> row_labels, columns;
  std::vector<ReportCell> cells;
};

// Loads and cross-checks the three files of a work dir.
Result<ReportData> LoadReportData(const std::string& work);
// The whole page.
std::string RenderReportHtml(const ReportData& d);

// Pieces (report_svg.cc).
std::string HtmlEscape(std::string_view s);
std::string ShortNumber(double v);                 // "0.0739", "1.23e-05"
std::string FormatColor(std::string_view format);  // "#rrggbb", fixed per format id
std::string ParetoSvg(const ReportData& d);
std::string FormatMapSvg(const ReportData& d);
std::string SensitivitySvg(const ReportData& d);

}  // namespace pq::report
