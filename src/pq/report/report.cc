// The `report` command: loads a work dir (probe.json, layer_config.json, pareto.csv; typed by
// pipeline/work_dir.h) into ReportData and renders the page (header, legend, tables; the SVGs are
// in report_svg.cc).
#include "pq/report/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "pq/formats/format.h"
#include "pq/io/file_util.h"
#include "pq/pipeline/work_dir.h"
#include "pq/quant/cost.h"

namespace pq::report {
namespace {

namespace fs = std::filesystem;

constexpr size_t kTopLinears = 15;

// "model.layers.3.mlp.experts.17.gate_proj" -> "mlp.experts.*.gate_proj".
std::string KindOf(const std::string& module, int64_t layer) {
  std::string kind = module;
  if (layer >= 0) {
    const std::string key = "layers." + std::to_string(layer) + ".";
    const size_t p = module.find(key);
    if (p != std::string::npos && (p == 0 || module[p - 1] == '.'))
      kind = module.substr(p + key.size());
  }
  for (size_t e = kind.find("experts."); e != std::string::npos; e = kind.find("experts.", e + 1)) {
    if (e != 0 && kind[e - 1] != '.') continue;
    const size_t b = e + 8;
    size_t q = b;
    while (q < kind.size() && std::isdigit(static_cast<unsigned char>(kind[q]))) ++q;
    if (q > b && q < kind.size() && kind[q] == '.') kind = kind.substr(0, b) + "*" + kind.substr(q);
  }
  return kind;
}

std::string TargetText(const pipeline::AllocationTarget& t) {
  char buf[160];
  switch (t.kind) {
    case pipeline::AllocationTarget::Kind::kBits:
      std::snprintf(buf, sizeof buf, "%.4g bits/param", t.bits);
      break;
    case pipeline::AllocationTarget::Kind::kKnee:
      std::snprintf(buf, sizeof buf, "knee of the sweep (%.4g bits/param)", t.bits);
      break;
    case pipeline::AllocationTarget::Kind::kSize:
      std::snprintf(buf, sizeof buf, "checkpoint size %llu bytes (KV reserve %llu)",
                    static_cast<unsigned long long>(t.size_bytes),
                    static_cast<unsigned long long>(t.kv_reserve_bytes));
      break;
  }
  return buf;
}

void FillFromConfig(const pipeline::LayerConfig& c, ReportData* d) {
  d->estimator = c.cost;
  d->lm_head = c.lm_head;
  d->target = TargetText(c.target);
  d->achieved_bits = c.achieved.bits_per_param;
  d->predicted_dloss = c.achieved.predicted_dloss;
  d->total_bytes = c.achieved.total_bytes;
  d->unit_bytes = c.achieved.unit_bytes;
  d->optimal = c.achieved.optimal;
  d->knee_bits = c.knee_bits;
}

void FillFromProbe(const pipeline::ProbeFile& p, const std::map<std::string, std::string>& chosen,
                   quant::CostEstimator estimator, ReportData* d) {
  d->model_path = p.model.path;
  d->architecture = p.model.architecture;
  d->num_layers = p.model.num_layers;
  d->hidden = p.model.hidden;
  d->num_experts = p.model.num_experts;
  d->tied = p.model.tie_word_embeddings;
  d->samples = p.calibration.samples;
  d->seqlen = p.calibration.seqlen;
  d->tokens = p.calibration.tokens;
  d->nll = p.calibration.nll;
  d->probed_formats = p.formats;
  for (const pipeline::ProbeLinear& l : p.linears) {
    ReportLinear r;
    r.module = l.module;
    r.layer = l.layer;
    r.kind = KindOf(r.module, r.layer);
    r.rows = l.rows;
    r.cols = l.cols;
    r.fisher_trace = l.fisher_trace;
    const auto f = chosen.find(r.module);
    if (f != chosen.end()) r.format = f->second;
    for (const pipeline::ProbeCandidate& c : l.candidates)
      r.candidates.push_back({c.format, c.bytes, c.Cost(estimator)});
    d->linears.push_back(std::move(r));
  }
}

// NVFP4A16 when some Linear has it, else the format with the fewest bytes per parameter.
std::string ChooseReference(const ReportData& d) {
  std::map<std::string, std::pair<double, double>> bytes_params;
  for (const auto& l : d.linears)
    for (const auto& c : l.candidates) {
      bytes_params[c.format].first += static_cast<double>(c.bytes);
      bytes_params[c.format].second += static_cast<double>(l.rows * l.cols);
    }
  if (bytes_params.count("NVFP4A16")) return "NVFP4A16";
  std::string best;
  double best_bpp = 0;
  for (const std::string& f : d.probed_formats) {
    auto it = bytes_params.find(f);
    if (it == bytes_params.end() || it->second.second <= 0) continue;
    const double bpp = it->second.first / it->second.second;
    if (best.empty() || bpp < best_bpp) {
      best = f;
      best_bpp = bpp;
    }
  }
  return best;
}

// Rows (layers, then one per Linear outside them), columns (module kinds in probe order),
// and one cell per (row, column) holding all its Linears.
// Rows: the decoder layers in order; columns: the module kinds in probe order.
void GridAxes(ReportData* d, std::map<int64_t, size_t>* row_of_layer,
              std::map<std::string, size_t>* col_of) {
  std::set<int64_t> layers;
  for (const auto& l : d->linears)
    if (l.layer >= 0) layers.insert(l.layer);
  for (int64_t layer : layers) {
    (*row_of_layer)[layer] = d->row_labels.size();
    d->row_labels.push_back("layer " + std::to_string(layer));
  }
  for (const auto& l : d->linears)
    if (l.layer >= 0 && !col_of->count(l.kind)) {
      (*col_of)[l.kind] = d->columns.size();
      d->columns.push_back(l.kind);
    }
}

void BuildGrid(ReportData* d) {
  std::map<int64_t, size_t> row_of_layer;
  std::map<std::string, size_t> col_of;
  GridAxes(d, &row_of_layer, &col_of);
  std::map<std::pair<size_t, size_t>, size_t> cell_of;
  std::vector<bool> partial;
  for (const auto& l : d->linears) {
    size_t row = 0, col = 0;
    if (l.layer >= 0) {
      row = row_of_layer[l.layer];
      col = col_of[l.kind];
    } else {
      row = d->row_labels.size();
      d->row_labels.push_back(l.module);
    }
    auto [it, fresh] = cell_of.try_emplace({row, col}, d->cells.size());
    if (fresh) {
      ReportCell c;
      c.row = row;
      c.column = col;
      c.span = l.layer >= 0 ? 1 : static_cast<int64_t>(std::max<size_t>(d->columns.size(), 1));
      c.label = l.layer >= 0 ? d->row_labels[row] + " · " + l.kind : l.module;
      c.format = l.format;
      c.reference_cost = 0.0;
      d->cells.push_back(c);
      partial.push_back(false);
    }
    ReportCell& c = d->cells[it->second];
    if (c.format != l.format) c.format = "mixed";
    ++c.members;
    c.fisher_trace += l.fisher_trace;
    if (const ReportCandidate* k = l.Find(l.format)) c.chosen_cost += k->cost;
    if (const ReportCandidate* k = l.Find(d->reference_format))
      *c.reference_cost += k->cost;
    else
      partial[it->second] = true;
  }
  for (size_t i = 0; i < d->cells.size(); ++i)
    if (partial[i]) d->cells[i].reference_cost.reset();
}

// ---- HTML ----

constexpr const char* kCss = R"css(
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328;
 background:#fff;margin:0}
main{max-width:1200px;margin:0 auto;padding:18px 16px 40px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:26px 0 6px;border-bottom:1px solid #d0d7de;padding-bottom:3px}
p.note{margin:2px 0 8px;color:#57606a;font-size:13px}
.kv{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:8px;margin-top:10px}
.kv div{background:#f6f8fa;border:1px solid #d8dee4;border-radius:6px;padding:6px 10px;min-width:0}
.kv b{display:block;font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:#57606a}
.kv span{overflow-wrap:anywhere}
svg{display:block;width:100%;height:auto;font-family:inherit}
svg .plot{fill:#fbfbfc;stroke:none}
svg .grid{stroke:#e3e6ea;stroke-width:1}
svg .axis{stroke:#444;stroke-width:1.2}
svg .tick{font-size:12px;fill:#444}
svg .axis-title{font-size:13px;fill:#222}
svg .curve{fill:none;stroke:#4e79a7;stroke-width:2}
svg .pt{fill:#4e79a7;stroke:#fff;stroke-width:1.5}
svg .pt.approx{fill:#fff;stroke:#4e79a7}
svg .knee{fill:#f28e2b;stroke:#7a3e00;stroke-width:1.5}
svg .chosen{fill:none;stroke:#c0152f;stroke-width:3}
svg .knee-label{font-size:13px;fill:#8a4500;font-weight:600}
svg .chosen-label{font-size:13px;fill:#c0152f;font-weight:600}
svg .knee-label,svg .chosen-label{paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}
svg .col-prefix{font-size:10px;fill:#6e7781}
svg .col-label{font-size:11px;fill:#333}
svg .row-label{font-size:11px;fill:#333}
svg .row-bg{fill:#f3f4f6}
svg .cell,svg .heat{stroke:#fff;stroke-width:1}
svg .cell-text{font-size:10px;pointer-events:none}
svg .bar{fill:#b33a3a}
ul.legend{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:6px 16px}
ul.legend li{display:flex;align-items:center;gap:6px;font-size:13px}
ul.legend li.unused{opacity:.45}
.chip{display:inline-block;width:14px;height:14px;border-radius:3px;border:1px solid rgba(0,0,0,.2)}
.stack{display:flex;height:14px;border-radius:4px;overflow:hidden;margin:4px 0 10px;
 border:1px solid #d0d7de}
.stack span{display:block;height:100%}
table{border-collapse:collapse;width:100%;font-size:12px;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e4e7eb;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f6f8fa;font-weight:600}
td.mod{text-align:left;white-space:normal;overflow-wrap:anywhere;font-family:ui-monospace,
 "DejaVu Sans Mono",monospace;font-size:11.5px}
th.mod{text-align:left}
td.sel{font-weight:700;box-shadow:inset 0 0 0 2px #c0152f}
td.na{color:#aaa}
footer{margin-top:28px;color:#6e7781;font-size:12px}
)css";

std::string Num(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string Bytes(uint64_t b) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  return std::to_string(b) + " bytes (" + Num(u ? "%.2f" : "%.0f", v) + " " + kUnits[u] + ")";
}

std::string Kv(const std::string& key, const std::string& value_html) {
  return "<div><b>" + HtmlEscape(key) + "</b><span>" + value_html + "</span></div>\n";
}

std::string HeaderHtml(const ReportData& d) {
  std::string model = HtmlEscape(d.architecture) + ", " + std::to_string(d.num_layers) +
                      " layers, hidden " + std::to_string(d.hidden);
  if (d.num_experts > 0) model += ", " + std::to_string(d.num_experts) + " experts";
  if (d.tied) model += ", tied embeddings";
  std::string s = "<header><h1>PrismaQuant report</h1><p class=\"note\">" +
                  HtmlEscape(d.model_path) + "</p>\n<div class=\"kv\">\n";
  s += Kv("model", model);
  s += Kv("calibration", std::to_string(d.samples) + " samples × " + std::to_string(d.seqlen) +
                             " tokens; " + std::to_string(d.tokens) + " scored");
  s += Kv("calibration NLL",
          Num("%.4f", d.nll) + " nats/token (ppl " + Num("%.3f", std::exp(d.nll)) + ")");
  s += Kv("estimator", HtmlEscape(d.estimator) + " · lm_head " + HtmlEscape(d.lm_head));
  s += Kv("target", HtmlEscape(d.target));
  s += Kv("achieved", Num("%.4f", d.achieved_bits) + " bits/param" +
                          (d.optimal ? "" : " (not proven optimal)"));
  s += Kv("total bytes", Bytes(d.total_bytes));
  s += Kv("predicted Δloss",
          HtmlEscape(ShortNumber(d.predicted_dloss)) + " nats/token" +
              (d.knee_bits ? " · knee " + Num("%.3f", *d.knee_bits) + " bits" : ""));
  return s + "</div></header>\n";
}

// Legend of the format map: every format of the table, with its share of the Linears.
std::string LegendHtml(const ReportData& d) {
  std::map<std::string, std::pair<int64_t, double>> use;  // Linears, params
  double total = 0;
  for (const auto& l : d.linears) {
    const std::string f = l.format.empty() ? "unallocated" : l.format;
    use[f].first += 1;
    use[f].second += static_cast<double>(l.rows * l.cols);
    total += static_cast<double>(l.rows * l.cols);
  }
  std::vector<std::string> names;
  for (const auto& spec : formats::AllFormats()) names.emplace_back(spec.name);
  for (const auto& [f, u] : use)
    if (std::find(names.begin(), names.end(), f) == names.end()) names.push_back(f);
  std::string items, stack;
  for (const std::string& f : names) {
    const auto it = use.find(f);
    const int64_t n = it == use.end() ? 0 : it->second.first;
    const double share = it == use.end() || total <= 0 ? 0 : 100 * it->second.second / total;
    items += "<li class=\"legend" + std::string(n ? "" : " unused") +
             "\"><span class=\"chip\" style=\"background:" + FormatColor(f) + "\"></span>" +
             HtmlEscape(f) + " <small>" + std::to_string(n) + " Linears · " + Num("%.1f", share) +
             "% params</small></li>\n";
    if (n)
      stack += "<span style=\"width:" + Num("%.3f", share) + "%;background:" + FormatColor(f) +
               "\" title=\"" + HtmlEscape(f) + ": " + Num("%.1f", share) +
               "% of Linear parameters\"></span>";
  }
  return "<ul class=\"legend\">\n" + items + "</ul>\n<div class=\"stack\">" + stack + "</div>\n";
}

// The most sensitive Linears: largest cost in the reference format, then by Fisher trace.
std::vector<const ReportLinear*> TopLinears(const ReportData& d) {
  std::vector<const ReportLinear*> v;
  for (const auto& l : d.linears) v.push_back(&l);
  auto key = [&](const ReportLinear* l) {
    const ReportCandidate* c = l->Find(d.reference_format);
    return std::make_pair(c ? 1 : 0, c ? c->cost : l->fisher_trace);
  };
  std::stable_sort(v.begin(), v.end(), [&](auto* a, auto* b) { return key(a) > key(b); });
  if (v.size() > kTopLinears) v.resize(kTopLinears);
  return v;
}

std::string TopTableHtml(const ReportData& d) {
  std::string s =
      "<table class=\"top\">\n<thead><tr><th>#</th><th class=\"mod\">Linear</th>"
      "<th>shape</th><th>chosen</th><th>fisher_trace</th>";
  for (const auto& f : d.probed_formats)
    s += "<th>" + HtmlEscape(f) + (f == d.reference_format ? " (ref)" : "") + "</th>";
  s += "</tr></thead>\n<tbody>\n";
  int rank = 0;
  for (const ReportLinear* l : TopLinears(d)) {
    s += "<tr><td>" + std::to_string(++rank) + "</td><td class=\"mod\">" + HtmlEscape(l->module) +
         "</td><td>" + std::to_string(l->rows) + "×" + std::to_string(l->cols) +
         "</td><td><span class=\"chip\" style=\"background:" + FormatColor(l->format) +
         "\"></span> " + HtmlEscape(l->format) + "</td><td>" +
         HtmlEscape(ShortNumber(l->fisher_trace)) + "</td>";
    for (const auto& f : d.probed_formats) {
      const ReportCandidate* c = l->Find(f);
      if (!c)
        s += "<td class=\"na\">—</td>";
      else
        s += std::string("<td") + (f == l->format ? " class=\"sel\"" : "") + ">" +
             HtmlEscape(ShortNumber(c->cost)) + "</td>";
    }
    s += "</tr>\n";
  }
  return s + "</tbody></table>\n";
}

}  // namespace

const ReportCandidate* ReportLinear::Find(std::string_view name) const {
  for (const auto& c : candidates)
    if (c.format == name) return &c;
  return nullptr;
}

Result<ReportData> LoadReportData(const std::string& work) {
  const pipeline::WorkDir w(work);
  PQ_ASSIGN_OR_RETURN(const pipeline::ProbeFile probe, pipeline::ReadProbeFile(w));
  PQ_ASSIGN_OR_RETURN(const pipeline::LayerConfig config, pipeline::ReadLayerConfig(w));
  PQ_ASSIGN_OR_RETURN(const pipeline::ParetoTable pareto, pipeline::ReadParetoTable(w));
  if (config.probe_inputs != probe.inputs)
    return InvalidArgument(w.layer_config_json() + " was made from another probe than " +
                           w.probe_json() + ": run `prismaquant allocate --work " + work +
                           " --target-bits B` first");
  const auto& est = probe.estimators;
  const auto estimator = quant::ParseCostEstimator(config.cost);
  if (std::find(est.begin(), est.end(), config.cost) == est.end() || !estimator.ok())
    return DataLoss(w.layer_config_json() + " uses estimator \"" + config.cost + "\", which " +
                    w.probe_json() + " does not have (re-run allocate)");
  ReportData d;
  for (const pipeline::ParetoPoint& p : pareto.points)
    d.pareto.push_back(
        {p.target_bits, p.achieved_bits, p.total_bytes, p.predicted_dloss, p.optimal});
  FillFromConfig(config, &d);
  FillFromProbe(probe, config.formats, *estimator, &d);
  d.reference_format = ChooseReference(d);
  BuildGrid(&d);
  return d;
}

std::string RenderReportHtml(const ReportData& d) {
  std::string s =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>"
      "PrismaQuant report · " +
      HtmlEscape(d.model_path) + "</title>\n<style>" + kCss + "</style>\n</head>\n<body>\n<main>\n";
  s += HeaderHtml(d);
  s += "<section id=\"pareto\"><h2>Pareto curve</h2><p class=\"note\">Predicted loss increase "
       "against size for each swept target (" +
       std::to_string(d.pareto.size()) +
       " points; hollow = not proven optimal). Hover a point for its numbers.</p>\n" +
       ParetoSvg(d) + "</section>\n";
  s += "<section id=\"formats\"><h2>Format per layer and module</h2><p class=\"note\">Rows are "
       "decoder layers, columns module kinds; the experts of a layer share one format and one "
       "cell. Hover a cell for its predicted Δloss.</p>\n" +
       LegendHtml(d) + FormatMapSvg(d) + "</section>\n";
  s += "<section id=\"sensitivity\"><h2>Sensitivity</h2><p class=\"note\">Predicted Δloss "
       "(nats/token, estimator <b>" +
       HtmlEscape(d.estimator) +
       "</b>) if each Linear were stored "
       "in the reference format <b>" +
       HtmlEscape(d.reference_format) +
       "</b>; experts of a layer summed; right: total per row.</p>\n" + SensitivitySvg(d);
  s += "<h2>The " + std::to_string(std::min(kTopLinears, d.linears.size())) +
       " most sensitive Linears</h2><p class=\"note\">Ranked by predicted Δloss in " +
       HtmlEscape(d.reference_format) +
       "; cost per probed format in nats/token, the chosen one "
       "framed.</p>\n" +
       TopTableHtml(d) + "</section>\n";
  s += "<footer>prismaquant report · " + std::to_string(d.linears.size()) + " Linears · " +
       std::to_string(d.cells.size()) + " map cells</footer>\n</main>\n</body>\n</html>\n";
  return s;
}

Result<ReportSummary> WriteReport(const ReportOptions& o) {
  const std::string out = o.output.empty() ? o.work + "/report.html" : o.output;
  PQ_ASSIGN_OR_RETURN(ReportData d, LoadReportData(o.work));
  if (fs::exists(out) && !o.overwrite)
    return InvalidArgument(out + " exists (give --overwrite to replace it)");
  const fs::path parent = fs::absolute(fs::path(out)).parent_path();
  if (!fs::is_directory(parent))
    return NotFound("output directory " + parent.string() + " does not exist");
  const std::string html = RenderReportHtml(d);
  PQ_RETURN_IF_ERROR(io::WriteFileAtomic(out, html));
  ReportSummary r;
  r.path = out;
  r.bytes = html.size();
  r.linears = static_cast<int64_t>(d.linears.size());
  r.rows = static_cast<int64_t>(d.row_labels.size());
  r.columns = static_cast<int64_t>(d.columns.size());
  r.cells = static_cast<int64_t>(d.cells.size());
  r.reference_format = d.reference_format;
  r.estimator = d.estimator;
  return r;
}

nlohmann::json ReportSummary::ToJson() const {
  return {{"report", path},         {"bytes", bytes},
          {"linears", linears},     {"rows", rows},
          {"columns", columns},     {"cells", cells},
          {"estimator", estimator}, {"reference_format", reference_format}};
}

}  // namespace pq::report
