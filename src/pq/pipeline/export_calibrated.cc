#include "pq/pipeline/export_calibrated.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <functional>

#include "pq/compute/ops.h"
#include "pq/core/log.h"
#include "pq/core/minifloat.h"
#include "pq/engine/runner.h"
#include "pq/formats/act_quant.h"
#include "pq/formats/quantize_with_scales.h"
#include "pq/model/decoder.h"
#include "pq/model/weights.h"
#include "pq/pipeline/checkpoint_util.h"
#include "pq/pipeline/export_common.h"
#include "pq/pipeline/export_work.h"
#include "pq/quant/scale_search.h"

namespace pq::pipeline {
namespace {

using formats::FormatId;

// The probe's calibration samples (W/probe/calibration: I32 ids / targets [N, T]).
Result<std::vector<engine::Sequence>> LoadSamples(const std::string& work) {
  const std::string dir = work + "/probe/calibration";
  PQ_ASSIGN_OR_RETURN(auto r, io::CheckpointReader::Open(dir));
  const io::TensorInfo* ids = r->Find("ids");
  if (!ids || ids->dtype != DType::kI32 || ids->shape.size() != 2)
    return DataLoss(dir + " has no I32 ids [samples, seqlen]; re-run the probe");
  const int64_t n = ids->shape[0], t = ids->shape[1];
  std::vector<engine::Sequence> out(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) {
    auto& q = out[static_cast<size_t>(s)];
    q.ids.resize(static_cast<size_t>(t));
    std::memcpy(q.ids.data(), ids->bytes.data() + s * t * 4, static_cast<size_t>(t) * 4);
  }
  return out;
}

// Σ XᵀX per Linear from its forward inputs (routed rows for experts). Linears of one
// global-scale group (q/k/v, in_proj_qkv/z, in_proj_b/a, an expert's gate/up, ...) read the
// same input, so they share one H (the group's first registered member accumulates it): at
// Qwen3.6 size this halves the experts' 256 x 2 Hessians of 2048^2.
class HessianObserver : public model::LinearObserver {
 public:
  void Want(const model::LinearWeights& l, const std::string& group) {
    group_of_[l.module] = group;
    if (h_.count(group)) return;
    leader_[l.module] = true;
    auto& h = h_[group];
    h.h.assign(static_cast<size_t>(l.cols * l.cols), 0.0f);
    h.rows = 0;
  }
  void OnLinear(const model::LinearWeights&, std::span<const float>, std::span<const float>,
                int64_t) override {}
  void OnLinearInput(const model::LinearWeights& l, std::span<const float> x,
                     int64_t rows) override {
    if (!leader_.count(l.module) || rows == 0) return;
    Entry& e = h_.at(group_of_.at(l.module));
    compute::cpu::MatMulBackward(x.first(static_cast<size_t>(rows * l.cols)), x, {}, {}, e.h, {},
                                 rows, l.cols, l.cols);
    e.rows += rows;
  }
  struct Entry {
    std::vector<float> h;  // [K, K]
    int64_t rows = 0;
  };
  // The H of `module` (nullptr if not wanted).
  const Entry* Find(const std::string& module) const {
    const auto g = group_of_.find(module);
    return g == group_of_.end() ? nullptr : &h_.at(g->second);
  }

 private:
  std::map<std::string, Entry> h_;                // by group
  std::map<std::string, std::string> group_of_;   // module -> group
  std::map<std::string, bool> leader_;            // modules that accumulate their group's H
};

struct Batches {
  std::vector<std::vector<int64_t>> lens;
  std::vector<size_t> offset;  // first token row of each batch
  int64_t total = 0, max_len = 0;
};

Batches MakeBatches(const std::vector<engine::Sequence>& seqs, int64_t batch_tokens) {
  Batches b;
  int64_t cur = 0;
  for (const auto& s : seqs) {
    const auto t = static_cast<int64_t>(s.ids.size());
    if (b.lens.empty() || cur + t > batch_tokens) {
      b.lens.emplace_back();
      b.offset.push_back(static_cast<size_t>(b.total));
      cur = 0;
    }
    b.lens.back().push_back(t);
    cur += t;
    b.total += t;
    b.max_len = std::max(b.max_len, t);
  }
  return b;
}

// diag(H) [K] of H [K, K].
std::vector<float> Diagonal(const std::vector<float>& h, int64_t k) {
  std::vector<float> d(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) d[static_cast<size_t>(i)] = h[static_cast<size_t>(i * k + i)];
  return d;
}

struct Quantized {
  std::vector<formats::QTensor> tensors;
  std::vector<float> w_hat;
  double error_ratio = 1.0;
  bool calibrated = false;
};

// One Linear in `fmt` by the chosen passes; w: bf16 values [N, K].
Result<Quantized> QuantizeLinear(FormatId fmt, const std::vector<float>& w, int64_t n, int64_t k,
                                 const HessianObserver::Entry* h,
                                 const CalibratedExportOptions& o, formats::QuantizeOptions qo,
                                 const std::string& module) {
  Quantized q;
  PQ_ASSIGN_OR_RETURN(q.tensors, formats::QuantizeRtn(fmt, w, n, k, qo));
  PQ_ASSIGN_OR_RETURN(q.w_hat, formats::Dequantize(fmt, formats::Views(q.tensors), n, k));
  if (o.passes == ExportPasses::kRtn) return q;
  if (!h || h->rows < o.min_tokens) {
    LogInfo(module + ": " + std::to_string(h ? h->rows : 0) + " calibration rows (< " +
            std::to_string(o.min_tokens) + "), quantized by RTN");
    return q;
  }
  const double rtn_error = quant::OutputError(w, q.w_hat, h->h, n, k);
  std::vector<float> scales;
  if (o.passes == ExportPasses::kSearch || o.passes == ExportPasses::kSearchGptq) {
    const auto views = formats::Views(q.tensors);
    PQ_ASSIGN_OR_RETURN(auto s, quant::ScaleSearch(fmt, w, views, Diagonal(h->h, k), n, k));
    q.tensors = std::move(s.tensors);
    q.w_hat = std::move(s.w_hat);
    if (o.passes == ExportPasses::kSearchGptq) {
      PQ_ASSIGN_OR_RETURN(auto codes, formats::UnpackCodes(fmt, formats::Views(q.tensors), n, k));
      scales = std::move(codes.scales);
    }
  }
  if (o.passes == ExportPasses::kGptq || o.passes == ExportPasses::kSearchGptq ||
      o.passes == ExportPasses::kGptqSearch) {
    quant::GptqOptions g = o.gptq;
    g.weight_global_scale = qo.weight_global_scale;
    g.input_global_scale = qo.input_global_scale;
    g.num_threads = qo.num_threads;
    g.scales = std::move(scales);
    PQ_ASSIGN_OR_RETURN(auto r, quant::GptqQuantize(fmt, w, h->h, n, k, g));
    if (!r.fallback.ok()) {
      LogWarning(module + ": GPTQ fell back to RTN: " + r.fallback.message());
      return q;
    }
    q.tensors = std::move(r.tensors);
    q.w_hat = std::move(r.w_hat);
  }
  if (o.passes == ExportPasses::kGptqSearch) {
    const auto views = formats::Views(q.tensors);
    PQ_ASSIGN_OR_RETURN(auto s, quant::ScaleSearch(fmt, w, views, Diagonal(h->h, k), n, k));
    q.tensors = std::move(s.tensors);
    q.w_hat = std::move(s.w_hat);
  }
  q.calibrated = true;
  const double err = quant::OutputError(w, q.w_hat, h->h, n, k);
  q.error_ratio = rtn_error > 0 ? err / rtn_error : 1.0;
  return q;
}

}  // namespace

Result<ExportPasses> ParseExportPasses(const std::string& name) {
  if (name == "rtn") return ExportPasses::kRtn;
  if (name == "gptq") return ExportPasses::kGptq;
  if (name == "search") return ExportPasses::kSearch;
  if (name == "search+gptq") return ExportPasses::kSearchGptq;
  if (name == "gptq+search") return ExportPasses::kGptqSearch;
  return InvalidArgument("--passes must be rtn, gptq, search, search+gptq or gptq+search (got \"" +
                         name + "\")");
}

const char* ExportPassesName(ExportPasses p) {
  switch (p) {
    case ExportPasses::kRtn:
      return "rtn";
    case ExportPasses::kGptq:
      return "gptq";
    case ExportPasses::kSearch:
      return "search";
    case ExportPasses::kSearchGptq:
      return "search+gptq";
    case ExportPasses::kGptqSearch:
      return "gptq+search";
  }
  return "?";
}

namespace {

// Per global-scale group: the NVFP4 weight global scale from the largest bf16 amax.
std::map<std::string, float> GroupWeightScales(const model::LayerWeights& w,
                                               const std::map<std::string, const model::LinearInfo*>& info) {
  std::map<std::string, float> amax, out;
  model::ForEachLinear(w, [&](const model::LinearWeights& l) {
    float& a = amax[info.at(l.module)->scale_group];
    for (float v : l.w) a = std::max(a, std::fabs(RoundBf16(v)));
  });
  for (const auto& [g, a] : amax) out[g] = formats::NvFp4GlobalScale(a);
  return out;
}

// The NVFP4 weight global scale of one Linear on its own (bf16 amax).
float GroupScaleOf(const model::LinearWeights& l) {
  float a = 0;
  for (float v : l.w) a = std::max(a, std::fabs(RoundBf16(v)));
  return formats::NvFp4GlobalScale(a);
}

// Runs every batch of `h` [T, D] through layer `w` into `next` (and the observer).
void RunLayer(const model::ModelConfig& c, const model::LayerWeights& w,
              const model::RopeCache& rope, const Batches& b, const std::vector<float>& h,
              std::vector<float>& next, model::LinearObserver* obs) {
  const auto d = static_cast<size_t>(c.hidden);
  for (size_t i = 0; i < b.lens.size(); ++i) {
    int64_t t = 0;
    for (int64_t l : b.lens[i]) t += l;
    const size_t off = b.offset[i] * d, n = static_cast<size_t>(t) * d;
    model::DecoderLayerForward(c, w, rope, std::span(h).subspan(off, n),
                               std::span(next).subspan(off, n), b.lens[i], nullptr, obs);
  }
}

// Quantizes Linears in their planned formats with the chosen passes, writes them, and keeps
// the dequantized weights in place (so the next layer sees the quantized prefix).
struct LayerQuantizer {
  const UnitPlan& plan;
  const std::map<std::string, const model::LinearInfo*>& info;
  const CalibratedExportOptions& o;
  const io::CheckpointReader& ckpt;
  io::CheckpointWriter& writer;
  CalibratedExportResult& res;
  std::map<std::string, FormatId> module_formats;
  double log_ratio_sum = 0;

  // Collect H for `lw` unless it stays BF16.
  void Want(const model::LinearWeights& lw, HessianObserver& hobs) const {
    const model::LinearInfo& li = *info.at(lw.module);
    if (plan.format.at(li.unit) != FormatId::kBF16) hobs.Want(lw, li.scale_group);
  }

  Status QuantizeLayer(model::LayerWeights& w, HessianObserver& hobs) {
    const auto wgs = GroupWeightScales(w, info);
    Status status = Status::Ok();
    model::ForEachLinear(w, [&](model::LinearWeights& lw) {
      if (status.ok()) status = QuantizeOne(lw, hobs, wgs);
    });
    return status;
  }

  Status QuantizeOne(model::LinearWeights& lw, HessianObserver& hobs,
                     const std::map<std::string, float>& wgs) {
    const model::LinearInfo& li = *info.at(lw.module);
    const FormatId fmt = plan.format.at(li.unit);
    std::vector<float> wb(lw.w.size());
    for (size_t i = 0; i < wb.size(); ++i) wb[i] = RoundBf16(lw.w[i]);
    module_formats[li.module] = fmt;
    if (fmt == FormatId::kBF16) {
      PQ_ASSIGN_OR_RETURN(auto t, formats::QuantizeRtn(fmt, wb, li.rows, li.cols));
      lw.w = std::move(wb);
      return WriteLinearTensors(ckpt, li, fmt, t, "", writer, res.summary);
    }
    formats::QuantizeOptions qo;
    qo.num_threads = o.write.num_threads;
    if (fmt == FormatId::kNVFP4 || fmt == FormatId::kNVFP4A16)
      qo.weight_global_scale = wgs.at(li.scale_group);
    if (fmt == FormatId::kNVFP4) {
      const auto a = plan.input_amax.find(li.scale_group);
      if (a == plan.input_amax.end())
        return InvalidArgument(li.module + ": NVFP4 needs the calibrated input amax (probe)");
      qo.input_global_scale = formats::NvFp4InputGlobalScale(a->second);
    }
    auto q = QuantizeLinear(fmt, wb, li.rows, li.cols, hobs.Find(li.module), o, qo, li.module);
    if (!q.ok()) return q.status().WithContext(li.module);
    PQ_RETURN_IF_ERROR(WriteLinearTensors(ckpt, li, fmt, q->tensors, "", writer, res.summary));
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

// The MTP head (architectures.md §4) calibrated on the quantized body: mtp.fc with H from
// its inputs [embedding ; final-normed body hidden], then the MTP layer with H from the
// quantized fc's outputs (sequences of T-2 positions). h: the quantized body's last
// boundary [sum T, D].
Status ExportMtp(const model::WeightSource& src, const std::vector<engine::Sequence>& samples,
                 const std::vector<float>& h, LayerQuantizer& lq) {
  const model::ModelConfig& c = src.config();
  const int64_t d = c.hidden, layer = c.num_layers;
  const auto eps = static_cast<float>(c.rms_eps);
  PQ_ASSIGN_OR_RETURN(model::MtpWeights mw, src.LoadMtp());
  PQ_ASSIGN_OR_RETURN(model::HeadWeights hw, src.LoadHead());
  PQ_ASSIGN_OR_RETURN(model::LayerWeights w, src.LoadLayer(layer));
  std::vector<float> x;  // [sum (T-2), 2D]
  std::vector<int64_t> lens;
  size_t off = 0;
  for (const auto& s : samples) {
    const int64_t t = static_cast<int64_t>(s.ids.size()) - 2;
    const size_t first = off;
    off += s.ids.size();
    if (t <= 0) continue;
    std::vector<float> e(static_cast<size_t>(t * d)), hb(e.size()), en(e.size()), hn(e.size()),
        rstd(static_cast<size_t>(t));
    PQ_RETURN_IF_ERROR(src.Embed(std::span(s.ids).subspan(1, static_cast<size_t>(t)), e));
    compute::cpu::RmsNorm(std::span(h).subspan(first * static_cast<size_t>(d), e.size()),
                          hw.final_norm, eps, c.norm_offset, hb, rstd, t, d);
    compute::cpu::RmsNorm(e, mw.norm_embedding, eps, c.norm_offset, en, rstd, t, d);
    compute::cpu::RmsNorm(hb, mw.norm_hidden, eps, c.norm_offset, hn, rstd, t, d);
    for (int64_t i = 0; i < t; ++i) {
      x.insert(x.end(), en.begin() + i * d, en.begin() + (i + 1) * d);
      x.insert(x.end(), hn.begin() + i * d, hn.begin() + (i + 1) * d);
    }
    lens.push_back(t);
  }
  const int64_t rows = static_cast<int64_t>(x.size()) / (2 * d);
  std::vector<float> u(static_cast<size_t>(rows * d)), y(u.size());
  HessianObserver fc_obs;
  lq.Want(mw.fc, fc_obs);
  if (lq.o.passes != ExportPasses::kRtn) model::LinearForward(x, mw.fc, u, rows, &fc_obs);
  PQ_RETURN_IF_ERROR(lq.QuantizeOne(mw.fc, fc_obs, {{lq.info.at(mw.fc.module)->scale_group,
                                                     GroupScaleOf(mw.fc)}}));
  model::LinearForward(x, mw.fc, u, rows);  // the quantized fc
  HessianObserver hobs;
  model::ForEachLinear(w, [&](const model::LinearWeights& lw) { lq.Want(lw, hobs); });
  const model::RopeCache rope = model::RopeCache::Make(c, std::max<int64_t>(rows, 1));
  if (lq.o.passes != ExportPasses::kRtn)
    for (size_t i = 0, o = 0; i < lens.size(); o += static_cast<size_t>(lens[i]), ++i) {
      const auto n = static_cast<size_t>(lens[i] * d);
      model::DecoderLayerForward(c, w, rope, std::span(u).subspan(o * static_cast<size_t>(d), n),
                                 std::span(y).subspan(o * static_cast<size_t>(d), n),
                                 std::span(lens).subspan(i, 1), nullptr, &hobs);
    }
  return lq.QuantizeLayer(w, hobs);
}

}  // namespace

Result<CalibratedExportResult> ExportCalibrated(const CalibratedExportOptions& o) {
  ScopedExecContext exec_scope(o.exec);
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
  PQ_ASSIGN_OR_RETURN(auto writer, io::CheckpointWriter::Create(o.out, wo));

  const Batches b = MakeBatches(samples, o.batch_tokens);
  const auto d = static_cast<size_t>(c.hidden);
  std::vector<float> h(static_cast<size_t>(b.total) * d), next(h.size());
  for (size_t s = 0, off = 0; s < samples.size(); off += samples[s].ids.size(), ++s)
    PQ_RETURN_IF_ERROR(src->Embed(samples[s].ids, std::span(h).subspan(off * d, samples[s].ids.size() * d)));
  const model::RopeCache rope = model::RopeCache::Make(c, std::max<int64_t>(b.max_len, 1));

  CalibratedExportResult res;
  res.summary.out_dir = o.out;
  LayerQuantizer lq{plan, info, o, *ckpt, *writer, res, {}, 0.0};
  Progress progress(std::string("export ") + ExportPassesName(o.passes),
                    static_cast<size_t>(c.num_layers + layout.mtp_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    PQ_ASSIGN_OR_RETURN(model::LayerWeights w, src->LoadLayer(l));
    HessianObserver hobs;
    model::ForEachLinear(w, [&](const model::LinearWeights& lw) { lq.Want(lw, hobs); });
    if (o.passes != ExportPasses::kRtn) RunLayer(c, w, rope, b, h, next, &hobs);
    PQ_RETURN_IF_ERROR(lq.QuantizeLayer(w, hobs));
    RunLayer(c, w, rope, b, h, next, nullptr);  // quantized layer -> next layer's inputs
    h.swap(next);
    progress.Advance();
  }
  if (layout.has_mtp()) {
    PQ_RETURN_IF_ERROR(ExportMtp(*src, samples, h, lq));
    progress.Advance();
  }
  progress.Finish();
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
    qo.num_threads = o.write.num_threads;
    if (fmt == FormatId::kNVFP4) {
      qo.input_global_scale = formats::NvFp4InputGlobalScale(plan.input_amax.at(li.scale_group));
    }
    PQ_ASSIGN_OR_RETURN(auto t, formats::QuantizeRtn(fmt, v, li.rows, li.cols, qo));
    PQ_RETURN_IF_ERROR(WriteLinearTensors(*ckpt, li, fmt, t, "", *writer, res.summary));
  }
  if (res.linears_calibrated > 0)
    res.error_ratio_geomean =
        std::exp(lq.log_ratio_sum / static_cast<double>(res.linears_calibrated));
  PQ_RETURN_IF_ERROR(FinishCheckpoint(o.model, *ckpt, layout, config, lq.module_formats, *writer,
                                      res.summary));
  return res;
}

}  // namespace pq::pipeline
