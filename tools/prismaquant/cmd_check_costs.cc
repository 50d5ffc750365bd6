// `prismaquant check-costs MODEL --work W --text HELDOUT`
#include <cstdio>
#include <fstream>

#include "cli_util.h"
#include "commands.h"
#include "flags.h"
#include "pq/dist/comm.h"
#include "pq/io/file_util.h"
#include "pq/pipeline/cost_check.h"

namespace pq::cli {
namespace {

struct CheckArgs {
  std::string model, work, text, split = "paragraphs", formats = "NVFP4,MXFP8", csv;
  std::vector<std::string> only;
  int64_t max_docs = 0, ctx = 0;
  ExecFlags exec;
  bool lm_head = false, per_unit = false, json = false, no_bos = false;
};

Status Run(const CheckArgs& a) {
  pipeline::CostCheckOptions o;
  o.model = a.model;
  o.work = a.work;
  o.text.text_file = a.text;
  PQ_ASSIGN_OR_RETURN(o.text.split, pipeline::ParseDocSplit(a.split));
  o.text.max_docs = a.max_docs;
  o.text.add_bos = !a.no_bos;
  o.eval.ctx = a.ctx;
  PQ_ASSIGN_OR_RETURN(o.formats, ParseFormatList(a.formats));
  o.include_lm_head = a.lm_head;
  o.per_unit = a.per_unit;
  o.only = a.only;
  o.exec = a.exec.Context();
  PQ_ASSIGN_OR_RETURN(pipeline::CostCheckResult r, pipeline::CheckCosts(o));
  if (dist::Rank() != 0) return Status::Ok();  // across MPI ranks: rank 0 writes and prints
  if (!a.csv.empty()) PQ_RETURN_IF_ERROR(io::WriteFileAtomic(a.csv, pipeline::CostCheckCsv(r)));
  if (a.json) {
    std::printf("%s\n", r.ToJson(o).dump(2).c_str());
    return Status::Ok();
  }
  std::printf("%s: %zu single-%s perturbations, base NLL %.6f on %lld held-out tokens\n",
              a.model.c_str(), r.rows.size(), a.per_unit ? "unit" : "Linear", r.base_nll,
              static_cast<long long>(r.tokens));
  std::printf("%-8s %14s %12s %20s %16s %18s\n", "cost", "Spearman dNLL", "Spearman KL",
              "Spearman KL in fmt", "median pred/KL", "median pred/dNLL");
  for (int e = 0; e < quant::kNumEstimators; ++e) {
    const auto i = static_cast<size_t>(e);
    std::printf("%-8s %14.4f %12.4f %20.4f %16.4g %18.4g\n",
                std::string(quant::EstimatorName(static_cast<quant::CostEstimator>(e))).c_str(),
                r.spearman_dnll[i], r.spearman_kl[i], r.spearman_kl_within[i], r.ratio_kl[i],
                r.ratio_dnll[i]);
  }
  return Status::Ok();
}

}  // namespace

void AddCheckCostsCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<CheckArgs>();
  CLI::App* sub = app.add_subcommand(
      "check-costs",
      "Measure how well each cost estimator predicts reality: quantize one Linear at a time\n"
      "(or one decision unit with --per-unit) exactly as the probe priced it (RTN or the\n"
      "export's passes; inputs quantized as the runtime does), evaluate ΔNLL and KL on held-out\n"
      "text, and report each estimator's Spearman rank correlation and predicted/measured\n"
      "ratio. Needs a probe of MODEL in WORK.\n"
      "Example: prismaquant check-costs models/stories260K --work w --text heldout.txt");
  sub->add_option("model", a->model, "The probed model")->required();
  sub->add_option("--work", a->work, "Work directory of the probe")->required();
  sub->add_option("--text", a->text, "Held-out text (not the calibration text)")->required();
  sub->add_option("--split", a->split, "Documents: none, lines, paragraphs (default), jsonl");
  sub->add_option("--max-docs", a->max_docs, "Use only the first N documents");
  sub->add_flag("--no-bos", a->no_bos, "Do not prepend BOS to each document (as eval --no-bos)");
  sub->add_option("--ctx", a->ctx, "Window length (default: model max positions, <= 4096)");
  sub->add_option("--formats", a->formats,
                  "Formats to perturb with, comma-separated (default NVFP4,MXFP8; Linears whose "
                  "shape cannot hold one are skipped for it)");
  sub->add_flag("--lm-head", a->lm_head, "Also perturb lm_head");
  sub->add_flag("--per-unit", a->per_unit,
                "Perturb whole decision units (all experts of an MoE layer, fused q/k/v, ...; "
                "predictions summed over the members, as allocate sums them)");
  sub->add_option("--only", a->only,
                  "Perturb only these Linears (units with --per-unit), comma-separated exact names")
      ->delimiter(',');
  sub->add_option("-o,--csv", a->csv, "Write every perturbation's numbers to this CSV");
  a->exec.Register(sub);
  AddJsonFlag(sub, &a->json, "summary");
  sub->callback([a, exit_code] { *exit_code = ExitCodeFor(Run(*a)); });
}

}  // namespace pq::cli
