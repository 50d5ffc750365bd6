#include "pq/pipeline/export_uniform.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "pq/core/log.h"
#include "pq/core/minifloat.h"
#include "pq/formats/act_quant.h"
#include "pq/formats/compressed_tensors.h"
#include "pq/io/file_util.h"
#include "pq/io/safetensors.h"
#include "pq/model/arch.h"
#include "pq/model/weights.h"
#include "pq/pipeline/checkpoint_util.h"
#include "pq/pipeline/export_common.h"

namespace pq::pipeline {
namespace {

using formats::FormatId;

Status RefuseCalibratedFormat(FormatId id, const char* flag) {
  if (!formats::Spec(id).needs_calibration) return Status::Ok();
  return InvalidArgument(
      std::string(flag) + " " + std::string(formats::Spec(id).name) +
      ": NVFP4 (W4A4) quantizes activations at run time and needs a calibrated "
      "input_global_scale, which a data-free export cannot measure. Use NVFP4A16 (the same "
      "NVFP4 weights, bf16 activations) now, or the calibrated pipeline (`prismaquant quantize`, "
      "not in this version yet) for W4A4.");
}

// The format each Linear gets: the requested one, unless some member of its decision unit
// cannot hold it, in which case the whole unit stays BF16 (vLLM fuses the unit).
std::map<std::string, std::string> ChooseUnitFallbacks(const model::ModelLayout& layout,
                                                       const UniformExportOptions& o,
                                                       std::map<std::string, FormatId>* unit_fmt) {
  std::map<std::string, std::string> reasons;
  for (const auto& li : layout.linears) {
    const FormatId want = li.is_lm_head ? o.lm_head : li.is_visual ? o.visual : o.format;
    auto [it, inserted] = unit_fmt->emplace(li.unit, want);
    if (it->second == FormatId::kBF16) continue;
    Status s = formats::CheckShape(want, li.rows, li.cols);
    if (!s.ok()) {
      it->second = FormatId::kBF16;
      reasons[li.unit] = li.module == li.unit ? s.message() : li.module + ": " + s.message();
    }
  }
  return reasons;
}

float AbsMax(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

struct UnitWeights {
  std::vector<const model::LinearInfo*> members;
  std::vector<std::vector<float>> weights;
};

// Quantizes and writes the Linears of one decision unit. Members of one global-scale group
// share the NVFP4 weight global scale (from their largest amax) and the input global scale.
Status WriteUnit(const io::CheckpointReader& ckpt, const UnitWeights& unit, FormatId fmt,
                 const std::string& fallback, const std::map<std::string, float>& input_amax,
                 int num_threads, io::CheckpointWriter& w, ExportSummary& summary) {
  std::map<std::string, float> group_amax;
  for (size_t i = 0; i < unit.members.size(); ++i) {
    float& a = group_amax[unit.members[i]->scale_group];
    a = std::max(a, AbsMax(unit.weights[i]));
  }
  for (size_t i = 0; i < unit.members.size(); ++i) {
    const model::LinearInfo& li = *unit.members[i];
    const std::string module = li.module;
    formats::QuantizeOptions qo;
    qo.num_threads = num_threads;
    if (fmt == FormatId::kNVFP4A16 || fmt == FormatId::kNVFP4)
      qo.weight_global_scale = formats::NvFp4GlobalScale(group_amax.at(li.scale_group));
    if (fmt == FormatId::kNVFP4) {
      const auto a = input_amax.find(li.scale_group);
      if (a == input_amax.end())
        return InvalidArgument(module + ": NVFP4 needs the calibrated input amax (probe)");
      qo.input_global_scale = formats::NvFp4InputGlobalScale(a->second);
    }
    auto q = formats::QuantizeRtn(fmt, unit.weights[i], li.rows, li.cols, qo);
    if (!q.ok()) return q.status().WithContext(module);
    PQ_RETURN_IF_ERROR(WriteLinearTensors(ckpt, li, fmt, *q, fallback, w, summary));
  }
  return Status::Ok();
}

}  // namespace

Status WriteOtherTensors(const io::CheckpointReader& ckpt, const model::ModelLayout& layout,
                         io::CheckpointWriter& w) {
  std::set<std::string> biases;
  for (const auto& li : layout.linears)
    if (li.has_bias) biases.insert(li.module + ".bias");
  for (const auto& name : layout.other_tensors) {
    if (biases.count(name)) continue;  // written with its Linear
    PQ_ASSIGN_OR_RETURN(const io::TensorInfo* t, ckpt.Get(name));
    if (IsFloatingPoint(t->dtype) && t->dtype != DType::kBF16) {
      PQ_ASSIGN_OR_RETURN(std::vector<float> v, ReadAsBf16Values(*t));
      PQ_RETURN_IF_ERROR(AddBf16Tensor(w, name, t->shape, v));
    } else {
      PQ_RETURN_IF_ERROR(io::CheckFiniteTensor(*t));  // BF16: copied as stored
      PQ_RETURN_IF_ERROR(w.AddTensor(name, t->dtype, t->shape, t->bytes));
    }
  }
  return Status::Ok();
}

Status WriteLinearTensors(const io::CheckpointReader& ckpt, const model::LinearInfo& li,
                          FormatId fmt, const std::vector<formats::QTensor>& tensors,
                          const std::string& fallback, io::CheckpointWriter& w,
                          ExportSummary& summary) {
  ExportedLinear e{li.module, fmt, li.rows * li.cols, 0, fallback};
  for (const auto& t : tensors) {
    PQ_RETURN_IF_ERROR(w.AddTensor(li.module + "." + t.suffix, t.dtype, t.shape, t.bytes));
    e.bytes += t.bytes.size();
  }
  if (li.has_bias) {
    PQ_ASSIGN_OR_RETURN(const io::TensorInfo* b, ckpt.Get(li.module + ".bias"));
    PQ_ASSIGN_OR_RETURN(std::vector<float> bv, ReadAsBf16Values(*b));
    PQ_RETURN_IF_ERROR(AddBf16Tensor(w, li.module + ".bias", b->shape, bv));
  }
  summary.linears.push_back(std::move(e));
  return Status::Ok();
}

Status FinishCheckpoint(const std::string& model_dir, const io::CheckpointReader& ckpt,
                        const model::ModelLayout& layout, nlohmann::json config,
                        const std::map<std::string, FormatId>& module_formats,
                        io::CheckpointWriter& w, ExportSummary& summary) {
  PQ_RETURN_IF_ERROR(WriteOtherTensors(ckpt, layout, w));
  // Untie only when the head is really written on its own (not when it stays BF16).
  const auto head = module_formats.find("lm_head");
  if (layout.tie_word_embeddings && head != module_formats.end() && head->second != FormatId::kBF16)
    config["tie_word_embeddings"] = false;
  config["quantization_config"] =
      formats::QuantizationConfig(module_formats, layout.always_ignored);
  SetBf16Dtype(config);
  PQ_RETURN_IF_ERROR(w.AddFile("config.json", config.dump(2) + "\n"));
  PQ_RETURN_IF_ERROR(CopyNonWeightFiles(model_dir, w));
  summary.total_bytes = w.total_tensor_bytes();
  for (const auto& n : ckpt.names()) summary.total_params += ckpt.Find(n)->numel();
  return w.Commit();
}

Result<ExportSummary> ExportUnits(const std::string& model_dir, const std::string& out_dir,
                                  const UnitPlan& plan, const ExportWriteOptions& o) {
  PQ_RETURN_IF_ERROR(io::CheckOutputOutsideInputs(out_dir, {model_dir}));
  // The one config-vs-tensors validation every command shares (WeightSource::Open).
  PQ_RETURN_IF_ERROR(model::WeightSource::Open(model_dir).status());
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(model_dir));
  PQ_ASSIGN_OR_RETURN(nlohmann::json config, model::ReadConfig(model_dir));
  PQ_ASSIGN_OR_RETURN(model::ModelLayout layout, model::ResolveLayout(config, *ckpt));
  for (const auto& li : layout.linears)
    if (!plan.format.count(li.unit))
      return InvalidArgument("no format planned for " + li.module + " (unit " + li.unit + ")");

  io::WriterOptions wo;
  wo.max_shard_bytes = o.max_shard_bytes;
  wo.overwrite = o.overwrite;
  PQ_ASSIGN_OR_RETURN(auto writer, io::CheckpointWriter::Create(out_dir, wo));

  ExportSummary summary;
  summary.out_dir = out_dir;
  std::map<std::string, UnitWeights> units;  // filled in layout order, flushed when complete
  std::map<std::string, size_t> remaining;
  for (const auto& li : layout.linears) ++remaining[li.unit];
  std::map<std::string, FormatId> module_formats;
  Progress progress("export", layout.linears.size());
  for (const auto& li : layout.linears) {
    PQ_ASSIGN_OR_RETURN(std::vector<float> values, model::ReadDenseLinear(*ckpt, li));
    for (float& x : values) x = RoundBf16(x);
    const FormatId fmt = plan.format.at(li.unit);
    UnitWeights& u = units[li.unit];
    u.members.push_back(&li);
    u.weights.push_back(std::move(values));
    if (--remaining[li.unit] > 0) continue;
    const auto fb = plan.fallback.find(li.unit);
    const std::string why = fb == plan.fallback.end() ? "" : fb->second;
    if (li.tied && fmt == FormatId::kBF16) {  // tied head stays the embedding
      // Tied and BF16 by choice is not a fallback; a head whose shape refused the format is.
      summary.linears.push_back(
          {"lm_head", fmt, li.rows * li.cols, 0, why.empty() ? "" : why + " (stays tied)"});
      module_formats["lm_head"] = fmt;
    } else {
      PQ_RETURN_IF_ERROR(
          WriteUnit(*ckpt, u, fmt, why, plan.input_amax, ExecThreads(), *writer, summary));
      for (const auto* m : u.members) module_formats[m->module] = fmt;
    }
    const size_t done = u.members.size();
    units.erase(li.unit);
    progress.Advance(done);
  }
  progress.Finish();
  PQ_RETURN_IF_ERROR(
      FinishCheckpoint(model_dir, *ckpt, layout, config, module_formats, *writer, summary));
  return summary;
}

Result<ExportSummary> ExportUniform(const std::string& model_dir, const std::string& out_dir,
                                    const UniformExportOptions& o) {
  ScopedExecContext exec_scope(o.exec);
  PQ_RETURN_IF_ERROR(RefuseCalibratedFormat(o.format, "--uniform"));
  PQ_RETURN_IF_ERROR(RefuseCalibratedFormat(o.lm_head, "--lm-head"));
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(model_dir));
  PQ_ASSIGN_OR_RETURN(nlohmann::json config, model::ReadConfig(model_dir));
  PQ_ASSIGN_OR_RETURN(model::ModelLayout layout, model::ResolveLayout(config, *ckpt));
  UnitPlan plan;
  plan.fallback = ChooseUnitFallbacks(layout, o, &plan.format);
  for (const auto& [unit, why] : plan.fallback) LogWarning("keeping " + unit + " in BF16: " + why);
  return ExportUnits(model_dir, out_dir, plan, o.write);
}

}  // namespace pq::pipeline
