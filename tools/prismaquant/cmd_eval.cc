// `prismaquant eval MODEL --text FILE`
#include <cstdio>

#include "commands.h"
#include "flags.h"
#include "pq/dist/comm.h"
#include "pq/engine/eval.h"
#include "pq/pipeline/eval_text.h"

namespace pq::cli {
namespace {

struct EvalArgs {
  std::string model, text, tokens, split = "none", reference, work;
  int64_t max_docs = 0, ctx = 0, stride = 0;
  ExecFlags exec;
  double memory_gb = 8;
  bool no_bos = false, json = false, weights_only = false, mtp = false;
};

Status Run(const EvalArgs& a) {
  if (a.text.empty() == a.tokens.empty())
    return InvalidArgument("eval needs exactly one of --text FILE or --tokens FILE");
  pipeline::EvalInput in;
  in.text_file = a.text;
  in.tokens_file = a.tokens;
  PQ_ASSIGN_OR_RETURN(in.split, pipeline::ParseDocSplit(a.split));
  in.max_docs = a.max_docs;
  in.add_bos = !a.no_bos;
  PQ_ASSIGN_OR_RETURN(auto docs, pipeline::LoadEvalDocuments(a.model, in));
  engine::EvalOptions o;
  o.ctx = a.ctx;
  o.stride = a.stride;
  o.reference = a.reference;
  o.weights_only = a.weights_only;
  o.mtp = a.mtp;
  o.runner.work_dir = a.work;
  o.runner.memory_budget_bytes = static_cast<uint64_t>(a.memory_gb * 1e9);
  o.exec = a.exec.Context();
  PQ_ASSIGN_OR_RETURN(engine::EvalResult r, engine::Evaluate(a.model, docs, o));
  if (dist::Rank() != 0) return Status::Ok();  // across MPI ranks: rank 0 prints
  if (a.json) {
    std::printf("%s\n", r.ToJson().dump(2).c_str());
  } else {
    std::printf("%s: %lld docs, %lld windows (ctx %lld, stride %lld), %lld scored tokens\n",
                a.model.c_str(), static_cast<long long>(r.docs), static_cast<long long>(r.windows),
                static_cast<long long>(r.ctx), static_cast<long long>(r.stride),
                static_cast<long long>(r.tokens));
    std::printf("mean NLL %.6f nats/token, perplexity %.4f\n", r.mean_nll, r.ppl);
    if (r.mean_kl) std::printf("mean KL(reference || model) %.6g nats/token\n", *r.mean_kl);
    if (r.mtp_nll)
      std::printf("MTP head: mean NLL %.6f of token t+2 over %lld positions; its greedy draft "
                  "equals the model's greedy token %.4f of the time\n",
                  *r.mtp_nll, static_cast<long long>(r.mtp_tokens), r.mtp_accept.value_or(0));
  }
  return Status::Ok();
}

}  // namespace

void AddEvalCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* sub = app.add_subcommand(
      "eval",
      "Mean NLL per token and perplexity of MODEL over a text (and, with --reference, the mean\n"
      "KL(reference || model) over the same tokens). MODEL is any checkpoint we read, including\n"
      "compressed-tensors output (weights dequantized on load; inputs of NVFP4/MXFP8/MXFP4/FP8\n"
      "Linears quantized as the runtime does, see --weights-only). Each document is BOS + its "
      "tokens; a\n"
      "document longer than --ctx is scored in windows advancing by --stride, each token once.\n"
      "Example: prismaquant eval out/stories-nvfp4 --text valid.txt --split paragraphs "
      "--reference models/stories260K");
  sub->add_option("model", a->model, "Model directory or .safetensors file")->required();
  sub->add_option("--text", a->text, "UTF-8 text file");
  sub->add_option("--tokens", a->tokens,
                  "Pre-tokenized file: one document per line, ids separated by spaces");
  sub->add_option("--split", a->split,
                  "Documents: none (whole file), lines, paragraphs (default none)");
  sub->add_option("--max-docs", a->max_docs, "Use only the first N documents");
  sub->add_option("--ctx", a->ctx,
                  "Window length in tokens (default: model max positions, <= 4096)");
  sub->add_option("--stride", a->stride, "New tokens per window after the first (default ctx/2)");
  sub->add_option("--reference", a->reference, "Reference model for KL(reference || model)");
  sub->add_flag("--mtp", a->mtp,
                "Also the MTP head (mtp.*): its NLL of token t+2 and how often its greedy draft "
                "equals the model's own greedy token (what greedy speculative decoding accepts)");
  a->exec.Register(sub);
  sub->add_option("--work", a->work, "Directory for spill files (default /tmp)");
  sub->add_option("--memory-budget-gb", a->memory_gb, "Memory for stored activations (default 8)")
      ->check(FiniteNonNegative());
  sub->add_flag("--no-bos", a->no_bos, "Do not prepend BOS to each document");
  sub->add_flag(
      "--weights-only", a->weights_only,
      "Do not quantize Linear inputs at run time (by default NVFP4, MXFP8, MXFP4 and FP8\n"
      "Linears see their inputs quantized exactly as compressed-tensors does)");
  AddJsonFlag(sub, &a->json, "result");
  sub->callback([a, exit_code] { *exit_code = ExitCodeFor(Run(*a)); });
}

}  // namespace pq::cli
