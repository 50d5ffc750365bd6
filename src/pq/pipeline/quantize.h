// `prismaquant quantize`: probe → allocate → export in one command, reusing the work dir
// when its inputs match (a finished probe is not redone; an interrupted one resumes). The
// model card OUT/README.md is written by the caller (report::WriteModelCard).
#pragma once

#include <optional>
#include <string>

#include "pq/core/exec_context.h"
#include "pq/core/status.h"
#include "pq/engine/eval.h"
#include "pq/pipeline/allocate.h"
#include "pq/pipeline/export_calibrated.h"
#include "pq/pipeline/export_uniform.h"
#include "pq/pipeline/probe.h"

namespace pq::pipeline {

struct QuantizeOptions {
  ProbeOptions probe;        // model, work, calibration, formats
  AllocateOptions allocate;  // target, cost, lm_head (work is set from probe.work)
  std::string out;
  ExportWriteOptions write;
  ExportPasses passes = ExportPasses::kSearchGptq;
  std::string eval_text;  // optional: measure NLL / KL of OUT against the model
  EvalInput eval_input;
  engine::EvalOptions eval;
  // Threads, progress, log level for the whole pipeline (the stages' own `exec` is ignored).
  ExecContext exec;
};

struct QuantizeResult {
  ProbeSummary probe;
  AllocateResult allocation;
  ExportSummary exported;
  double error_ratio_geomean = 1.0;  // export's output error vs RTN (geometric mean)
  std::optional<engine::EvalResult> eval_base, eval_out;  // with --eval

  // {out, work, passes (of o), bits_per_param, total_bytes, predicted_dloss,
  //  error_ratio_vs_rtn_geomean, params_per_format, eval (with --eval)}
  nlohmann::json ToJson(const QuantizeOptions& o) const;
};

Result<QuantizeResult> Quantize(const QuantizeOptions& o);

}  // namespace pq::pipeline
