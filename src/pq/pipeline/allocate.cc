#include "pq/pipeline/allocate.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pq/alloc/knapsack.h"
#include "pq/alloc/knee.h"
#include "pq/io/file_util.h"
#include "pq/pipeline/probe.h"

namespace pq::pipeline {
namespace {

using nlohmann::json;

struct UnitInfo {
  std::string name;
  std::vector<const json*> members;
};

// The knapsack instance: one unit per decision unit of the probe, candidates = the allowed
// formats every member can hold, bytes and costs summed over the members.
Result<alloc::Problem> BuildProblem(const std::vector<UnitInfo>& units,
                                    const std::vector<std::string>& allowed,
                                    const std::string& estimator) {
  alloc::Problem p;
  for (const UnitInfo& u : units) {
    alloc::Unit unit{u.name, 0, {}};
    for (const json* m : u.members) unit.params += (*m)["rows"].get<int64_t>() * (*m)["cols"].get<int64_t>();
    for (const std::string& f : allowed) {
      alloc::Candidate c{f, 0, 0.0};
      bool all = true;
      for (const json* m : u.members) {
        const json* cand = nullptr;
        for (const json& x : (*m)["candidates"])
          if (x["format"] == f) cand = &x;
        if (!cand) {
          all = false;
          break;
        }
        c.bytes += (*cand)["bytes"].get<uint64_t>();
        c.cost += (*cand)["cost"][estimator].get<double>();
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

ParetoPoint Point(const alloc::Problem& p, const alloc::Solution& s, double target_bits,
                  uint64_t fixed, const std::vector<std::string>& fmts) {
  ParetoPoint pt;
  pt.target_bits = target_bits;
  pt.achieved_bits = s.bits_per_param;
  pt.unit_bytes = s.bytes;
  pt.total_bytes = s.bytes + fixed;
  pt.predicted_dloss = s.cost;
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

std::string ParetoCsv(const AllocateResult& r) {
  std::ostringstream os;
  os << "target_bits,achieved_bits,unit_bytes,total_bytes,predicted_dloss,optimal";
  for (const auto& f : r.formats) os << ",count_" << f;
  for (const auto& f : r.formats) os << ",params_" << f;
  os << "\n";
  char buf[64];
  for (const ParetoPoint& p : r.pareto) {
    std::snprintf(buf, sizeof buf, "%.6f,%.6f,", p.target_bits, p.achieved_bits);
    os << buf << p.unit_bytes << "," << p.total_bytes << ",";
    std::snprintf(buf, sizeof buf, "%.9g", p.predicted_dloss);
    os << buf << "," << (p.optimal ? 1 : 0);
    for (int64_t c : p.count) os << "," << c;
    for (int64_t c : p.params) os << "," << c;
    os << "\n";
  }
  return os.str();
}

}  // namespace

Result<AllocateResult> Allocate(const AllocateOptions& o) {
  const int targets = o.target_bits.has_value() + o.target_knee + o.target_size.has_value();
  if (targets != 1)
    return InvalidArgument("give exactly one of --target-bits B, --target-bits knee, --target-size");
  PQ_ASSIGN_OR_RETURN(json probe, ReadProbe(o.work));
  const std::string estimator(quant::EstimatorName(o.cost));
  AllocateResult r;
  for (const json& f : probe["formats"]) {
    const auto id = formats::ParseFormat(f.get<std::string>());
    if (!id) return DataLoss(o.work + "/probe.json: unknown format " + f.dump());
    bool allowed = o.formats.empty();
    for (auto a : o.formats) allowed |= a == *id;
    if (allowed) r.formats.push_back(f.get<std::string>());
  }
  for (auto a : o.formats) {
    bool probed = false;
    for (const auto& f : r.formats) probed |= f == formats::Spec(a).name;
    if (!probed)
      return InvalidArgument("format " + std::string(formats::Spec(a).name) +
                             " was not probed (probe with --formats including it)");
  }

  // Decision units in probe order; lm_head has its fixed format.
  std::vector<UnitInfo> units;
  std::map<std::string, size_t> unit_index;
  const json* head = nullptr;
  std::vector<const json*> visual;
  for (const json& li : probe["linears"]) {
    if (li["is_lm_head"].get<bool>()) {
      head = &li;
      continue;
    }
    if (li.value("is_visual", false)) {
      visual.push_back(&li);
      continue;
    }
    const std::string u = li["unit"].get<std::string>();
    auto [it, added] = unit_index.emplace(u, units.size());
    if (added) units.push_back({u, {}});
    units[it->second].members.push_back(&li);
  }
  PQ_ASSIGN_OR_RETURN(alloc::Problem problem, BuildProblem(units, r.formats, estimator));
  r.units = static_cast<int64_t>(units.size());
  for (const auto& u : units) r.linears += static_cast<int64_t>(u.members.size());

  // Fixed bytes: every other tensor, plus lm_head in its format (nothing extra when it stays
  // BF16 and is tied to the embedding).
  r.fixed_bytes = probe["model"]["other_tensor_bytes"].get<uint64_t>();
  std::map<std::string, std::string> module_formats;
  double head_cost = 0;
  const std::string head_fmt(formats::Spec(o.lm_head).name);
  const bool tied = probe["model"]["tie_word_embeddings"].get<bool>();
  if (head) {
    const int64_t rows = (*head)["rows"].get<int64_t>(), cols = (*head)["cols"].get<int64_t>();
    PQ_RETURN_IF_ERROR(formats::CheckShape(o.lm_head, rows, cols).WithContext("--lm-head"));
    if (!(tied && o.lm_head == formats::FormatId::kBF16))
      r.fixed_bytes += formats::BytesOnDisk(o.lm_head, rows, cols);
    for (const json& c : (*head)["candidates"])
      if (c["format"] == head_fmt) head_cost = c["cost"][estimator].get<double>();
    module_formats["lm_head"] = head_fmt;
  }
  // Vision Linears in their fixed format, counted in the total.
  const std::string visual_fmt(formats::Spec(o.visual).name);
  for (const json* v : visual) {
    const int64_t rows = (*v)["rows"].get<int64_t>(), cols = (*v)["cols"].get<int64_t>();
    const std::string module = (*v)["module"].get<std::string>();
    PQ_RETURN_IF_ERROR(formats::CheckShape(o.visual, rows, cols).WithContext("--visual-format " + module));
    r.fixed_bytes += formats::BytesOnDisk(o.visual, rows, cols);
    module_formats[module] = visual_fmt;
  }

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

  // Pareto sweep.
  std::vector<uint64_t> budgets;
  std::vector<double> sweep_bits;
  if (o.pareto_bits.empty()) {
    for (int i = 0; i <= 10; ++i) {
      budgets.push_back(min_bytes + (max_bytes - min_bytes) * static_cast<uint64_t>(i) / 10);
      sweep_bits.push_back(alloc::BitsPerParam(budgets.back(), params));
    }
  } else {
    for (double b : o.pareto_bits) {
      PQ_ASSIGN_OR_RETURN(uint64_t budget, alloc::BudgetForBits(problem, b));
      budgets.push_back(budget);
      sweep_bits.push_back(b);
    }
  }
  PQ_ASSIGN_OR_RETURN(auto sols, alloc::SolveMany(problem, budgets));
  std::vector<double> xs, ys;
  for (size_t i = 0; i < sols.size(); ++i) {
    r.pareto.push_back(Point(problem, sols[i], sweep_bits[i], r.fixed_bytes, r.formats));
    r.pareto.back().predicted_dloss += head_cost;
    xs.push_back(r.pareto.back().achieved_bits);
    ys.push_back(r.pareto.back().predicted_dloss);
  }
  if (auto k = alloc::KneeIndex(xs, ys)) r.knee = static_cast<size_t>(*k);

  // The chosen point.
  uint64_t budget = 0;
  double target = 0;
  json target_json;
  if (o.target_bits) {
    PQ_ASSIGN_OR_RETURN(budget, alloc::BudgetForBits(problem, *o.target_bits));
    target = *o.target_bits;
    target_json = {{"bits", *o.target_bits}};
  } else if (o.target_knee) {
    if (!r.knee)
      return InvalidArgument("the Pareto sweep has no knee (too few points or a straight curve); "
                             "give --target-bits B");
    budget = budgets[*r.knee];
    target = sweep_bits[*r.knee];
    target_json = {{"bits", "knee"}, {"knee_bits", target}};
  } else {
    if (*o.target_size <= o.kv_reserve)
      return InvalidArgument("--kv-reserve is not smaller than --target-size");
    auto b = alloc::BudgetForTotalBytes(*o.target_size - o.kv_reserve, r.fixed_bytes);
    if (!b.ok())
      return InvalidArgument("--target-size " + std::to_string(*o.target_size) +
                             " bytes is below the " + std::to_string(r.fixed_bytes) +
                             " bytes of tensors outside the Linears (embeddings, norms, lm_head)");
    budget = *b;
    target = alloc::BitsPerParam(budget, params);
    target_json = {{"size_bytes", *o.target_size}, {"kv_reserve_bytes", o.kv_reserve}};
  }
  if (budget < min_bytes) {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "target is infeasible: the smallest allocation over the allowed formats needs "
                  "%.4f bits/param (%llu bytes of Linears)",
                  r.min_bits, static_cast<unsigned long long>(min_bytes));
    return InvalidArgument(buf);
  }
  PQ_ASSIGN_OR_RETURN(alloc::Solution sol, alloc::Solve(problem, budget));
  r.chosen = Point(problem, sol, target, r.fixed_bytes, r.formats);
  r.chosen.predicted_dloss += head_cost;

  for (size_t u = 0; u < units.size(); ++u)
    for (const json* m : units[u].members)
      module_formats[(*m)["module"].get<std::string>()] =
          problem.units[u].candidates[static_cast<size_t>(sol.choice[u])].format;
  json config = {
      {"schema", kLayerConfigSchema},
      {"probe_inputs", probe["inputs"]},
      {"cost", estimator},
      {"lm_head", head_fmt},
      {"visual", visual.empty() ? json(nullptr) : json(visual_fmt)},
      {"target", target_json},
      {"achieved",
       {{"bits_per_param", r.chosen.achieved_bits},
        {"unit_bytes", r.chosen.unit_bytes},
        {"total_bytes", r.chosen.total_bytes},
        {"predicted_dloss", r.chosen.predicted_dloss},
        {"optimal", r.chosen.optimal}}},
      {"knee_bits", r.knee ? json(r.pareto[*r.knee].achieved_bits) : json(nullptr)},
      {"formats", module_formats}};
  r.layer_config = o.work + "/layer_config.json";
  r.pareto_csv = o.work + "/pareto.csv";
  PQ_RETURN_IF_ERROR(io::WriteFileAtomic(r.pareto_csv, ParetoCsv(r)));
  PQ_RETURN_IF_ERROR(io::WriteFileAtomic(r.layer_config, config.dump(1) + "\n"));
  return r;
}

}  // namespace pq::pipeline
