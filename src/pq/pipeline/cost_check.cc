#include "pq/pipeline/cost_check.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>

#include "pq/core/log.h"
#include "pq/dist/comm.h"
#include "pq/engine/perturbed_eval.h"
#include "pq/formats/act_quant.h"
#include "pq/model/weights.h"
#include "pq/pipeline/probed_candidates.h"
#include "pq/pipeline/work_dir.h"

namespace pq::pipeline {
namespace {

std::vector<double> Ranks(std::span<const double> v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * static_cast<double>(i + j);
    i = j + 1;
  }
  return r;
}

double Median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One perturbation: a Linear, or every Linear of a decision unit, in one format.
struct Work {
  std::string name;  // the Linear's module, or the unit
  formats::FormatId format;
  std::vector<const ProbeLinear*> members;
};

// The (Linear or unit, format) perturbations of `probe`: body Linears (lm_head if asked; not
// the MTP head, which the body's NLL and KL do not see, nor the unprobed vision tower) in
// every requested format all members were probed in.
std::vector<Work> Perturbations(const ProbeFile& probe, const CostCheckOptions& o) {
  std::vector<Work> groups;
  std::map<std::string, size_t> index;
  for (const ProbeLinear& li : probe.linears) {
    if (li.is_mtp || li.is_visual || (li.is_lm_head && !o.include_lm_head)) continue;
    const std::string key = o.per_unit ? li.unit : li.module;
    if (!o.only.empty() && std::find(o.only.begin(), o.only.end(), key) == o.only.end()) continue;
    auto [it, added] = index.emplace(key, groups.size());
    if (added) groups.push_back({key, formats::FormatId::kBF16, {}});
    groups[it->second].members.push_back(&li);
  }
  std::vector<Work> work;
  for (const Work& g : groups)
    for (auto f : o.formats) {
      bool all = true;
      for (const ProbeLinear* m : g.members) all &= m->Find(formats::Spec(f).name) != nullptr;
      if (all) work.push_back({g.name, f, g.members});
    }
  return work;
}

void Summarize(CostCheckResult& r) {
  std::vector<double> dnll, kl;
  for (const auto& row : r.rows) {
    dnll.push_back(row.measured_dnll);
    kl.push_back(row.measured_kl);
  }
  for (int e = 0; e < quant::kNumEstimators; ++e) {
    std::vector<double> pred, ratio_kl, ratio_dnll;
    bool recorded = true;  // not recorded by the probe (probe --estimators): NaN statistics
    for (const auto& row : r.rows) {
      const double p = row.predicted[static_cast<size_t>(e)];
      recorded &= !std::isnan(p);
      pred.push_back(p);
      if (row.measured_kl > 0) ratio_kl.push_back(p / row.measured_kl);
      if (row.measured_dnll > 0) ratio_dnll.push_back(p / row.measured_dnll);
    }
    const auto i = static_cast<size_t>(e);
    if (!recorded) {
      for (auto* a :
           {&r.spearman_dnll, &r.spearman_kl, &r.ratio_kl, &r.ratio_dnll, &r.spearman_kl_within})
        (*a)[i] = std::nan("");
      continue;
    }
    r.spearman_dnll[i] = Spearman(pred, dnll);
    r.spearman_kl[i] = Spearman(pred, kl);
    r.ratio_kl[i] = Median(ratio_kl);
    r.ratio_dnll[i] = Median(ratio_dnll);
    std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> by_format;
    for (const auto& row : r.rows) {
      by_format[row.format].first.push_back(row.predicted[i]);
      by_format[row.format].second.push_back(row.measured_kl);
    }
    double weighted = 0;
    for (const auto& [f, pk] : by_format)
      weighted += Spearman(pk.first, pk.second) * static_cast<double>(pk.first.size());
    r.spearman_kl_within[i] = weighted / static_cast<double>(r.rows.size());
  }
}

}  // namespace

std::string CostCheckCsv(const CostCheckResult& r) {
  std::string s = "module,format,measured_dnll,measured_kl";
  for (int e = 0; e < quant::kNumEstimators; ++e)
    s += ",pred_" + std::string(quant::EstimatorName(static_cast<quant::CostEstimator>(e)));
  s += ",routing_changes\n";
  char buf[64];
  for (const auto& row : r.rows) {
    s += row.module + "," + row.format;
    for (double v : {row.measured_dnll, row.measured_kl}) {
      std::snprintf(buf, sizeof buf, ",%.9g", v);
      s += buf;
    }
    for (double v : row.predicted) {
      std::snprintf(buf, sizeof buf, ",%.9g", v);
      s += buf;
    }
    s += "," + (row.routing_changes ? std::to_string(*row.routing_changes) : std::string()) + "\n";
  }
  return s;
}

Result<MeasuredCosts> ReadMeasuredCosts(const std::string& path) {
  std::ifstream f(path);
  if (!f) return NotFound(path + ": cannot open (write it with check-costs --per-unit --csv)");
  std::string line;
  const std::string head = "module,format,measured_dnll,measured_kl";
  if (!std::getline(f, line) || line.rfind(head, 0) != 0)
    return DataLoss(path + ": line 1 is not check-costs' CSV header (" + head + ",...)");
  MeasuredCosts out;
  for (int n = 2; std::getline(f, line); ++n) {
    if (line.empty()) continue;
    const auto where = [&] { return path + ":" + std::to_string(n) + ": "; };
    std::vector<std::string> col;
    for (size_t a = 0, b; a <= line.size(); a = b + 1) {
      b = std::min(line.find(',', a), line.size());
      col.push_back(line.substr(a, b - a));
      if (col.size() == 4) break;
    }
    if (col.size() < 4 || col[0].empty() || col[1].empty())
      return DataLoss(where() + "expected module,format,measured_dnll,measured_kl,...");
    char* end = nullptr;
    const double kl = std::strtod(col[3].c_str(), &end);
    if (col[3].empty() || *end != '\0' || !std::isfinite(kl) || kl < -1e-9)
      return DataLoss(where() + "measured_kl \"" + col[3] + "\" is not a KL (finite, >= 0)");
    if (!out[col[0]].emplace(col[1], std::max(kl, 0.0)).second)
      return DataLoss(where() + col[0] + " in " + col[1] + " is measured twice");
  }
  if (out.empty()) return DataLoss(path + ": no rows");
  return out;
}

double Spearman(std::span<const double> a, std::span<const double> b) {
  if (a.size() != b.size() || a.size() < 2) return 0;
  const auto ra = Ranks(a), rb = Ranks(b);
  const double n = static_cast<double>(a.size()), mean = (n - 1) / 2;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) * (ra[i] - mean);
    sbb += (rb[i] - mean) * (rb[i] - mean);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0;
}

Result<CostCheckResult> CheckCosts(const CostCheckOptions& o) {
  ScopedExecContext exec_scope(o.exec);
  PQ_ASSIGN_OR_RETURN(const ProbeFile probe, ReadProbeFile(WorkDir(o.work)));
  PQ_ASSIGN_OR_RETURN(auto base, model::WeightSource::Open(o.model));
  if (probe.model.architecture != base->layout().arch->name ||
      probe.model.num_layers != base->layout().num_layers)
    return InvalidArgument(o.work + "/probe.json was not made from " + o.model);
  PQ_ASSIGN_OR_RETURN(auto docs, LoadEvalDocuments(o.model, o.text));
  const std::vector<Work> work = Perturbations(probe, o);
  if (work.empty())
    return InvalidArgument(o.only.empty() ? "no probed Linear can hold the requested formats"
                                          : "no probed Linear / unit of --only can hold the "
                                            "requested formats");
  PQ_ASSIGN_OR_RETURN(auto cands, ProbedCandidates::Open(*base, probe, o.work));
  // The source runs once; each perturbation from its own layer on (engine/perturbed_eval.h).
  PQ_ASSIGN_OR_RETURN(engine::EvalWindows ew, engine::MakeEvalWindows(*base, docs, o.eval));
  engine::PerturbedEvalOptions po;
  po.runner = o.eval.runner;
  po.runner.progress = false;
  PQ_ASSIGN_OR_RETURN(auto pe, engine::PerturbedEval::Create(*base, ew.windows, po));
  CostCheckResult r;
  r.tokens = pe->scored();
  r.base_nll = pe->base_nll_sum() / static_cast<double>(r.tokens);
  // Across MPI ranks each measures consecutive rows (one layer's Hessians stay cached);
  // rank 0 gathers them in row order: the same result as one process.
  const auto rows = static_cast<int64_t>(work.size()), ranks = int64_t{dist::Size()};
  const auto first_row = [&](int64_t rank) { return rows * rank / ranks; };
  const int64_t row0 = first_row(dist::Rank()), row1 = first_row(dist::Rank() + 1);
  std::vector<double> measured;  // dNLL, KL of each row measured here
  Progress progress(o.per_unit ? "cost check (units)" : "cost check",
                    static_cast<size_t>(row1 - row0));
  const int64_t head_layer = base->config().num_layers;
  for (int64_t i = 0; i < rows; ++i) {
    const Work& w = work[static_cast<size_t>(i)];
    std::map<std::string, ProbedCandidate> replaced;
    CostCheckRow row{w.name, std::string(formats::Spec(w.format).name), 0, 0, {}, {}};
    const bool mine = i >= row0 && i < row1;  // else another rank measures it
    const int64_t layer = w.members[0]->is_lm_head ? head_layer : w.members[0]->layer;
    for (const ProbeLinear* m : w.members) {
      if ((m->is_lm_head ? head_layer : m->layer) != layer)
        return Internal("unit " + w.name + " spans several layers");
      if (mine) {
        PQ_ASSIGN_OR_RETURN(ProbedCandidate c, cands->Make(*m, w.format));
        replaced.emplace(m->module, std::move(c));
      }
      const ProbeCandidate* pc = m->Find(row.format);
      for (size_t k = 0; k < pc->cost.size(); ++k) row.predicted[k] += pc->cost[k];
      if (pc->routing_changes) row.routing_changes = pc->routing_changes;
    }
    r.rows.push_back(row);
    if (!mine) continue;
    PQ_ASSIGN_OR_RETURN(engine::PerturbedSums e,
                        pe->Measure(layer, [&replaced](model::LinearWeights& l) {
                          auto it = replaced.find(l.module);
                          if (it != replaced.end()) it->second.ApplyTo(l);
                          return Status::Ok();
                        }));
    const auto t = static_cast<double>(r.tokens);
    measured.insert(measured.end(), {e.nll / t - r.base_nll, e.kl / t});
    progress.Advance();
  }
  progress.Finish();
  std::vector<double> all;
  PQ_RETURN_IF_ERROR(dist::Gather(std::span<const double>(measured), all, 0));
  if (dist::Rank() != 0) return r;  // its rows are rank 0's now
  for (size_t i = 0; i < r.rows.size(); ++i) {
    r.rows[i].measured_dnll = all[2 * i];
    r.rows[i].measured_kl = all[2 * i + 1];
  }
  Summarize(r);
  return r;
}

}  // namespace pq::pipeline
