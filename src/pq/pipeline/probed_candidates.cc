#include "pq/pipeline/probed_candidates.h"

#include <algorithm>

#include "pq/core/exec_context.h"
#include "pq/core/minifloat.h"
#include "pq/formats/act_quant.h"
#include "pq/quant/rtn_candidate.h"

namespace pq::pipeline {

void ProbedCandidate::ApplyTo(model::LinearWeights& l) const {
  l.w = w_hat;
  l.act_format = format;
  l.input_global_scale = input_global_scale;
}

Result<std::unique_ptr<ProbedCandidates>> ProbedCandidates::Open(const model::WeightSource& src,
                                                                 const ProbeFile& probe,
                                                                 const std::string& work) {
  std::unique_ptr<ProbedCandidates> c(new ProbedCandidates(src, probe));
  const auto it = probe.inputs.find("passes");  // absent: probed before export-aware pricing
  if (probe.inputs.is_object() && it != probe.inputs.end() && it->is_string()) {
    PQ_ASSIGN_OR_RETURN(c->passes_, quant::ParsePasses(it->get<std::string>()));
  }
  if (c->passes_ == quant::Passes::kRtn) return c;
  PQ_ASSIGN_OR_RETURN(c->samples_, ReadHessianSamples(WorkDir(work)));
  engine::RunnerOptions ro;
  ro.work_dir = work;
  ro.batch_tokens = 1;  // the probe's forward sweep: one sample per batch
  ro.progress = false;
  c->runner_ = std::make_unique<engine::Runner>(src, c->samples_, ro);
  PQ_RETURN_IF_ERROR(c->runner_->Forward(/*keep_all=*/true));
  return c;
}

Result<std::pair<float, float>> ProbedCandidates::GroupAmax(const ProbeLinear& linear) {
  auto it = group_amax_.find(linear.scale_group);
  if (it != group_amax_.end()) return it->second;
  float w_amax = 0, x_amax = 0;
  for (const ProbeLinear& m : probe_.linears) {
    if (m.scale_group != linear.scale_group) continue;
    PQ_ASSIGN_OR_RETURN(model::LinearWeights lw, src_.LoadLinear(m.module));
    w_amax = std::max(w_amax, quant::Bf16AbsMax(lw.w));
    x_amax = std::max(x_amax, m.input_amax);
  }
  return group_amax_[linear.scale_group] = {w_amax, x_amax};
}

Result<const engine::HessianObserver*> ProbedCandidates::Hessians(int64_t layer) {
  if (h_ && h_layer_ == layer) return h_.get();
  PQ_ASSIGN_OR_RETURN(model::LayerWeights lw, src_.LoadLayer(layer));
  std::map<std::string, std::string> group;
  for (const ProbeLinear& m : probe_.linears) group[m.module] = m.scale_group;
  auto h = std::make_unique<engine::HessianObserver>();
  model::ForEachLinear(lw, [&](const model::LinearWeights& l) {
    auto g = group.find(l.module);
    h->Want(l, g == group.end() ? l.module : g->second);
  });
  // As the probe: the layer's stored input in batches of its hessian_batch_tokens (default).
  PQ_RETURN_IF_ERROR(runner_->ObserveLayer(layer, lw, *h, 4096));
  h_ = std::move(h);
  h_layer_ = layer;
  return h_.get();
}

Result<ProbedCandidate> ProbedCandidates::Make(const ProbeLinear& linear, formats::FormatId f) {
  if (linear.is_mtp || linear.is_visual)
    return InvalidArgument(linear.module + ": MTP and vision candidates are not rebuilt");
  PQ_ASSIGN_OR_RETURN(const auto amax, GroupAmax(linear));
  const float wgs = formats::NvFp4GlobalScale(amax.first);
  const float igs = formats::NvFp4InputGlobalScale(amax.second);
  ProbedCandidate c{linear.module, f, {}, std::nullopt};
  if (f == formats::FormatId::kNVFP4) c.input_global_scale = igs;
  PQ_ASSIGN_OR_RETURN(model::LinearWeights lw, src_.LoadLinear(linear.module));
  if (passes_ == quant::Passes::kRtn || linear.is_lm_head) {
    PQ_ASSIGN_OR_RETURN(c.w_hat, quant::RtnCandidate(f, lw.w, lw.rows, lw.cols, wgs, igs));
    return c;
  }
  // As engine::ProbeObserver::ExportCandidate.
  PQ_ASSIGN_OR_RETURN(const engine::HessianObserver* hs, Hessians(linear.layer));
  std::vector<float> wb(lw.w.size());
  for (size_t i = 0; i < wb.size(); ++i) wb[i] = RoundBf16(lw.w[i]);
  quant::LinearQuantizeOptions o{passes_, 32, {}, {}, linear.module};
  o.qo.num_threads = ExecThreads();
  o.measure_error = false;  // error_ratio is not used here
  if (f == formats::FormatId::kNVFP4 || f == formats::FormatId::kNVFP4A16)
    o.qo.weight_global_scale = wgs;
  if (f == formats::FormatId::kNVFP4) o.qo.input_global_scale = igs;
  const engine::HessianObserver::Entry* h = hs->Find(linear.module);
  auto q = quant::QuantizeLinear(f, wb, lw.rows, lw.cols, h ? h->h : std::span<const float>(),
                                 h ? h->rows : 0, o);
  if (!q.ok()) return q.status().WithContext(linear.module);
  c.w_hat = std::move(q->w_hat);
  return c;
}

}  // namespace pq::pipeline
