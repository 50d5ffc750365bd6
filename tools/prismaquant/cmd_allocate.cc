// `prismaquant allocate --work W --target-bits B | --target-size SIZE`
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "pq/pipeline/allocate.h"

namespace pq::cli {
namespace {

struct AllocateArgs {
  std::string work, target_bits, target_size, kv_reserve = "0", formats, cost = "hessian",
                                                                  pareto, lm_head = "BF16",
                                                                  visual = "BF16";
  bool json = false;
};

void PrintPoint(const pipeline::AllocateResult& r, const pipeline::ParetoPoint& p, bool mark_knee,
                bool chosen) {
  std::printf("%s %8.4f %10.4f %14llu %12.6g ", chosen ? "*" : (mark_knee ? "k" : " "),
              p.target_bits, p.achieved_bits, static_cast<unsigned long long>(p.total_bytes),
              p.predicted_dloss);
  for (size_t i = 0; i < r.formats.size(); ++i)
    if (p.count[i]) std::printf(" %s:%lld", r.formats[i].c_str(), static_cast<long long>(p.count[i]));
  std::printf("\n");
}

nlohmann::json PointJson(const pipeline::AllocateResult& r, const pipeline::ParetoPoint& p) {
  nlohmann::json counts = nlohmann::json::object();
  for (size_t i = 0; i < r.formats.size(); ++i) counts[r.formats[i]] = p.count[i];
  return {{"target_bits", p.target_bits},       {"achieved_bits", p.achieved_bits},
          {"unit_bytes", p.unit_bytes},         {"total_bytes", p.total_bytes},
          {"predicted_dloss", p.predicted_dloss}, {"optimal", p.optimal},
          {"units_per_format", counts}};
}

Status Run(const AllocateArgs& a) {
  pipeline::AllocateOptions o;
  o.work = a.work;
  if (a.target_bits == "knee") {
    o.target_knee = true;
  } else if (!a.target_bits.empty()) {
    PQ_ASSIGN_OR_RETURN(auto v, ParseNumberList(a.target_bits));
    if (v.size() != 1) return InvalidArgument("--target-bits takes one number or \"knee\"");
    o.target_bits = v[0];
  }
  if (!a.target_size.empty()) {
    PQ_ASSIGN_OR_RETURN(o.target_size, ParseByteSize(a.target_size));
  }
  PQ_ASSIGN_OR_RETURN(o.kv_reserve, ParseByteSize(a.kv_reserve));
  PQ_ASSIGN_OR_RETURN(o.formats, ParseFormatList(a.formats));
  PQ_ASSIGN_OR_RETURN(o.cost, quant::ParseCostEstimator(a.cost));
  PQ_ASSIGN_OR_RETURN(o.pareto_bits, ParseNumberList(a.pareto));
  auto head = formats::ParseFormat(a.lm_head);
  if (!head) return InvalidArgument("--lm-head: unknown format \"" + a.lm_head + "\"");
  o.lm_head = *head;
  PQ_ASSIGN_OR_RETURN(o.visual, ParseVisualFormat(a.visual));
  PQ_ASSIGN_OR_RETURN(pipeline::AllocateResult r, pipeline::Allocate(o));
  if (a.json) {
    nlohmann::json j = {{"layer_config", r.layer_config}, {"pareto_csv", r.pareto_csv},
                        {"units", r.units},               {"linears", r.linears},
                        {"fixed_bytes", r.fixed_bytes},   {"min_bits", r.min_bits},
                        {"max_bits", r.max_bits},         {"chosen", PointJson(r, r.chosen)},
                        {"pareto", nlohmann::json::array()}};
    for (const auto& p : r.pareto) j["pareto"].push_back(PointJson(r, p));
    j["knee_bits"] = r.knee ? nlohmann::json(r.pareto[*r.knee].achieved_bits) : nullptr;
    std::printf("%s\n", j.dump(2).c_str());
    return Status::Ok();
  }
  std::printf("%lld Linears in %lld decision units; achievable %.4f .. %.4f bits/param; "
              "fixed bytes %llu\n",
              static_cast<long long>(r.linears), static_cast<long long>(r.units), r.min_bits,
              r.max_bits, static_cast<unsigned long long>(r.fixed_bytes));
  std::printf("  %8s %10s %14s %12s  units per format\n", "target", "bits", "total bytes",
              "pred. dloss");
  for (size_t i = 0; i < r.pareto.size(); ++i) PrintPoint(r, r.pareto[i], r.knee == i, false);
  PrintPoint(r, r.chosen, false, true);
  if (r.knee) std::printf("knee at %.4f bits/param (k)\n", r.pareto[*r.knee].achieved_bits);
  std::printf("chosen (*): %.4f bits/param, %llu bytes in total, predicted dloss %.6g nats/token\n",
              r.chosen.achieved_bits, static_cast<unsigned long long>(r.chosen.total_bytes),
              r.chosen.predicted_dloss);
  std::printf("wrote %s and %s\n", r.layer_config.c_str(), r.pareto_csv.c_str());
  return Status::Ok();
}

}  // namespace

void AddAllocateCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<AllocateArgs>();
  CLI::App* sub = app.add_subcommand(
      "allocate",
      "Pick one format per Linear from a probe (WORK/probe.json) so that the predicted loss\n"
      "increase is smallest within a budget: a multiple-choice knapsack over decision units\n"
      "(fused siblings and all experts of an MoE layer share a format), exact in bytes.\n"
      "Writes WORK/layer_config.json and WORK/pareto.csv (a sweep of targets, with its knee).\n"
      "Example: prismaquant allocate --work w --target-bits 4.75");
  sub->add_option("--work", a->work, "Work directory of a finished probe")->required();
  sub->add_option("--target-bits", a->target_bits,
                  "Bits per parameter over the quantizable Linears (lm_head excluded), or "
                  "\"knee\" for the knee of the Pareto sweep");
  sub->add_option("--target-size", a->target_size,
                  "Whole-checkpoint size: every tensor as exported (e.g. 22GB, 500MiB, bytes)");
  sub->add_option("--kv-reserve", a->kv_reserve,
                  "Bytes to keep free out of --target-size (e.g. for the KV cache)");
  sub->add_option("--formats", a->formats, "Allowed formats, comma-separated (default: all probed)");
  sub->add_option("--cost", a->cost,
                  "Cost estimator: hessian (default, measured best), output, channel, trace (README: \"Which cost estimator\")");
  sub->add_option("--pareto", a->pareto,
                  "Bits/param targets to sweep, comma-separated (default: 11 points from the "
                  "smallest to the largest achievable)");
  sub->add_option("--lm-head", a->lm_head, "Fixed format of lm_head (default BF16)");
  sub->add_option("--visual-format", a->visual, kVisualFormatHelp);
  sub->add_flag("--json", a->json, "Print the result as JSON");
  sub->callback([a, exit_code] { *exit_code = ExitCodeFor(Run(*a)); });
}

}  // namespace pq::cli
