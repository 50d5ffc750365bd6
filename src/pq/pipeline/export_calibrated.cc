#include "pq/pipeline/export_calibrated.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "pq/core/byte_blob.h"
#include "pq/core/log.h"
#include "pq/core/minifloat.h"
#include "pq/dist/block_fold.h"
#include "pq/dist/comm.h"
#include "pq/dist/share.h"
#include "pq/engine/hessian_observer.h"
#include "pq/engine/runner.h"
#include "pq/formats/act_quant.h"
#include "pq/formats/quantize_with_scales.h"
#include "pq/formats/tensor_blob.h"
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

// One Linear's quantization, as its owner rank made it (w_hat goes into the LinearWeights).
struct Quantized {
  std::vector<formats::QTensor> tensors;  // the stored tensors
  bool calibrated = false;
  double error_ratio = 1.0;
};

// A Quantized and the Linear's w_hat as the blob its owner rank broadcasts.
std::vector<std::byte> Pack(const Quantized& q, std::span<const float> w_hat) {
  BlobWriter w;
  w.Put(static_cast<uint8_t>(q.calibrated));
  w.Put(q.error_ratio);
  w.PutArray(w_hat);
  formats::PutTensors(w, q.tensors);
  return std::move(w.blob());
}

Result<Quantized> Unpack(std::span<const std::byte> blob, std::vector<float>& w_hat) {
  BlobReader r(blob);
  Quantized q;
  PQ_ASSIGN_OR_RETURN(const uint8_t calibrated, r.Get<uint8_t>());
  q.calibrated = calibrated != 0;
  PQ_ASSIGN_OR_RETURN(q.error_ratio, r.Get<double>());
  PQ_RETURN_IF_ERROR(r.GetArray(w_hat));
  PQ_RETURN_IF_ERROR(formats::GetTensors(r, q.tensors));
  if (!r.done()) return DataLoss("export: a rank's quantized Linear has trailing bytes");
  return q;
}

// The sweep hooks of the calibrated export: Observe collects H for the step's Linears that do
// not stay BF16 (unless the passes are pure RTN), Replace quantizes them in their planned
// formats, writes them, and keeps the dequantized weights (and the activation quantization)
// in place, so the next step sees the quantized prefix. Across MPI ranks every Linear that is
// not BF16 has one owner rank (dist::AssignOwners, by its estimated cost: the experts of a
// layer spread over the ranks), which quantizes it and broadcasts w_hat and the tensors; rank 0
// writes in module order, so the checkpoint is the same bytes for any number of ranks.
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
  int64_t quantized_here = 0;  // Linears (not BF16) this rank quantized
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
    if (dist::Size() == 1) {  // one at a time: no step's worth of tensors held
      for (model::LinearWeights* lw : step.linears) {
        PQ_ASSIGN_OR_RETURN(Quantized q, QuantizeOne(*lw, wgs));
        PQ_RETURN_IF_ERROR(Record(*lw, q, wgs));
      }
    } else {
      const std::vector<int> owner = Owners(step);
      std::vector<Quantized> done(step.linears.size());
      for (size_t i = 0; i < done.size(); ++i) {
        if (owner[i] >= 0 && owner[i] != dist::Rank()) continue;
        PQ_ASSIGN_OR_RETURN(done[i], QuantizeOne(*step.linears[i], wgs));
      }
      for (size_t i = 0; i < done.size(); ++i) {
        if (owner[i] < 0) continue;  // BF16: every rank rounded it itself
        std::vector<std::byte> blob;
        if (owner[i] == dist::Rank()) blob = Pack(done[i], step.linears[i]->w);
        PQ_RETURN_IF_ERROR(dist::BroadcastBlob(blob, owner[i]));
        if (owner[i] == dist::Rank()) continue;
        PQ_ASSIGN_OR_RETURN(done[i], Unpack(blob, step.linears[i]->w));
      }
      for (size_t i = 0; i < done.size(); ++i)
        PQ_RETURN_IF_ERROR(Record(*step.linears[i], done[i], wgs));
    }
    if (!step.mtp_fc) progress.Advance();
    return Status::Ok();
  }

  // The owner rank of each of the step's Linears; -1 for BF16 ones (nothing to share out).
  // Estimated cost: rows x cols for RTN, x cols more for GPTQ's column sweep.
  std::vector<int> Owners(const engine::SweepStep& step) const {
    std::vector<double> cost;
    std::vector<size_t> which;
    std::vector<int> owner(step.linears.size(), -1);
    for (size_t i = 0; i < step.linears.size(); ++i) {
      const model::LinearInfo& li = *info.at(step.linears[i]->module);
      if (plan.format.at(li.unit) == FormatId::kBF16) continue;
      const double rc = static_cast<double>(li.rows) * static_cast<double>(li.cols);
      cost.push_back(o.passes == ExportPasses::kRtn ? rc : rc * static_cast<double>(li.cols));
      which.push_back(i);
    }
    const std::vector<int> r = dist::AssignOwners(cost, dist::Size());
    for (size_t j = 0; j < which.size(); ++j) owner[which[j]] = r[j];
    return owner;
  }

  Result<formats::QuantizeOptions> QuantOptions(const model::LinearInfo& li, FormatId fmt,
                                                const std::map<std::string, float>& wgs) const {
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
    return qo;
  }

  // Quantizes `lw` in its planned format; lw.w becomes what the runtime reconstructs.
  Result<Quantized> QuantizeOne(model::LinearWeights& lw,
                                const std::map<std::string, float>& wgs) {
    const model::LinearInfo& li = *info.at(lw.module);
    const FormatId fmt = plan.format.at(li.unit);
    std::vector<float> wb(lw.w.size());
    for (size_t i = 0; i < wb.size(); ++i) wb[i] = RoundBf16(lw.w[i]);
    Quantized out;
    if (fmt == FormatId::kBF16) {
      PQ_ASSIGN_OR_RETURN(out.tensors, formats::QuantizeRtn(fmt, wb, li.rows, li.cols));
      lw.w = std::move(wb);
      return out;
    }
    PQ_ASSIGN_OR_RETURN(formats::QuantizeOptions qo, QuantOptions(li, fmt, wgs));
    ++quantized_here;
    const engine::HessianObserver::Entry* h = hobs.Find(li.module);
    quant::LinearQuantizeOptions lo{o.passes, o.min_tokens, o.gptq, qo, li.module};
    lo.gptq.factor_cache = factors.get();
    auto q = quant::QuantizeLinear(fmt, wb, li.rows, li.cols, h ? h->h : std::span<const float>(),
                                   h ? h->rows : 0, lo);
    if (!q.ok()) return q.status().WithContext(li.module);
    out.tensors = std::move(q->tensors);
    out.calibrated = q->calibrated;
    out.error_ratio = q->error_ratio;
    lw.w = std::move(q->w_hat);
    return out;
  }

  // Every rank, in step order: the counters and the activation quantization; rank 0 writes.
  Status Record(model::LinearWeights& lw, const Quantized& q,
                const std::map<std::string, float>& wgs) {
    const model::LinearInfo& li = *info.at(lw.module);
    const FormatId fmt = plan.format.at(li.unit);
    module_formats[li.module] = fmt;
    if (writer)
      PQ_RETURN_IF_ERROR(WriteLinearTensors(ckpt, li, fmt, q.tensors, "", *writer, res.summary));
    if (fmt == FormatId::kBF16) return Status::Ok();
    if (q.calibrated) {
      ++res.linears_calibrated;
      log_ratio_sum += std::log(std::max(q.error_ratio, 1e-300));
    } else {
      ++res.linears_rtn;
    }
    PQ_ASSIGN_OR_RETURN(formats::QuantizeOptions qo, QuantOptions(li, fmt, wgs));
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
  PQ_RETURN_IF_ERROR(LogRankTimes("export", start_s, "Linears quantized", lq.quantized_here));
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
