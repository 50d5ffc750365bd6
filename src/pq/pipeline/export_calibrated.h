// `prismaquant export MODEL --work W -o OUT --passes P`: the calibrated export (DESIGN §2
// pass 2). One streaming forward pass over the probe's calibration samples, layer by layer:
// each layer's inputs come from the already-quantized previous layers; its Linears'
// H = XᵀX is accumulated from those inputs (for an expert, from the tokens routed to it),
// each Linear is quantized in its allocated format by the chosen passes, the layer's
// quantized weights (and run-time activation quantization) then produce the next layer's
// inputs. Each Linear is quantized by quant::QuantizeLinear (quant/export_quantizer.h: the
// passes, and RTN for a Linear with fewer than `min_tokens` calibration rows) — the function
// the probe prices candidates with.
#pragma once

#include <string>

#include "pq/core/exec_context.h"
#include "pq/core/status.h"
#include "pq/pipeline/export_uniform.h"
#include "pq/quant/export_quantizer.h"
#include "pq/quant/gptq.h"

namespace pq::pipeline {

using ExportPasses = quant::Passes;
inline Result<ExportPasses> ParseExportPasses(const std::string& name) {
  return quant::ParsePasses(name);
}
inline const char* ExportPassesName(ExportPasses p) { return quant::PassesName(p); }

struct CalibratedExportOptions {
  std::string model, work, out;
  ExportWriteOptions write;
  ExportPasses passes = ExportPasses::kSearchGptq;
  int64_t min_tokens = 32;
  quant::GptqOptions gptq;
  int64_t batch_tokens = 4096;  // calibration tokens run through a layer at once
  ExecContext exec;             // threads, progress, log level: installed for the call
};

struct CalibratedExportResult {
  ExportSummary summary;
  // Per quantized Linear: output error tr(ΔW H ΔWᵀ) of the written weights / that of RTN,
  // on the export's own H. Geometric mean over the Linears (1 for pure RTN).
  double error_ratio_geomean = 1.0;
  int64_t linears_calibrated = 0, linears_rtn = 0;  // rtn: too few tokens or fallback

  // The summary's JSON + passes (of o), error_ratio_vs_rtn_geomean, linears_calibrated/_rtn.
  nlohmann::json ToJson(const CalibratedExportOptions& o) const;
};

Result<CalibratedExportResult> ExportCalibrated(const CalibratedExportOptions& o);

}  // namespace pq::pipeline
