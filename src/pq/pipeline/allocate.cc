#include "pq/pipeline/allocate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>

#include "pq/alloc/knapsack.h"
#include "pq/alloc/knee.h"
#include "pq/pipeline/cost_check.h"

namespace pq::pipeline {
namespace {

struct UnitInfo {
  std::string name;
  std::vector<const ProbeLinear*> members;
};

// The probe's Linears by role: decision units in probe order, lm_head (fixed format) and the
// vision Linears (fixed format, not probed).
struct ProbeRoles {
  std::vector<UnitInfo> units;
  const ProbeLinear* head = nullptr;
  std::vector<const ProbeLinear*> visual;
};

ProbeRoles SplitRoles(const ProbeFile& probe) {
  ProbeRoles roles;
  std::map<std::string, size_t> unit_index;
  for (const ProbeLinear& li : probe.linears) {
    if (li.is_lm_head) {
      roles.head = &li;
    } else if (li.is_visual) {
      roles.visual.push_back(&li);
    } else {
      auto [it, added] = unit_index.emplace(li.unit, roles.units.size());
      if (added) roles.units.push_back({li.unit, {}});
      roles.units[it->second].members.push_back(&li);
    }
  }
  return roles;
}

// The probed formats the options allow, in probe order.
Result<std::vector<std::string>> AllowedFormats(const ProbeFile& probe, const AllocateOptions& o) {
  std::vector<std::string> out;
  for (const std::string& f : probe.formats) {
    const auto id = formats::ParseFormat(f);
    if (!id) return DataLoss(o.work + "/probe.json: unknown format \"" + f + "\"");
    bool allowed = o.formats.empty();
    for (auto a : o.formats) allowed |= a == *id;
    if (allowed) out.push_back(f);
  }
  for (auto a : o.formats) {
    bool probed = false;
    for (const auto& f : out) probed |= f == formats::Spec(a).name;
    if (!probed)
      return InvalidArgument("format " + std::string(formats::Spec(a).name) +
                             " was not probed (probe with --formats including it)");
  }
  return out;
}

// A probe run without per-token errors (probe --estimators) has no output / token prices.
Status NotRecorded(quant::CostEstimator e) {
  const std::string name(quant::EstimatorName(e));
  return InvalidArgument("the probe did not record the " + name +
                         " estimator (probed with --estimators leaving out output and token): "
                         "allocate with --cost hessian or block, or probe again with --estimators "
                         "including " +
                         name);
}

// The knapsack instance: one unit per decision unit of the probe, candidates = the allowed
// formats every member can hold, bytes and costs summed over the members.
// With `measured` (allocate --measured-costs) a unit's price is its measured KL wherever the
// estimator cannot stand in exactly (see AllocateOptions::measured_costs).
Result<alloc::Problem> BuildProblem(const std::vector<UnitInfo>& units,
                                    const std::vector<std::string>& allowed,
                                    const AllocateOptions& o, const MeasuredCosts* measured) {
  alloc::Problem p;
  for (const UnitInfo& u : units) {
    const bool mtp = std::all_of(u.members.begin(), u.members.end(),
                                 [](const ProbeLinear* m) { return m->is_mtp; });
    alloc::Unit unit{u.name, 0, {}};
    for (const ProbeLinear* m : u.members) unit.params += m->rows * m->cols;
    for (const std::string& f : allowed) {
      alloc::Candidate c{f, 0, 0.0};
      bool all = true;
      for (const ProbeLinear* m : u.members) {
        const ProbeCandidate* cand = m->Find(f);
        if (!cand) {
          all = false;
          break;
        }
        c.bytes += cand->bytes;
        if (std::isnan(cand->Cost(o.cost))) return NotRecorded(o.cost);
        c.cost += cand->Cost(o.cost) * (m->is_mtp ? o.mtp_weight : 1.0);
      }
      if (all && measured && !mtp && !(f == "BF16" && c.cost == 0)) {
        const auto it = measured->find(u.name);
        if (it == measured->end() || !it->second.count(f))
          return InvalidArgument(o.measured_costs + " has no measured KL of unit " + u.name +
                                 " in " + f +
                                 " (measure it with check-costs --per-unit, or "
                                 "leave " +
                                 f + " out with --formats)");
        c.cost = it->second.at(f);
      }
      if (all) unit.candidates.push_back(c);
    }
    if (unit.candidates.empty())
      return InvalidArgument("unit " + u.name +
                             " cannot be stored in any allowed format (add BF16 to --formats)");
    p.units.push_back(std::move(unit));
  }
  return p;
}

// What lies outside the units: every other tensor, lm_head in its format (nothing extra when
// it stays BF16 and is tied to the embedding) and the vision Linears in theirs.
struct FixedPart {
  uint64_t bytes = 0;
  double head_cost = 0;
  std::map<std::string, std::string> module_formats;
};

Result<FixedPart> PriceFixed(const ProbeFile& probe, const ProbeRoles& roles,
                             const AllocateOptions& o) {
  FixedPart f;
  f.bytes = probe.model.other_tensor_bytes;
  if (const ProbeLinear* head = roles.head) {
    PQ_RETURN_IF_ERROR(
        formats::CheckShape(o.lm_head, head->rows, head->cols).WithContext("--lm-head"));
    if (!(probe.model.tie_word_embeddings && o.lm_head == formats::FormatId::kBF16))
      f.bytes += formats::BytesOnDisk(o.lm_head, head->rows, head->cols);
    if (const ProbeCandidate* c = head->Find(formats::Spec(o.lm_head).name)) {
      if (std::isnan(c->Cost(o.cost))) return NotRecorded(o.cost);
      f.head_cost = c->Cost(o.cost);
    }
    f.module_formats["lm_head"] = formats::Spec(o.lm_head).name;
  }
  for (const ProbeLinear* v : roles.visual) {
    PQ_RETURN_IF_ERROR(formats::CheckShape(o.visual, v->rows, v->cols)
                           .WithContext("--visual-format " + v->module));
    f.bytes += formats::BytesOnDisk(o.visual, v->rows, v->cols);
    f.module_formats[v->module] = formats::Spec(o.visual).name;
  }
  return f;
}

ParetoPoint Point(const alloc::Problem& p, const alloc::Solution& s, double target_bits,
                  const FixedPart& fixed, const std::vector<std::string>& fmts) {
  ParetoPoint pt;
  pt.target_bits = target_bits;
  pt.achieved_bits = s.bits_per_param;
  pt.unit_bytes = s.bytes;
  pt.total_bytes = s.bytes + fixed.bytes;
  pt.predicted_dloss = s.cost + fixed.head_cost;
  pt.optimal = s.optimal;
  pt.count.assign(fmts.size(), 0);
  pt.params.assign(fmts.size(), 0);
  for (size_t u = 0; u < p.units.size(); ++u) {
    const std::string& f = p.units[u].candidates[static_cast<size_t>(s.choice[u])].format;
    for (size_t i = 0; i < fmts.size(); ++i)
      if (fmts[i] == f) {
        ++pt.count[i];
        pt.params[i] += p.units[u].params;
      }
  }
  return pt;
}

// The budgets of the Pareto sweep and their bits/param: 11 points from the minimum to the
// maximum, or the requested ones.
struct Sweep {
  std::vector<uint64_t> budgets;
  std::vector<double> bits;
};

Result<Sweep> SweepBudgets(const alloc::Problem& problem, const AllocateOptions& o,
                           uint64_t min_bytes, uint64_t max_bytes) {
  const int64_t params = alloc::TotalParams(problem);
  Sweep s;
  if (o.pareto_bits.empty()) {
    for (int i = 0; i <= 10; ++i) {
      s.budgets.push_back(min_bytes + (max_bytes - min_bytes) * static_cast<uint64_t>(i) / 10);
      s.bits.push_back(alloc::BitsPerParam(s.budgets.back(), params));
    }
    return s;
  }
  for (double b : o.pareto_bits) {
    PQ_ASSIGN_OR_RETURN(uint64_t budget, alloc::BudgetForBits(problem, b));
    s.budgets.push_back(budget);
    s.bits.push_back(b);
  }
  return s;
}

// The chosen target as a byte budget for the units, its bits/param and its record.
struct Chosen {
  uint64_t budget = 0;
  double bits = 0;
  AllocationTarget target;
};

Result<Chosen> ChooseBudget(const alloc::Problem& problem, const AllocateOptions& o,
                            const AllocateResult& r, const Sweep& sweep) {
  Chosen c;
  if (o.target_bits) {
    PQ_ASSIGN_OR_RETURN(c.budget, alloc::BudgetForBits(problem, *o.target_bits));
    c.bits = *o.target_bits;
    c.target = {AllocationTarget::Kind::kBits, c.bits, 0, 0};
  } else if (o.target_knee) {
    if (!r.knee)
      return InvalidArgument(
          "the Pareto sweep has no knee (too few points or a straight curve); "
          "give --target-bits B");
    c.budget = sweep.budgets[*r.knee];
    c.bits = sweep.bits[*r.knee];
    c.target = {AllocationTarget::Kind::kKnee, c.bits, 0, 0};
  } else {
    auto b = alloc::BudgetForTotalBytes(*o.target_size - o.kv_reserve, r.fixed_bytes);
    if (!b.ok())
      return InvalidArgument("--target-size " + std::to_string(*o.target_size) +
                             " bytes is below the " + std::to_string(r.fixed_bytes) +
                             " bytes of tensors outside the Linears (embeddings, norms, lm_head)");
    c.budget = *b;
    c.bits = alloc::BitsPerParam(c.budget, alloc::TotalParams(problem));
    c.target = {AllocationTarget::Kind::kSize, 0, *o.target_size, o.kv_reserve};
  }
  return c;
}

Status CheckFeasible(const AllocateResult& r, uint64_t budget, uint64_t min_bytes) {
  if (budget >= min_bytes) return Status::Ok();
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "target is infeasible: the smallest allocation over the allowed formats needs "
                "%.4f bits/param (%llu bytes of Linears)",
                r.min_bits, static_cast<unsigned long long>(min_bytes));
  return InvalidArgument(buf);
}

LayerConfig MakeLayerConfig(const ProbeFile& probe, const AllocateOptions& o,
                            const AllocateResult& r, const ProbeRoles& roles, const Chosen& chosen,
                            std::map<std::string, std::string> formats) {
  LayerConfig c;
  c.probe_inputs = probe.inputs;
  c.cost = quant::EstimatorName(o.cost);
  c.lm_head = formats::Spec(o.lm_head).name;
  if (!roles.visual.empty()) c.visual = formats::Spec(o.visual).name;
  c.target = chosen.target;
  c.achieved = {r.chosen.achieved_bits, r.chosen.unit_bytes, r.chosen.total_bytes,
                r.chosen.predicted_dloss, r.chosen.optimal};
  if (r.knee) c.knee_bits = r.pareto[*r.knee].achieved_bits;
  if (std::any_of(probe.linears.begin(), probe.linears.end(),
                  [](const ProbeLinear& l) { return l.is_mtp; }))
    c.mtp_weight = o.mtp_weight;
  if (!o.measured_costs.empty()) c.measured_costs = o.measured_costs;
  c.formats = std::move(formats);
  return c;
}

}  // namespace

Status ValidateAllocateOptions(const AllocateOptions& o) {
  const int targets = o.target_bits.has_value() + o.target_knee + o.target_size.has_value();
  if (targets != 1)
    return InvalidArgument(
        "give exactly one of --target-bits B, --target-bits knee, --target-size");
  if (o.target_bits && !(std::isfinite(*o.target_bits) && *o.target_bits > 0))
    return InvalidArgument("--target-bits must be a positive number or knee (got " +
                           std::to_string(*o.target_bits) + ")");
  if (o.target_size && *o.target_size == 0)
    return InvalidArgument("--target-size must be positive");
  if (!(std::isfinite(o.mtp_weight) && o.mtp_weight >= 0))
    return InvalidArgument("--mtp-weight must be a finite number >= 0 (got " +
                           std::to_string(o.mtp_weight) + ")");
  if (o.target_size && *o.target_size <= o.kv_reserve)
    return InvalidArgument("--kv-reserve (" + std::to_string(o.kv_reserve) +
                           " bytes) is not smaller than --target-size (" +
                           std::to_string(*o.target_size) + " bytes)");
  return Status::Ok();
}

Result<AllocateResult> Allocate(const AllocateOptions& o) {
  PQ_RETURN_IF_ERROR(ValidateAllocateOptions(o));
  const WorkDir w(o.work);
  PQ_ASSIGN_OR_RETURN(const ProbeFile probe, ReadProbeFile(w));
  AllocateResult r;
  PQ_ASSIGN_OR_RETURN(r.formats, AllowedFormats(probe, o));
  const ProbeRoles roles = SplitRoles(probe);
  std::optional<MeasuredCosts> measured;
  if (!o.measured_costs.empty()) {
    PQ_ASSIGN_OR_RETURN(measured, ReadMeasuredCosts(o.measured_costs));
  }
  PQ_ASSIGN_OR_RETURN(alloc::Problem problem,
                      BuildProblem(roles.units, r.formats, o, measured ? &*measured : nullptr));
  r.units = static_cast<int64_t>(roles.units.size());
  for (const auto& u : roles.units) r.linears += static_cast<int64_t>(u.members.size());
  PQ_ASSIGN_OR_RETURN(FixedPart fixed, PriceFixed(probe, roles, o));
  r.fixed_bytes = fixed.bytes;

  const int64_t params = alloc::TotalParams(problem);
  PQ_ASSIGN_OR_RETURN(const uint64_t min_bytes, alloc::MinBytes(problem));
  uint64_t max_bytes = 0;
  for (const auto& u : problem.units) {
    uint64_t m = 0;
    for (const auto& c : u.candidates) m = std::max(m, c.bytes);
    max_bytes += m;
  }
  r.min_bits = alloc::BitsPerParam(min_bytes, params);
  r.max_bits = alloc::BitsPerParam(max_bytes, params);

  PQ_ASSIGN_OR_RETURN(const Sweep sweep, SweepBudgets(problem, o, min_bytes, max_bytes));
  PQ_ASSIGN_OR_RETURN(auto sols, alloc::SolveMany(problem, sweep.budgets));
  std::vector<double> xs, ys;
  for (size_t i = 0; i < sols.size(); ++i) {
    r.pareto.push_back(Point(problem, sols[i], sweep.bits[i], fixed, r.formats));
    xs.push_back(r.pareto.back().achieved_bits);
    ys.push_back(r.pareto.back().predicted_dloss);
  }
  if (auto k = alloc::KneeIndex(xs, ys)) r.knee = static_cast<size_t>(*k);

  PQ_ASSIGN_OR_RETURN(const Chosen chosen, ChooseBudget(problem, o, r, sweep));
  PQ_RETURN_IF_ERROR(CheckFeasible(r, chosen.budget, min_bytes));
  PQ_ASSIGN_OR_RETURN(alloc::Solution sol, alloc::Solve(problem, chosen.budget));
  r.chosen = Point(problem, sol, chosen.bits, fixed, r.formats);
  for (size_t u = 0; u < roles.units.size(); ++u)
    for (const ProbeLinear* m : roles.units[u].members)
      fixed.module_formats[m->module] =
          problem.units[u].candidates[static_cast<size_t>(sol.choice[u])].format;

  r.layer_config = w.layer_config_json();
  r.pareto_csv = w.pareto_csv();
  PQ_RETURN_IF_ERROR(WriteParetoTable(w, {r.formats, r.pareto}));
  PQ_RETURN_IF_ERROR(WriteLayerConfig(
      w, MakeLayerConfig(probe, o, r, roles, chosen, std::move(fixed.module_formats))));
  return r;
}

}  // namespace pq::pipeline
