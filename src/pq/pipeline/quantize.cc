#include "pq/pipeline/quantize.h"

#include <filesystem>

#include "pq/core/log.h"
#include "pq/dist/comm.h"
#include "pq/io/file_util.h"
#include "pq/model/weights.h"
#include "pq/pipeline/work_dir.h"
#include "pq/quant/cost.h"

namespace pq::pipeline {
namespace {

// A work dir that already holds a probe (or its start) made with every lm_head format, e.g. by
// `probe`: reused as it is instead of refused for differing inputs.
// The inputs of an earlier probe in `work` (null: none): a work dir probed before an option
// existed is reused with that option as it was then.
nlohmann::json EarlierInputs(const std::string& work) {
  const WorkDir w(work);
  if (!std::filesystem::exists(w.inputs_json())) return nullptr;
  auto text = io::ReadFileToString(w.inputs_json());
  if (!text.ok()) return nullptr;
  const auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("inputs") || !j["inputs"].is_object()) return nullptr;
  return j["inputs"];
}

}  // namespace

Result<QuantizeResult> Quantize(const QuantizeOptions& o) {
  ScopedExecContext exec_scope(o.exec);
  QuantizeResult r;
  // Everything that can be checked before the probe (hours on a real model) is checked first.
  if (o.out.empty()) return InvalidArgument("quantize needs -o OUT");
  PQ_RETURN_IF_ERROR(ValidateAllocateOptions(o.allocate));
  PQ_RETURN_IF_ERROR(io::CheckOutputLocation(o.out, o.write.overwrite));
  PQ_RETURN_IF_ERROR(io::CheckOutputOutsideInputs(o.out, {o.probe.model, o.probe.work}));
  if (o.allocate.target_size) {  // a size below the tensors outside the Linears cannot be met
    PQ_ASSIGN_OR_RETURN(auto src, model::WeightSource::Open(o.probe.model));
    PQ_ASSIGN_OR_RETURN(const uint64_t other, OtherTensorBytes(o.probe.model, src->layout()));
    if (*o.allocate.target_size - o.allocate.kv_reserve <= other)
      return InvalidArgument("--target-size " + std::to_string(*o.allocate.target_size) +
                             " bytes (less --kv-reserve) is not above the " +
                             std::to_string(other) +
                             " bytes of tensors outside the Linears (embeddings, norms, ...)");
  }
  LogInfo("[1/3] probe");
  ProbeOptions po = o.probe;
  const nlohmann::json before = EarlierInputs(po.work);
  PQ_RETURN_IF_ERROR(dist::Barrier());  // every MPI rank read it before rank 0 writes there
  if (po.lm_head_formats.empty() && (before.is_null() || before.contains("lm_head_formats")))
    po.lm_head_formats = {o.allocate.lm_head};  // the only lm_head format export writes
  // Per-token errors only where the allocation's estimator needs them (output, token): the
  // other prices come from each Linear's H at a fraction of the matmuls.
  if (before.is_null() || before.contains("estimators"))
    po.per_token = quant::NeedsPerTokenError(o.allocate.cost);
  PQ_ASSIGN_OR_RETURN(r.probe, RunProbe(po));
  LogInfo("[2/3] allocate");
  AllocateOptions a = o.allocate;
  a.work = o.probe.work;
  if (dist::Rank() == 0) {  // one process allocates and writes the plan the export reads
    PQ_ASSIGN_OR_RETURN(r.allocation, Allocate(a));
  }
  PQ_RETURN_IF_ERROR(dist::Barrier());
  LogInfo("[3/3] export");
  CalibratedExportOptions e;
  e.model = o.probe.model;
  e.work = o.probe.work;
  e.out = o.out;
  e.write = o.write;
  e.passes = o.passes;
  PQ_ASSIGN_OR_RETURN(CalibratedExportResult ex, ExportCalibrated(e));
  r.exported = std::move(ex.summary);
  r.error_ratio_geomean = ex.error_ratio_geomean;
  PQ_RETURN_IF_ERROR(dist::Barrier());  // rank 0 has written the checkpoint
  if (!o.eval_text.empty()) {           // before the card, which reports it
    EvalInput in = o.eval_input;
    in.text_file = o.eval_text;
    PQ_ASSIGN_OR_RETURN(auto docs, LoadEvalDocuments(o.probe.model, in));
    engine::EvalOptions ev = o.eval;
    PQ_ASSIGN_OR_RETURN(r.eval_base, engine::Evaluate(o.probe.model, docs, ev));
    ev.reference = o.probe.model;
    PQ_ASSIGN_OR_RETURN(r.eval_out, engine::Evaluate(o.out, docs, ev));
  }
  return r;
}

}  // namespace pq::pipeline
