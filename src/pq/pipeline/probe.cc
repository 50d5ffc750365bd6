#include "pq/pipeline/probe.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>

#include "pq/core/hash.h"
#include "pq/core/log.h"
#include "pq/dist/comm.h"
#include "pq/engine/boundary_store.h"
#include "pq/engine/hessian_observer.h"
#include "pq/engine/probe_observer.h"
#include "pq/engine/runner.h"
#include "pq/io/file_util.h"
#include "pq/io/safetensors.h"
#include "pq/model/weights.h"
#include "pq/pipeline/probe_block.h"
#include "pq/pipeline/probe_dist.h"
#include "pq/quant/cost.h"

namespace pq::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

ProbeLinear ToProbeLinear(const engine::LinearResult& r, const model::LinearInfo& li) {
  ProbeLinear l{.module = r.module,
                .layer = li.layer,
                .unit = li.unit,
                .scale_group = li.scale_group,
                .rows = r.rows,
                .cols = r.cols,
                .is_lm_head = li.is_lm_head,
                .is_mtp = li.is_mtp,
                .is_visual = false,
                .tied = li.tied,
                .samples = r.samples,
                .tokens = r.tokens,
                .fisher_trace = r.fisher_trace,
                .input_amax = r.input_amax,
                .candidates = {}};
  for (const auto& c : r.candidates)
    l.candidates.push_back({std::string(formats::Spec(c.format).name), c.bytes, c.weight_mse,
                            c.cost, c.routing_changes});
  return l;
}

// A vision Linear: not probed (no image calibration yet); allocate gives it --visual-format.
ProbeLinear VisualLinear(const model::LinearInfo& li) {
  ProbeLinear l;
  l.module = li.module;
  l.unit = li.unit;
  l.scale_group = li.scale_group;
  l.rows = li.rows;
  l.cols = li.cols;
  l.is_visual = true;
  return l;
}

std::vector<const model::LinearWeights*> LayerLinears(const model::LayerWeights& w) {
  std::vector<const model::LinearWeights*> v;
  model::ForEachLinear(w, [&](const model::LinearWeights& l) { v.push_back(&l); });
  return v;
}

// What the steps of one probe run share.
struct ProbeContext {
  const ProbeOptions& o;
  WorkDir work;
  std::unique_ptr<model::WeightSource> src;
  std::vector<formats::FormatId> formats;
  ProbeInputs inputs;
  Calibration calib;
  std::map<std::string, const model::LinearInfo*> info;  // by module
  ProbeProgress progress;                                // at the start of the run
  dist::SampleRange range;           // this rank's calibration samples (all of them on one rank)
  int64_t row0 = 0, total_rows = 0;  // its first token row, and all samples' token rows
  mutable BlockReduction reduce;     // sums over samples, folded over blocks and ranks

  const model::ModelLayout& layout() const { return src->layout(); }
  int64_t layers() const { return layout().num_layers; }

  // A Hessian observer that wants every one of `linears` (shared by scale group).
  engine::HessianObserver WantHessians(
      const std::vector<const model::LinearWeights*>& linears) const {
    engine::HessianObserver h;
    for (const auto* l : linears) h.Want(*l, info.at(l->module)->scale_group);
    return h;
  }

  // `observe(r)` runs the Hessian observer `h` over runner r — the Hessian samples' runner
  // when there is one, else the samples' own — and its sums are folded over the sample blocks
  // and ranks and broadcast (every rank prices on H).
  Status ObserveHessians(engine::Runner& runner, engine::Runner* hessian_runner,
                         engine::HessianObserver& h,
                         const std::function<Status(engine::Runner&)>& observe) const {
    reduce.Collect([&](dist::Sums& s) { h.AddSums(s); });
    PQ_RETURN_IF_ERROR(observe(hessian_runner ? *hessian_runner : runner));
    return reduce.Finish(/*everywhere=*/true);
  }

  // One finished unit of work from the observer's results, written atomically.
  Status SaveUnit(const std::string& dir, std::vector<engine::LinearResult> results,
                  ProbeUnit unit) const {
    if (dist::Rank() != 0) return Status::Ok();  // rank 0 writes the work dir
    for (auto& r : results) {
      unit.linears.push_back(ToProbeLinear(r, *info.at(r.module)));
      unit.g2_out.push_back(std::move(r.g2_out));
      unit.x2_in.push_back(std::move(r.x2_in));
    }
    return WriteProbeUnit(dir, unit);
  }
};

// This rank's whole sample blocks; what is not data-parallel yet refuses more than one rank.
Status SplitSamples(ProbeContext& c) {
  const auto n = static_cast<int64_t>(c.calib.samples.size());
  PQ_ASSIGN_OR_RETURN(c.range, dist::RankSamples(n, c.o.sample_block, dist::Rank(), dist::Size()));
  for (int64_t s = 0; s < n; ++s) {
    const auto t = static_cast<int64_t>(c.calib.samples[static_cast<size_t>(s)].ids.size());
    if (s < c.range.first) c.row0 += t;
    c.total_rows += t;
  }
  return Status::Ok();
}

// Opens the model, chooses the calibration samples and claims (or re-enters) the work dir.
Result<std::unique_ptr<ProbeContext>> Prepare(const ProbeOptions& o) {
  auto c = std::make_unique<ProbeContext>(
      ProbeContext{o, WorkDir(o.work), {}, o.formats, {}, {}, {}, {}, {}, 0, 0, {}});
  PQ_ASSIGN_OR_RETURN(c->src, model::WeightSource::Open(o.model));
  if (c->formats.empty())
    for (const auto& f : formats::AllFormats()) c->formats.push_back(f.id);
  PQ_ASSIGN_OR_RETURN(c->calib, LoadCalibration(o.model, o.calib));
  ProbeInputs& in = c->inputs;
  PQ_ASSIGN_OR_RETURN(in.model_fingerprint, ModelFingerprint(o.model));
  in.calib_tokens_hash = c->calib.tokens_hash;
  in.samples = o.calib.samples;
  in.seqlen = o.calib.seqlen;
  in.seed = o.calib.seed;
  for (auto f : c->formats) in.formats.emplace_back(formats::Spec(f).name);
  in.probe_lm_head = o.probe_lm_head;
  for (auto f : o.lm_head_formats) in.lm_head_formats.emplace_back(formats::Spec(f).name);
  in.passes = quant::PassesName(o.passes);
  in.block_cost = o.block_cost;
  in.block_frozen_routing = o.block_cost && !o.block_reroute;
  in.block_layers = o.block_layers;
  in.block_samples = o.block_samples;
  in.sample_block = o.sample_block;
  in.per_token = o.per_token;
  in.hessian_samples = static_cast<int64_t>(c->calib.hessian_samples.size());
  PQ_RETURN_IF_ERROR(SplitSamples(*c));
  if (dist::Rank() == 0) {
    PQ_RETURN_IF_ERROR(CheckProbeInputs(c->work, in.ToJson()));
    RemoveProbeEntries(c->work, ".");  // temp dirs of a killed run's unfinished writes
    if (!fs::exists(c->work.calibration_dir())) {
      PQ_RETURN_IF_ERROR(WriteCalibrationSamples(c->work, c->calib.samples));
    }
    if (in.hessian_samples > 0 && !fs::exists(c->work.hessian_calibration_dir())) {
      PQ_RETURN_IF_ERROR(WriteCalibrationSamples(c->work, c->calib.hessian_samples,
                                                 c->work.hessian_calibration_dir()));
    }
  }
  PQ_RETURN_IF_ERROR(dist::Barrier());  // the work dir as rank 0 left it, for every rank
  for (const auto& li : c->layout().linears) c->info[li.module] = &li;
  c->progress = ScanProbeProgress(c->work, c->layers());
  return c;
}

// ---- The runner calls of the probe (Sweep and its two head steps) ----

// The head unit (lm_head probed unless disabled), saved with dL/d(boundary L), which it returns.
Result<std::vector<float>> SweepHead(const ProbeContext& c, engine::Runner& runner,
                                     engine::ProbeObserver& probe) {
  PQ_ASSIGN_OR_RETURN(model::HeadWeights hw, c.src->LoadHead());
  std::vector<engine::LinearResult> head_results;
  if (c.o.probe_lm_head) {
    PQ_RETURN_IF_ERROR(runner.Head(nullptr, false, 1.0, &probe, &hw).status());  // input amax
    PQ_RETURN_IF_ERROR(ReduceInputAmax(probe, c.layout()));
    PQ_RETURN_IF_ERROR(probe.BeginLayer({&hw.lm_head}, nullptr, c.o.lm_head_formats));
    c.reduce.Collect([&](dist::Sums& s) { probe.AddSums(s); });
  }
  PQ_ASSIGN_OR_RETURN(engine::HeadResult hr, runner.Head(nullptr, true, 1.0, &probe, &hw));
  PQ_RETURN_IF_ERROR(ReduceHeadNll(hr));
  if (c.o.probe_lm_head) {
    PQ_RETURN_IF_ERROR(c.reduce.Finish(/*everywhere=*/false));
    PQ_ASSIGN_OR_RETURN(head_results, probe.FinishLayer());
  }
  PQ_RETURN_IF_ERROR(WriteRankGrad(c.work, c.layers(), runner.head_grad()));
  ProbeUnit head;
  head.nll_sum = hr.nll_sum;
  head.scored = hr.scored;
  PQ_RETURN_IF_ERROR(c.SaveUnit(c.work.head_dir(), std::move(head_results), std::move(head)));
  return runner.head_grad();
}

// The MTP head with its own objective (architectures.md §4): unit L, after the head.
Status SweepMtp(const ProbeContext& c, engine::Runner& runner, engine::Runner* hessian_runner,
                engine::ProbeObserver& probe) {
  const int64_t layers = c.layers();
  PQ_ASSIGN_OR_RETURN(model::LayerWeights mw, c.src->LoadLayer(layers));
  PQ_ASSIGN_OR_RETURN(model::MtpWeights mtp, c.src->LoadMtp());
  PQ_ASSIGN_OR_RETURN(model::HeadWeights hw, c.src->LoadHead());
  const engine::MtpParts parts{&mtp, &mw, &hw};  // loaded once for the three passes
  PQ_RETURN_IF_ERROR(runner.Mtp(nullptr, false, 1.0, &probe, parts).status());  // input amax
  PQ_RETURN_IF_ERROR(ReduceInputAmax(probe, c.layout()));
  std::vector<const model::LinearWeights*> linears = LayerLinears(mw);
  linears.push_back(&mtp.fc);
  if (c.o.passes == quant::Passes::kRtn) {
    PQ_RETURN_IF_ERROR(probe.BeginLayer(linears));
  } else {
    engine::HessianObserver h = c.WantHessians(linears);
    PQ_RETURN_IF_ERROR(c.ObserveHessians(runner, hessian_runner, h, [&](engine::Runner& r) {
      return r.Mtp(nullptr, false, 1.0, &h, parts).status();
    }));
    PQ_RETURN_IF_ERROR(probe.BeginLayer(linears, &h));
  }
  c.reduce.Collect([&](dist::Sums& s) { probe.AddSums(s); });
  PQ_ASSIGN_OR_RETURN(engine::HeadResult mr, runner.Mtp(nullptr, true, 1.0, &probe, parts));
  PQ_RETURN_IF_ERROR(ReduceHeadNll(mr));
  PQ_RETURN_IF_ERROR(c.reduce.Finish(/*everywhere=*/false));
  PQ_ASSIGN_OR_RETURN(auto results, probe.FinishLayer());
  ProbeUnit unit;
  unit.layer = layers;
  unit.mtp_nll_sum = mr.nll_sum;
  unit.mtp_scored = mr.scored;
  return c.SaveUnit(c.work.unit_dir(layers), std::move(results), std::move(unit));
}

// The Hessian samples' H of every decoder layer up to `top`, accumulated in their forward pass
// (the one run of each layer that computes the next boundary, in the export's batches, so
// layer 0's H is the export's bits) and kept until the reverse sweep reaches the layer —
// instead of storing the samples' boundaries and running every layer on them a second time.
// Chosen where a layer's H take less room than one boundary of the Hessian samples (dense
// layers; an MoE layer's experts' H outweigh it, and those keep the boundaries).
class ForwardHessians : public engine::SweepHooks {
 public:
  ForwardHessians(const ProbeContext& c, int64_t top) : c_(c), top_(top) {}

  // Floats of the largest layer's saved H (HessianObserver::SavedFloats) up to `top`.
  static int64_t LayerFloats(const ProbeContext& c, int64_t top) {
    std::map<int64_t, std::map<std::string, int64_t>> groups;  // layer -> group -> K
    for (const auto& li : c.layout().linears)
      if (li.layer >= 0 && li.layer <= top && !li.is_mtp && !li.is_visual)
        groups[li.layer][li.scale_group] = li.cols;
    int64_t most = 0;
    for (const auto& [layer, g] : groups) {
      int64_t n = 0;
      for (const auto& [name, k] : g) n += k * k + 2;
      most = std::max(most, n);
    }
    return most;
  }

  Status Create(int64_t floats_each, uint64_t memory_budget_bytes) {
    buf_.assign(static_cast<size_t>(floats_each), 0.0f);
    PQ_ASSIGN_OR_RETURN(store_, engine::BoundaryStore::Create(top_ + 1, floats_each,
                                                              memory_budget_bytes, c_.o.work));
    return Status::Ok();
  }
  model::LinearObserver* Observe(const engine::SweepStep&) override { return nullptr; }
  Status Replace(const engine::SweepStep&) override { return Status::Ok(); }
  model::LinearObserver* Along(const engine::SweepStep& step) override {
    if (step.layer > top_) return nullptr;
    h_ = c_.WantHessians({step.linears.begin(), step.linears.end()});
    c_.reduce.Collect([this](dist::Sums& s) { h_.AddSums(s); });
    return &h_;
  }
  Status After(const engine::SweepStep& step) override {
    if (step.layer > top_) return Status::Ok();
    PQ_RETURN_IF_ERROR(c_.reduce.Finish(/*everywhere=*/true));  // every rank prices on H
    std::fill(buf_.begin(), buf_.end(), 0.0f);
    h_.Save(buf_);
    return store_.Put(step.layer, buf_);
  }
  // Layer l's H into `h`, which wants the layer's Linears (ProbeContext::WantHessians).
  Status Load(int64_t l, engine::HessianObserver& h) {
    PQ_RETURN_IF_ERROR(store_.Get(l, buf_));
    return h.Load(buf_);
  }

 private:
  const ProbeContext& c_;
  int64_t top_;
  engine::HessianObserver h_;
  engine::BoundaryStore store_;
  std::vector<float> buf_;
};

// The forward sweep, the head (unless finished), the MTP head and the reverse sweep from the
// first unfinished layer; each unit is saved as it finishes.
Status Sweep(const ProbeContext& c, engine::ProbeObserver& probe) {
  const ProbeOptions& o = c.o;
  const WorkDir& w = c.work;
  const int64_t top = c.progress.next_layer;  // next layer to run in the reverse sweep
  const bool want_hessians =
      o.passes != quant::Passes::kRtn && (top >= 0 || (c.layout().has_mtp() && !c.progress.mtp));
  const bool own_hessian_samples = want_hessians && !c.calib.hessian_samples.empty();
  // The Hessian samples' H summed in their forward pass (ForwardHessians), decided the same on
  // every rank: all their tokens' boundary against a layer's H.
  int64_t hessian_tokens = 0, tokens = 0;
  for (const auto& s : c.calib.hessian_samples) hessian_tokens += std::ssize(s.ids);
  for (const auto& s : c.calib.samples) tokens += std::ssize(s.ids);
  const int64_t h_floats = own_hessian_samples ? ForwardHessians::LayerFloats(c, top) : 0;
  const bool h_in_forward =
      own_hessian_samples && top >= 0 && h_floats <= hessian_tokens * c.src->config().hidden;
  // The memory budget, shared in proportion to what is stored: the samples' boundaries and
  // the Hessian samples' boundaries or H.
  const double own = static_cast<double>(tokens * c.src->config().hidden);
  const double other = h_in_forward
                           ? static_cast<double>(h_floats)
                           : static_cast<double>(own_hessian_samples ? hessian_tokens : 0) *
                                 static_cast<double>(c.src->config().hidden);
  const double share = own / (own + other);
  engine::RunnerOptions ro;
  ro.memory_budget_bytes =
      static_cast<uint64_t>(static_cast<double>(o.memory_budget_bytes) * share);
  ro.work_dir = o.work;
  ro.batch_tokens = 1;  // one sample per observer call (per-sample Fisher)
  ro.sample_block = o.sample_block;
  ro.first_sample = c.range.first;
  ro.on_block_end = c.reduce.Hook();
  const auto samples =
      std::span(c.calib.samples)
          .subspan(static_cast<size_t>(c.range.first), static_cast<size_t>(c.range.count));
  engine::Runner runner(*c.src, samples, ro);
  PQ_RETURN_IF_ERROR(runner.Forward(/*keep_all=*/true, &probe));
  PQ_RETURN_IF_ERROR(ReduceInputAmax(probe, c.layout()));
  // Export-aware pricing builds each layer's H from the Hessian samples (calibration.h), so
  // candidates are priced on tokens their scale search and GPTQ did not see: summed in their
  // forward pass (ForwardHessians) or, where H outweighs a boundary, from their stored
  // boundaries run through the layer while it is resident. Across ranks each runs its blocks
  // of them (the export splits and folds them the same way).
  std::optional<engine::Runner> own_hessian_runner;
  std::optional<ForwardHessians> forward_h;
  if (own_hessian_samples) {
    const auto n = static_cast<int64_t>(c.calib.hessian_samples.size());
    PQ_ASSIGN_OR_RETURN(dist::SampleRange hr,
                        dist::RankSamples(n, o.sample_block, dist::Rank(), dist::Size()));
    engine::RunnerOptions hro = ro;
    hro.memory_budget_bytes = o.memory_budget_bytes - ro.memory_budget_bytes;
    hro.first_sample = hr.first;
    hro.forward_label = "forward (Hessian samples)";
    if (h_in_forward) {
      hro.batch_tokens = o.hessian_batch_tokens;
      forward_h.emplace(c, top);
      PQ_RETURN_IF_ERROR(forward_h->Create(h_floats, hro.memory_budget_bytes));
    }
    own_hessian_runner.emplace(
        *c.src,
        std::span(c.calib.hessian_samples)
            .subspan(static_cast<size_t>(hr.first), static_cast<size_t>(hr.count)),
        hro);
    PQ_RETURN_IF_ERROR(own_hessian_runner->Forward(/*keep_all=*/!forward_h, nullptr,
                                                   forward_h ? &*forward_h : nullptr));
  }
  engine::Runner* hessian_runner = own_hessian_runner ? &*own_hessian_runner : nullptr;

  std::vector<float> dy;
  if (!c.progress.head) {
    PQ_ASSIGN_OR_RETURN(dy, SweepHead(c, runner, probe));
  } else if (top >= 0) {
    PQ_ASSIGN_OR_RETURN(dy, ReadRankGrad(w, top + 1, c.total_rows, c.row0, runner.total_tokens(),
                                         c.src->config().hidden));
  }
  if (c.layout().has_mtp() && !c.progress.mtp) {
    PQ_RETURN_IF_ERROR(SweepMtp(c, runner, hessian_runner, probe));
  }
  if (top < 0) return Status::Ok();
  ProbeBlockPricing block(o, c.src->config(), c.info, c.formats, w, c.calib.samples);
  block.SetRankRows(c.row0, c.total_rows, c.range.first, c.range.count);
  PQ_RETURN_IF_ERROR(block.Start(top, dy));
  const auto begin_layer = [&](int64_t l, model::LayerWeights& lw,
                               std::span<const float> layer_dy) -> Status {
    const std::vector<const model::LinearWeights*> linears = LayerLinears(lw);
    if (o.passes == quant::Passes::kRtn) {
      PQ_RETURN_IF_ERROR(probe.BeginLayer(linears));
    } else {
      engine::HessianObserver h = c.WantHessians(linears);
      if (forward_h) {
        PQ_RETURN_IF_ERROR(forward_h->Load(l, h));
      } else {
        PQ_RETURN_IF_ERROR(c.ObserveHessians(runner, hessian_runner, h, [&](engine::Runner& r) {
          return r.ObserveLayer(l, lw, h, o.hessian_batch_tokens);
        }));
      }
      PQ_RETURN_IF_ERROR(probe.BeginLayer(linears, &h));
    }
    c.reduce.Collect([&](dist::Sums& s) { probe.AddSums(s); });
    return block.PriceLayer(runner, probe, *c.src, l, lw, layer_dy);
  };
  const auto finish_layer = [&](int64_t l, std::span<const float> grad) -> Status {
    PQ_RETURN_IF_ERROR(c.reduce.Finish(/*everywhere=*/false));
    PQ_ASSIGN_OR_RETURN(auto results, probe.FinishLayer());
    block.Apply(results);
    PQ_RETURN_IF_ERROR(WriteRankGrad(w, l, grad));
    ProbeUnit unit;
    unit.layer = l;
    PQ_RETURN_IF_ERROR(c.SaveUnit(w.unit_dir(l), std::move(results), std::move(unit)));
    block.Finished(l, grad);  // drops grad_{l+1} (and window gradients no longer needed)
    return Status::Ok();
  };
  return runner.BackwardFrom(top, std::move(dy), &probe, begin_layer, finish_layer);
}

// W/probe.json from the finished units: layers (and MTP) in order, the head, then the vision
// Linears (not probed).
Result<ProbeFile> Assemble(const ProbeContext& c) {
  const model::ModelLayout& layout = c.layout();
  PQ_ASSIGN_OR_RETURN(ProbeUnit head, ReadProbeUnit(c.work.head_dir()));
  if (!head.nll_sum || !head.scored)
    return DataLoss(c.work.head_dir() + "/results.json has no nll_sum/scored; delete " +
                    c.work.head_dir());
  ProbeFile p;
  std::optional<double> mtp_nll;
  for (int64_t l = 0; l < c.layers() + layout.mtp_layers; ++l) {
    PQ_ASSIGN_OR_RETURN(ProbeUnit u, ReadProbeUnit(c.work.unit_dir(l)));
    for (auto& li : u.linears) p.linears.push_back(std::move(li));
    if (u.mtp_nll_sum)
      mtp_nll = *u.mtp_nll_sum / std::max<double>(1, static_cast<double>(u.mtp_scored.value_or(0)));
  }
  for (auto& li : head.linears) p.linears.push_back(std::move(li));
  for (const auto& li : layout.linears)
    if (li.is_visual) p.linears.push_back(VisualLinear(li));
  p.inputs = c.inputs.ToJson();
  PQ_ASSIGN_OR_RETURN(p.model.other_tensor_bytes, OtherTensorBytes(c.o.model, layout));
  p.model.path = c.o.model;
  p.model.architecture = std::string(layout.arch->name);
  p.model.num_layers = c.layers();
  p.model.mtp_layers = layout.mtp_layers;
  p.model.hidden = c.src->config().hidden;
  p.model.num_experts = layout.num_experts;
  p.model.tie_word_embeddings = layout.tie_word_embeddings;
  p.calibration = {c.o.calib.samples,
                   c.o.calib.seqlen,
                   c.o.calib.seed,
                   c.calib.stream_tokens,
                   c.calib.scored_tokens(),
                   *head.nll_sum / static_cast<double>(*head.scored),
                   mtp_nll};
  for (int e = 0; e < quant::kNumEstimators; ++e) {
    const auto est = static_cast<quant::CostEstimator>(e);
    if (c.o.per_token || !quant::NeedsPerTokenError(est))
      p.estimators.emplace_back(quant::EstimatorName(est));
  }
  p.formats = c.inputs.formats;
  return p;
}

}  // namespace

Result<uint64_t> OtherTensorBytes(const std::string& model, const model::ModelLayout& layout) {
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(model));
  uint64_t bytes = 0;
  for (const std::string& n : layout.other_tensors) {
    const io::TensorInfo* t = ckpt->Find(n);
    if (!t) return NotFound(model + ": tensor " + n);
    bytes += IsFloatingPoint(t->dtype) ? static_cast<uint64_t>(t->numel()) * 2 : t->bytes.size();
  }
  return bytes;
}

// Identity of a checkpoint without reading all of it: config, every tensor's name, dtype and
// shape, and up to 4 KiB of each tensor's data.
Result<std::string> ModelFingerprint(const std::string& model) {
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(model));
  PQ_ASSIGN_OR_RETURN(json config, model::ReadConfig(model));
  Hasher h;
  h.Str(config.dump());
  for (const std::string& n : ckpt->names()) {
    const io::TensorInfo* t = ckpt->Find(n);
    h.Str(n).Int(static_cast<uint64_t>(t->dtype)).Ints(std::span<const int64_t>(t->shape));
    const size_t m = std::min<size_t>(t->bytes.size(), 4096);
    h.Bytes(t->bytes.data(), m);
    io::ReleaseTensorPages(*t);
  }
  return h.hex();
}

Result<ProbeSummary> RunProbe(const ProbeOptions& o) {
  const double start_s = NowSeconds();
  ScopedExecContext exec_scope(o.exec);
  if (o.work.empty()) return InvalidArgument("probe needs --work DIR");
  PQ_ASSIGN_OR_RETURN(std::unique_ptr<ProbeContext> c, Prepare(o));
  engine::ProbeObserverOptions po;
  for (const auto& li : c->layout().linears) {
    po.unit_of[li.module] = li.scale_group;
    if (li.is_routed_expert) po.routed.insert(li.module);
  }
  po.formats = c->formats;
  po.total_tokens = c->calib.scored_tokens();
  po.cache_bytes = o.cache_bytes;
  po.passes = o.passes;
  po.min_tokens = o.min_tokens;
  po.gptq = o.gptq;
  po.per_token = o.per_token;
  engine::ProbeObserver probe(po);
  if (c->progress.head && c->progress.finished_layers > 0)
    LogInfo("probe: resuming after " + std::to_string(c->progress.finished_layers) +
            " finished layers");
  PQ_RETURN_IF_ERROR(Sweep(*c, probe));
  PQ_RETURN_IF_ERROR(LogRankTimes("probe", start_s));
  ProbeSummary sum;
  if (dist::Rank() != 0) return sum;  // rank 0 writes (and reports) the probe
  PQ_ASSIGN_OR_RETURN(ProbeFile p, Assemble(*c));
  PQ_RETURN_IF_ERROR(WriteProbeFile(c->work, p));
  RemoveProbeEntries(c->work, "grad_");
  sum.probe_json = c->work.probe_json();
  sum.layers = c->layers();
  sum.resumed_layers = c->progress.head ? c->progress.finished_layers : 0;
  sum.tokens = po.total_tokens;
  sum.linears = static_cast<int64_t>(p.linears.size());
  sum.calib_nll = p.calibration.nll;
  return sum;
}

}  // namespace pq::pipeline
