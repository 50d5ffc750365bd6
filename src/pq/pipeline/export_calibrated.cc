#include "pq/pipeline/export_calibrated.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "pq/core/log.h"
#include "pq/core/minifloat.h"
#include "pq/dist/block_fold.h"
#include "pq/dist/comm.h"
#include "pq/engine/hessian_observer.h"
#include "pq/engine/runner.h"
#include "pq/formats/act_quant.h"
#include "pq/formats/quantize_with_scales.h"
#include "pq/io/file_util.h"
#include "pq/model/decoder.h"
#include "pq/model/weights.h"
#include "pq/pipeline/checkpoint_util.h"
#include "pq/pipeline/export_common.h"
#include "pq/pipeline/export_work.h"
#include "pq/pipeline/probe_dist.h"
#include "pq/pipeline/work_dir.h"
#include "pq/quant/export_quantizer.h"

namespace pq::pipeline {
namespace {

using formats::FormatId;

// The samples the probe built its Hessians from (ReadHessianSamples: W/probe/hessian_calibration,
// or W/probe/calibration in older work dirs): the export quantizes on the same H.
Result<std::vector<engine::Sequence>> LoadSamples(const std::string& work) {
  return ReadHessianSamples(WorkDir(work));
}

// Per global-scale group of a step: the NVFP4 weight global scale from the largest bf16 amax.
std::map<std::string, float> GroupWeightScales(
    const engine::SweepStep& step, const std::map<std::string, const model::LinearInfo*>& info) {
  std::map<std::string, float> amax, out;
  for (const model::LinearWeights* l : step.linears) {
    float& a = amax[info.at(l->module)->scale_group];
    for (float v : l->w) a = std::max(a, std::fabs(RoundBf16(v)));
  }
  for (const auto& [g, a] : amax) out[g] = formats::NvFp4GlobalScale(a);
  return out;
}

// The sweep hooks of the calibrated export: Observe collects H for the step's Linears that do
// not stay BF16 (unless the passes are pure RTN), Replace quantizes them in their planned
// formats, writes them, and keeps the dequantized weights (and the activation quantization)
// in place, so the next step sees the quantized prefix.
struct LayerQuantizer : engine::SweepHooks {
  LayerQuantizer(const UnitPlan& p, const std::map<std::string, const model::LinearInfo*>& i,
                 const CalibratedExportOptions& opt, const io::CheckpointReader& c,
                 io::CheckpointWriter* w, CalibratedExportResult& r, Progress& pr)
      : plan(p), info(i), o(opt), ckpt(c), writer(w), res(r), progress(pr) {}
  const UnitPlan& plan;
  const std::map<std::string, const model::LinearInfo*>& info;
  const CalibratedExportOptions& o;
  const io::CheckpointReader& ckpt;
  io::CheckpointWriter* writer;  // rank 0's (null on the other MPI ranks: they write nothing)
  CalibratedExportResult& res;
  Progress& progress;
  BlockReduction reduce;  // the decoder layers' H, folded over sample blocks and ranks
  bool folding = false;
  std::map<std::string, FormatId> module_formats;
  double log_ratio_sum = 0;
  engine::HessianObserver hobs;
  // GPTQ factorisations of this step's H (fused siblings share one H): keyed by address, so
  // renewed with hobs.
  std::unique_ptr<quant::GptqFactorCache> factors;

  model::LinearObserver* Observe(const engine::SweepStep& step) override {
    hobs = engine::HessianObserver();
    factors = std::make_unique<quant::GptqFactorCache>();
    for (const model::LinearWeights* lw : step.linears) {
      const model::LinearInfo& li = *info.at(lw->module);
      if (plan.format.at(li.unit) != FormatId::kBF16) hobs.Want(*lw, li.scale_group);
    }
    if (o.passes == ExportPasses::kRtn) return nullptr;
    folding = true;  // every step's observe pass ends the sample blocks
    reduce.Collect([&](dist::Sums& s) { hobs.AddSums(s); });
    return &hobs;
  }

  Status Replace(const engine::SweepStep& step) override {
    if (folding) PQ_RETURN_IF_ERROR(reduce.Finish(/*everywhere=*/true));  // every rank's H
    folding = false;
    const auto wgs = GroupWeightScales(step, info);
    for (model::LinearWeights* lw : step.linears) PQ_RETURN_IF_ERROR(QuantizeOne(*lw, wgs));
    if (!step.mtp_fc) progress.Advance();
    return Status::Ok();
  }

  Status QuantizeOne(model::LinearWeights& lw, const std::map<std::string, float>& wgs) {
    const model::LinearInfo& li = *info.at(lw.module);
    const FormatId fmt = plan.format.at(li.unit);
    std::vector<float> wb(lw.w.size());
    for (size_t i = 0; i < wb.size(); ++i) wb[i] = RoundBf16(lw.w[i]);
    module_formats[li.module] = fmt;
    if (fmt == FormatId::kBF16) {
      PQ_ASSIGN_OR_RETURN(auto t, formats::QuantizeRtn(fmt, wb, li.rows, li.cols));
      lw.w = std::move(wb);
      return writer ? WriteLinearTensors(ckpt, li, fmt, t, "", *writer, res.summary) : Status::Ok();
    }
    formats::QuantizeOptions qo;
    qo.num_threads = ExecThreads();
    if (fmt == FormatId::kNVFP4 || fmt == FormatId::kNVFP4A16)
      qo.weight_global_scale = wgs.at(li.scale_group);
    if (fmt == FormatId::kNVFP4) {
      const auto a = plan.input_amax.find(li.scale_group);
      if (a == plan.input_amax.end())
        return InvalidArgument(li.module + ": NVFP4 needs the calibrated input amax (probe)");
      qo.input_global_scale = formats::NvFp4InputGlobalScale(a->second);
    }
    const engine::HessianObserver::Entry* h = hobs.Find(li.module);
    quant::LinearQuantizeOptions lo{o.passes, o.min_tokens, o.gptq, qo, li.module};
    lo.gptq.factor_cache = factors.get();
    auto q = quant::QuantizeLinear(fmt, wb, li.rows, li.cols, h ? h->h : std::span<const float>(),
                                   h ? h->rows : 0, lo);
    if (!q.ok()) return q.status().WithContext(li.module);
    if (writer)
      PQ_RETURN_IF_ERROR(WriteLinearTensors(ckpt, li, fmt, q->tensors, "", *writer, res.summary));
    if (q->calibrated) {
      ++res.linears_calibrated;
      log_ratio_sum += std::log(std::max(q->error_ratio, 1e-300));
    } else {
      ++res.linears_rtn;
    }
    lw.w = std::move(q->w_hat);
    lw.act_format = fmt;
    lw.input_global_scale = qo.input_global_scale;
    return Status::Ok();
  }
};

}  // namespace

Result<CalibratedExportResult> ExportCalibrated(const CalibratedExportOptions& o) {
  const double start_s = NowSeconds();
  ScopedExecContext exec_scope(o.exec);
  PQ_RETURN_IF_ERROR(io::CheckOutputOutsideInputs(o.out, {o.model, o.work}));
  PQ_ASSIGN_OR_RETURN(UnitPlan plan, PlanFromWork(o.model, o.work));
  PQ_ASSIGN_OR_RETURN(std::vector<engine::Sequence> samples, LoadSamples(o.work));
  PQ_ASSIGN_OR_RETURN(auto src, model::WeightSource::Open(o.model));
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(o.model));
  PQ_ASSIGN_OR_RETURN(nlohmann::json config, model::ReadConfig(o.model));
  const model::ModelLayout& layout = src->layout();
  const model::ModelConfig& c = src->config();
  std::map<std::string, const model::LinearInfo*> info;
  for (const auto& li : layout.linears) info[li.module] = &li;

  io::WriterOptions wo;
  wo.max_shard_bytes = o.write.max_shard_bytes;
  wo.overwrite = o.write.overwrite;
  std::unique_ptr<io::CheckpointWriter> writer;  // rank 0 writes
  if (dist::Rank() == 0) {
    PQ_ASSIGN_OR_RETURN(writer, io::CheckpointWriter::Create(o.out, wo));
  }
  // Across MPI ranks each runs its whole blocks of the probe's samples (its --sample-block).
  PQ_ASSIGN_OR_RETURN(ProbeFile probe, ReadProbeFile(WorkDir(o.work)));
  const int64_t block = probe.inputs.value("sample_block", int64_t{0});
  PQ_ASSIGN_OR_RETURN(
      dist::SampleRange range,
      dist::RankSamples(static_cast<int64_t>(samples.size()), block, dist::Rank(), dist::Size()));

  CalibratedExportResult res;
  res.summary.out_dir = o.out;
  Progress progress(std::string("export ") + ExportPassesName(o.passes),
                    static_cast<size_t>(c.num_layers + layout.mtp_layers));
  LayerQuantizer lq(plan, info, o, *ckpt, writer.get(), res, progress);
  engine::RunnerOptions ro;
  ro.batch_tokens = o.batch_tokens;
  ro.progress = false;
  ro.sample_block = block;
  ro.first_sample = range.first;
  ro.on_block_end = lq.reduce.Hook();
  engine::Runner runner(*src,
                        std::span(samples).subspan(static_cast<size_t>(range.first),
                                                   static_cast<size_t>(range.count)),
                        ro);
  PQ_RETURN_IF_ERROR(runner.Forward(/*keep_all=*/false, nullptr, &lq));
  if (layout.has_mtp()) PQ_RETURN_IF_ERROR(runner.MtpForward(lq));
  progress.Finish();
  PQ_RETURN_IF_ERROR(LogRankTimes("export", start_s));
  if (!writer) return res;  // not rank 0
  // lm_head in its fixed format (RTN; its inputs are the final norm's outputs).
  for (const auto& li : layout.linears) {
    if (!li.is_lm_head && !li.is_visual) continue;  // vision: fixed format, by RTN
    const FormatId fmt = plan.format.at(li.unit);
    lq.module_formats[li.module] = fmt;
    if (li.tied && fmt == FormatId::kBF16) {
      res.summary.linears.push_back({"lm_head", fmt, li.rows * li.cols, 0, ""});
      continue;
    }
    PQ_ASSIGN_OR_RETURN(std::vector<float> v, model::ReadDenseLinear(*ckpt, li));
    for (float& x : v) x = RoundBf16(x);
    formats::QuantizeOptions qo;
    qo.num_threads = ExecThreads();
    if (fmt == FormatId::kNVFP4) {
      qo.input_global_scale = formats::NvFp4InputGlobalScale(plan.input_amax.at(li.scale_group));
    }
    PQ_ASSIGN_OR_RETURN(auto t, formats::QuantizeRtn(fmt, v, li.rows, li.cols, qo));
    PQ_RETURN_IF_ERROR(WriteLinearTensors(*ckpt, li, fmt, t, "", *writer, res.summary));
  }
  if (res.linears_calibrated > 0)
    res.error_ratio_geomean =
        std::exp(lq.log_ratio_sum / static_cast<double>(res.linears_calibrated));
  PQ_RETURN_IF_ERROR(
      FinishCheckpoint(o.model, *ckpt, layout, config, lq.module_formats, *writer, res.summary));
  return res;
}

}  // namespace pq::pipeline
