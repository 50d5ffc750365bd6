// `prismaquant report --work W [-o report.html]`
#include <cstdio>

#include "commands.h"
#include "pq/report/report.h"

namespace pq::cli {
namespace {

struct ReportArgs {
  report::ReportOptions o;
  bool json = false;
};

Status Run(const ReportArgs& a) {
  PQ_ASSIGN_OR_RETURN(report::ReportSummary r, report::WriteReport(a.o));
  if (a.json) {
    std::printf("%s\n", r.ToJson().dump(2).c_str());
    return Status::Ok();
  }
  std::printf("%lld Linears in a %lld x %lld map (%lld cells); sensitivity in %s (%s)\n",
              static_cast<long long>(r.linears), static_cast<long long>(r.rows),
              static_cast<long long>(r.columns), static_cast<long long>(r.cells),
              r.reference_format.c_str(), r.estimator.c_str());
  std::printf("wrote %s (%llu bytes)\n", r.path.c_str(), static_cast<unsigned long long>(r.bytes));
  return Status::Ok();
}

}  // namespace

void AddReportCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<ReportArgs>();
  CLI::App* sub = app.add_subcommand(
      "report",
      "Write one static HTML page (inline SVG, no network) about a probed and allocated work\n"
      "dir: the Pareto curve with its knee and the chosen point, the format chosen per layer\n"
      "and module, and the sensitivities (predicted loss in a 4-bit reference format, and the\n"
      "15 most sensitive Linears). Needs WORK/probe.json, WORK/layer_config.json and\n"
      "WORK/pareto.csv (from `probe` and `allocate`).\n"
      "Example: prismaquant report --work w -o report.html");
  sub->add_option("--work", a->o.work, "Work directory of a finished probe and allocate")
      ->required();
  sub->add_option("-o,--output", a->o.output, "HTML file to write (default WORK/report.html)");
  sub->add_flag("--overwrite", a->o.overwrite, "Replace an existing output file");
  sub->add_flag("--json", a->json, "Print the summary as JSON");
  sub->callback([a, exit_code] { *exit_code = ExitCodeFor(Run(*a)); });
}

}  // namespace pq::cli
