// `prismaquant quantize MODEL -o OUT --target-bits B | --target-size S --calib FILE`
#include <cstdio>

#include "cli_util.h"
#include "commands.h"
#include "pq/compute/ops.h"
#include "pq/core/thread_pool.h"
#include "pq/pipeline/quantize.h"
#include "pq/report/model_card.h"

namespace pq::cli {
namespace {

struct QuantizeArgs {
  std::string model, out, work, calib, calib_tokens, split = "auto", formats, target_bits,
      target_size, kv_reserve = "0", cost = "hessian", lm_head = "BF16", visual = "BF16", eval_text,
      passes = "search+gptq";
  int64_t samples = 64, seqlen = 512, eval_docs = 0;
  uint64_t seed = 0;
  int threads = 0;
  bool overwrite = false, json = false;
};

Status Fill(const QuantizeArgs& a, pipeline::QuantizeOptions& o) {
  pipeline::ProbeOptions& p = o.probe;
  p.model = a.model;
  p.work = a.work.empty() ? a.out + ".work" : a.work;
  if (a.calib.empty() == a.calib_tokens.empty())
    return InvalidArgument("quantize needs exactly one of --calib FILE or --calib-tokens FILE");
  p.calib.input.text_file = a.calib;
  p.calib.input.tokens_file = a.calib_tokens;
  const bool jsonl = a.calib.size() > 6 && a.calib.substr(a.calib.size() - 6) == ".jsonl";
  PQ_ASSIGN_OR_RETURN(p.calib.input.split,
                      pipeline::ParseDocSplit(a.split != "auto" ? a.split
                                              : jsonl           ? "jsonl"
                                                                : "paragraphs"));
  p.calib.samples = a.samples;
  p.calib.seqlen = a.seqlen;
  p.calib.seed = a.seed;
  PQ_ASSIGN_OR_RETURN(p.formats, ParseFormatList(a.formats));
  pipeline::AllocateOptions& al = o.allocate;
  if (a.target_bits == "knee") {
    al.target_knee = true;
  } else if (!a.target_bits.empty()) {
    PQ_ASSIGN_OR_RETURN(auto v, ParseNumberList(a.target_bits));
    if (v.size() != 1) return InvalidArgument("--target-bits takes one number or \"knee\"");
    al.target_bits = v[0];
  }
  if (!a.target_size.empty()) {
    PQ_ASSIGN_OR_RETURN(al.target_size, ParseByteSize(a.target_size));
  }
  PQ_ASSIGN_OR_RETURN(al.kv_reserve, ParseByteSize(a.kv_reserve));
  PQ_ASSIGN_OR_RETURN(al.cost, quant::ParseCostEstimator(a.cost));
  const auto head = formats::ParseFormat(a.lm_head);
  if (!head) return InvalidArgument("--lm-head: unknown format \"" + a.lm_head + "\"");
  al.lm_head = *head;
  PQ_ASSIGN_OR_RETURN(al.visual, ParseVisualFormat(a.visual));
  o.out = a.out;
  o.write.num_threads = a.threads > 0 ? a.threads : DefaultThreads();
  o.write.overwrite = a.overwrite;
  PQ_ASSIGN_OR_RETURN(o.passes, pipeline::ParseExportPasses(a.passes));
  o.eval_text = a.eval_text;
  o.eval_input.split = pipeline::DocSplit::kParagraphs;
  o.eval_input.max_docs = a.eval_docs;
  return Status::Ok();
}

Status Run(const QuantizeArgs& a) {
  compute::cpu::SetNumThreads(a.threads);
  pipeline::QuantizeOptions o;
  PQ_RETURN_IF_ERROR(Fill(a, o));
  PQ_ASSIGN_OR_RETURN(pipeline::QuantizeResult r, pipeline::Quantize(o));
  PQ_RETURN_IF_ERROR(report::WriteModelCard(o, r));
  const auto& c = r.allocation.chosen;
  nlohmann::json mix = nlohmann::json::object();
  for (size_t i = 0; i < r.allocation.formats.size(); ++i)
    if (c.params[i]) mix[r.allocation.formats[i]] = c.params[i];
  nlohmann::json j = {{"out", a.out},
                      {"work", o.probe.work},
                      {"bits_per_param", c.achieved_bits},
                      {"total_bytes", r.exported.total_bytes},
                      {"predicted_dloss", c.predicted_dloss},
                      {"passes", a.passes},
                      {"error_ratio_vs_rtn_geomean", r.error_ratio_geomean},
                      {"params_per_format", mix}};
  if (r.eval_out) {
    j["eval"] = {{"base_nll", r.eval_base->mean_nll},
                 {"nll", r.eval_out->mean_nll},
                 {"kl", r.eval_out->mean_kl.value_or(0)},
                 {"tokens", r.eval_out->tokens}};
  }
  if (a.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return Status::Ok();
  }
  std::printf("%s", r.exported.ToText().c_str());
  std::printf("allocated %.4f bits/param (Linears), %llu bytes in total, predicted dloss %.6g "
              "nats/token\n",
              c.achieved_bits, static_cast<unsigned long long>(r.exported.total_bytes),
              c.predicted_dloss);
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
  sub->add_option("-o,--out", a->out, "Output checkpoint directory (written atomically)")
      ->required();
  sub->add_option("--target-bits", a->target_bits, "Bits per Linear parameter, or \"knee\"");
  sub->add_option("--target-size", a->target_size, "Whole-checkpoint size (e.g. 22GB, 500MiB)");
  sub->add_option("--kv-reserve", a->kv_reserve, "Bytes to keep free out of --target-size");
  sub->add_option("--calib", a->calib, "Calibration text (.txt, or .jsonl with \"text\")");
  sub->add_option("--calib-tokens", a->calib_tokens, "Pre-tokenized calibration input");
  sub->add_option("--split", a->split, "Documents of --calib (auto, none, lines, paragraphs, jsonl)");
  sub->add_option("--samples", a->samples, "Calibration samples (default 64)");
  sub->add_option("--seqlen", a->seqlen, "Tokens per sample (default 512)");
  sub->add_option("--seed", a->seed, "Sampling seed (default 0)");
  sub->add_option("--formats", a->formats, "Candidate formats, comma-separated (default all)");
  sub->add_option("--cost", a->cost, "Cost estimator (default hessian)");
  sub->add_option("--lm-head", a->lm_head, "Fixed format of lm_head (default BF16)");
  sub->add_option("--visual-format", a->visual, kVisualFormatHelp);
  sub->add_option("--work", a->work, "Work directory (default OUT.work)");
  sub->add_option("--passes", a->passes,
                  "Export passes: rtn, gptq, search, search+gptq (default; measured best)");
  sub->add_option("--eval", a->eval_text,
                  "Held-out text: measure NLL and KL(source || quantized) after export");
  sub->add_option("--eval-docs", a->eval_docs, "Use only the first N paragraphs of --eval");
  sub->add_option("--threads", a->threads, "Threads (default: all cores)");
  sub->add_flag("--overwrite", a->overwrite, "Replace OUT if it exists");
  sub->add_flag("--json", a->json, "Print the result as JSON");
  sub->callback([a, exit_code] { *exit_code = ExitCodeFor(Run(*a)); });
}

}  // namespace pq::cli
