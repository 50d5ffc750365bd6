// `prismaquant probe MODEL --calib FILE --work W`
#include <cstdio>
#include <sstream>

#include "cli_util.h"
#include "commands.h"
#include "flags.h"
#include "pq/dist/comm.h"
#include "pq/pipeline/probe.h"
#include "pq/quant/cost.h"

namespace pq::cli {
namespace {

struct ProbeArgs {
  std::string model, work, formats, estimators;
  CalibrationFlags calib;
  PassesFlag passes;
  ExecFlags exec;
  double memory_gb = 1, cache_gb = 2;
  std::string block = "rerun";
  int64_t block_layers = 2, block_samples = 0, sample_block = 0;
  bool no_lm_head = false, no_bos = false, json = false;
};

// --estimators LIST: whether any listed estimator needs per-token output errors (empty: all).
Result<bool> NeedsPerTokenErrors(const std::string& list) {
  if (list.empty()) return true;
  bool any = false;
  std::stringstream ss(list);
  std::string name;
  while (std::getline(ss, name, ',')) {
    if (name.empty()) continue;
    auto e = quant::ParseCostEstimator(name);
    if (!e.ok()) return e.status().WithContext("--estimators");
    any |= quant::NeedsPerTokenError(*e);
  }
  return any;
}

Status Run(const ProbeArgs& a) {
  pipeline::ProbeOptions o;
  o.model = a.model;
  o.work = a.work;
  PQ_RETURN_IF_ERROR(a.calib.ToOptions("probe", o.calib));
  o.calib.input.add_bos = !a.no_bos;
  PQ_ASSIGN_OR_RETURN(o.formats, ParseFormatList(a.formats));
  o.probe_lm_head = !a.no_lm_head;
  PQ_ASSIGN_OR_RETURN(o.passes, a.passes.Parse());
  o.memory_budget_bytes = static_cast<uint64_t>(a.memory_gb * 1e9);
  o.cache_bytes = static_cast<uint64_t>(a.cache_gb * 1e9);
  o.exec = a.exec.Context();
  o.block_cost = a.block != "off";
  o.block_reroute = a.block == "rerun";
  o.block_layers = a.block_layers;
  o.block_samples = a.block_samples;
  o.sample_block = a.sample_block;
  PQ_ASSIGN_OR_RETURN(o.per_token, NeedsPerTokenErrors(a.estimators));
  if (dist::Rank() != 0) {  // rank 0 prints; the others stay quiet
    o.exec.progress = false;
    o.exec.log_level = LogLevel::kQuiet;
  }
  PQ_ASSIGN_OR_RETURN(pipeline::ProbeSummary s, pipeline::RunProbe(o));
  if (dist::Rank() != 0) return Status::Ok();
  if (a.json) {
    std::printf("%s\n", s.ToJson().dump(2).c_str());
  } else {
    std::printf("probed %lld Linears in %lld layers on %lld calibration tokens (NLL %.6f)%s\n",
                static_cast<long long>(s.linears), static_cast<long long>(s.layers),
                static_cast<long long>(s.tokens), s.calib_nll,
                s.resumed_layers ? " (resumed)" : "");
    std::printf("wrote %s\n", s.probe_json.c_str());
  }
  return Status::Ok();
}

}  // namespace

void AddProbeCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<ProbeArgs>();
  CLI::App* sub = app.add_subcommand(
      "probe",
      "Calibration pass: for every Linear (and expert) and every candidate format, predict how\n"
      "much the mean next-token loss grows (nats/token) with each cost estimator (trace,\n"
      "channel, hessian, output, block, token), using the exact quantizer and passes export uses "
      "(scale\n"
      "search + GPTQ on the probe's own Hessians by default), activation quantization\n"
      "included. Streams one layer at a time; results go to WORK (resumable).\n"
      "MoE layers: every decision unit (experts, shared expert, attention/DeltaNet) is also\n"
      "priced at the output of its layer and the next with the routers re-run (estimator\n"
      "block; two layer forwards per unit and format).\n"
      "Qwen3-Next / Qwen3.5 / Qwen3.6: the MTP head (mtp.*) is probed with its own objective\n"
      "(token t+2 from the embedding of t+1 and the body's hidden state at t); the vision\n"
      "tower is not calibrated yet (no image samples): allocate gives it --visual-format.\n"
      "Example: prismaquant probe models/stories260K --calib train.txt --work w --samples 64");
  sub->add_option("model", a->model, "Model directory or .safetensors file")->required();
  sub->add_option("--work", a->work, "Work directory (created; reused to resume)")->required();
  a->calib.Register(sub, /*compact=*/false);
  sub->add_option(
      "--formats", a->formats,
      "Candidate formats, comma-separated (default all: " + formats::FormatNameList() + ")");
  a->passes.Register(sub,
                     "Export passes the candidates are priced after: each candidate is quantized "
                     "as export will write it (default search+gptq, export's default; rtn prices "
                     "round-to-nearest, faster). Export with the same --passes");
  sub->add_option("--estimators", a->estimators,
                  "Cost estimators to record, comma-separated (default all). trace, channel, "
                  "hessian and block are always recorded; output and token need every token's "
                  "output error (one or two matmuls per sample, Linear and format) — leaving "
                  "both out prices the weight error from each Linear's H instead, several "
                  "times faster on long calibration");
  sub->add_flag("--no-lm-head", a->no_lm_head, "Do not price lm_head's formats");
  sub->add_option("--block", a->block,
                  "MoE layers' block-output pricing: rerun (default: the router re-run), "
                  "frozen (the unquantized routing kept: an ablation), off (block = hessian)")
      ->check(CLI::IsMember({"rerun", "frozen", "off"}));
  sub->add_option("--block-layers", a->block_layers,
                  "Layers an MoE unit's error is followed through in the block reruns (default "
                  "2: its own and the next, whose router sees it; 1: its own; 0: to the last)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--block-samples", a->block_samples,
                  "Re-run only this many of the calibration samples in the block reruns (default "
                  "0: all; fewer is proportionally faster on large MoE layers)")
      ->check(CLI::NonNegativeNumber);
  AddSampleBlockFlag(sub, &a->sample_block);
  sub->add_flag("--no-bos", a->no_bos, "Do not prepend BOS to each document");
  a->exec.Register(sub);
  sub->add_option("--memory-budget-gb", a->memory_gb,
                  "Memory for stored activations before spilling to WORK (default 1)")
      ->check(FiniteNonNegative());
  sub->add_option("--cache-gb", a->cache_gb,
                  "Memory for one layer's quantized candidates (default 2; beyond it they are "
                  "recomputed)")
      ->check(FiniteNonNegative());
  AddJsonFlag(sub, &a->json, "summary");
  sub->callback([a, exit_code] { *exit_code = ExitCodeFor(Run(*a)); });
}

}  // namespace pq::cli
