// `prismaquant quantize MODEL -o OUT --target-bits B | --target-size S --calib FILE`
#include <cstdio>

#include "cli_util.h"
#include "commands.h"
#include "flags.h"
#include "pq/dist/comm.h"
#include "pq/pipeline/quantize.h"
#include "pq/report/model_card.h"

namespace pq::cli {
namespace {

struct QuantizeArgs {
  std::string model, out, work, formats, eval_text;
  CalibrationFlags calib;
  TargetFlags target;
  ChoiceFlags choice;
  PassesFlag passes;
  ExecFlags exec;
  int64_t eval_docs = 0, sample_block = 0;
  bool overwrite = false, json = false;
};

Status Fill(const QuantizeArgs& a, pipeline::QuantizeOptions& o) {
  pipeline::ProbeOptions& p = o.probe;
  p.model = a.model;
  std::string out = a.out;  // OUT/ -> OUT.work beside OUT, never inside it
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  p.work = a.work.empty() ? out + ".work" : a.work;
  PQ_RETURN_IF_ERROR(a.calib.ToOptions("quantize", p.calib));
  p.sample_block = a.sample_block;
  PQ_ASSIGN_OR_RETURN(p.formats, ParseFormatList(a.formats));
  PQ_RETURN_IF_ERROR(a.target.ToOptions(o.allocate));
  PQ_RETURN_IF_ERROR(a.choice.ToOptions(o.allocate));
  o.out = a.out;
  o.write.overwrite = a.overwrite;
  PQ_ASSIGN_OR_RETURN(o.passes, a.passes.Parse());
  p.passes = o.passes;  // the probe prices what export writes
  o.eval_text = a.eval_text;
  o.eval_input.split = pipeline::DocSplit::kParagraphs;
  o.eval_input.max_docs = a.eval_docs;
  o.exec = a.exec.Context();
  return Status::Ok();
}

Status Run(const QuantizeArgs& a) {
  pipeline::QuantizeOptions o;
  PQ_RETURN_IF_ERROR(Fill(a, o));
  PQ_ASSIGN_OR_RETURN(pipeline::QuantizeResult r, pipeline::Quantize(o));
  if (dist::Rank() != 0) return Status::Ok();  // across MPI ranks: rank 0 writes and prints
  PQ_RETURN_IF_ERROR(report::WriteModelCard(o, r));
  if (a.json) {
    std::printf("%s\n", r.ToJson(o).dump(2).c_str());
    return Status::Ok();
  }
  const auto& c = r.allocation.chosen;
  std::printf("%s", r.exported.ToText().c_str());
  std::printf(
      "allocated %.4f bits/param (Linears), %llu bytes in total, predicted dloss %.6g "
      "nats/token\n",
      c.achieved_bits, static_cast<unsigned long long>(r.exported.total_bytes), c.predicted_dloss);
  if (r.eval_out)
    std::printf("measured on %lld tokens: NLL %.6f -> %.6f (dNLL %+.6f), KL %.6g nats/token\n",
                static_cast<long long>(r.eval_out->tokens), r.eval_base->mean_nll,
                r.eval_out->mean_nll, r.eval_out->mean_nll - r.eval_base->mean_nll,
                r.eval_out->mean_kl.value_or(0));
  std::printf("wrote %s (work dir %s)\n", a.out.c_str(), o.probe.work.c_str());
  return Status::Ok();
}

}  // namespace

void AddQuantizeCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<QuantizeArgs>();
  CLI::App* sub = app.add_subcommand(
      "quantize",
      "The whole pipeline in one command: probe (calibration pass, resumable) -> allocate (a\n"
      "format per Linear under the budget) -> export (compressed-tensors checkpoint for vLLM).\n"
      "The work dir (default OUT.work) is reused when its inputs match.\n"
      "Example: prismaquant quantize models/stories260K -o out/s --target-bits knee --calib t.txt");
  sub->add_option("model", a->model, "Hugging Face model directory")->required();
  AddOutputDirFlag(sub, &a->out, "Output checkpoint directory (written atomically)");
  a->target.Register(sub, /*compact=*/true);
  a->calib.Register(sub, /*compact=*/true);
  AddSampleBlockFlag(sub, &a->sample_block);
  sub->add_option("--formats", a->formats, "Candidate formats, comma-separated (default all)");
  a->choice.Register(sub, /*compact=*/true, /*with_pareto=*/false);
  sub->add_option("--work", a->work, "Work directory (default OUT.work)");
  a->passes.Register(sub, "Export passes: rtn, gptq, search, search+gptq (default; measured best)");
  sub->add_option("--eval", a->eval_text,
                  "Held-out text: measure NLL and KL(source || quantized) after export");
  sub->add_option("--eval-docs", a->eval_docs, "Use only the first N paragraphs of --eval");
  a->exec.Register(sub);
  AddOverwriteFlag(sub, &a->overwrite);
  AddJsonFlag(sub, &a->json, "result");
  sub->callback([a, exit_code] { *exit_code = ExitCodeFor(Run(*a)); });
}

}  // namespace pq::cli
