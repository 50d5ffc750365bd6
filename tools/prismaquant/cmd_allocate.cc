// `prismaquant allocate --work W --target-bits B | --target-size SIZE`
#include <cstdio>

#include "cli_util.h"
#include "commands.h"
#include "flags.h"
#include "pq/pipeline/allocate.h"

namespace pq::cli {
namespace {

struct AllocateArgs {
  std::string work, formats, measured_costs;
  TargetFlags target;
  ChoiceFlags choice;
  bool json = false;
};

void PrintPoint(const pipeline::AllocateResult& r, const pipeline::ParetoPoint& p, bool mark_knee,
                bool chosen) {
  std::printf("%s %8.4f %10.4f %14llu %12.6g ", chosen ? "*" : (mark_knee ? "k" : " "),
              p.target_bits, p.achieved_bits, static_cast<unsigned long long>(p.total_bytes),
              p.predicted_dloss);
  for (size_t i = 0; i < r.formats.size(); ++i)
    if (p.count[i])
      std::printf(" %s:%lld", r.formats[i].c_str(), static_cast<long long>(p.count[i]));
  std::printf("\n");
}

Status Run(const AllocateArgs& a) {
  pipeline::AllocateOptions o;
  o.work = a.work;
  PQ_RETURN_IF_ERROR(a.target.ToOptions(o));
  PQ_ASSIGN_OR_RETURN(o.formats, ParseFormatList(a.formats));
  PQ_RETURN_IF_ERROR(a.choice.ToOptions(o));
  o.measured_costs = a.measured_costs;
  PQ_ASSIGN_OR_RETURN(pipeline::AllocateResult r, pipeline::Allocate(o));
  if (a.json) {
    std::printf("%s\n", r.ToJson().dump(2).c_str());
    return Status::Ok();
  }
  std::printf(
      "%lld Linears in %lld decision units; achievable %.4f .. %.4f bits/param; "
      "fixed bytes %llu\n",
      static_cast<long long>(r.linears), static_cast<long long>(r.units), r.min_bits, r.max_bits,
      static_cast<unsigned long long>(r.fixed_bytes));
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
  a->target.Register(sub, /*compact=*/false);
  sub->add_option("--formats", a->formats,
                  "Allowed formats, comma-separated (default: all probed)");
  a->choice.Register(sub, /*compact=*/false, /*with_pareto=*/true);
  sub->add_option("--measured-costs", a->measured_costs,
                  "Price each decision unit by its measured KL from this CSV (check-costs "
                  "--per-unit --csv on calibration text) instead of the estimator (README "
                  "\"Measured prices\")");
  AddJsonFlag(sub, &a->json, "result");
  sub->callback([a, exit_code] { *exit_code = ExitCodeFor(Run(*a)); });
}

}  // namespace pq::cli
