#include "pq/engine/runner.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "pq/compute/ops.h"
#include "pq/core/log.h"
#include "pq/engine/loss_head.h"

namespace pq::engine {
namespace {

namespace ops = compute::cpu;

std::span<float> Rows(std::vector<float>& v, size_t off, int64_t t, int64_t d) {
  return std::span<float>(v).subspan(off * static_cast<size_t>(d), static_cast<size_t>(t * d));
}

// The step of decoder layer l: its Linears in ForEachLinear order.
SweepStep LayerStep(int64_t l, model::LayerWeights& w) {
  SweepStep step{l, false, {}};
  model::ForEachLinear(w, [&](model::LinearWeights& lw) { step.linears.push_back(&lw); });
  return step;
}

}  // namespace

Runner::Runner(const model::WeightSource& source, std::span<const Sequence> seqs, RunnerOptions o)
    : src_(source), seqs_(seqs.begin(), seqs.end()), opt_(std::move(o)) {
  for (size_t i = 0; i < seqs_.size(); ++i) {
    const auto t = static_cast<int64_t>(seqs_[i].ids.size());
    offsets_.push_back(static_cast<size_t>(total_tokens_));
    if (batches_.empty() || batches_.back().tokens + t > opt_.batch_tokens ||
        (i > 0 && EndsBlock(i - 1)))
      batches_.push_back({static_cast<size_t>(total_tokens_), 0, {}});
    batches_.back().tokens += t;
    batches_.back().lens.push_back(t);
    total_tokens_ += t;
    max_tokens_ = std::max(max_tokens_, t);
  }
}

std::vector<size_t> Runner::BlockRows() const {
  std::vector<size_t> rows = {0};
  for (size_t s = 0; s < seqs_.size(); ++s)
    if (EndsBlock(s)) rows.push_back(offsets_[s] + seqs_[s].ids.size());
  return rows;
}

bool Runner::EndsBlock(size_t s) const {
  if (s + 1 == seqs_.size()) return true;
  const int64_t b = opt_.sample_block;
  return b > 0 && (opt_.first_sample + static_cast<int64_t>(s) + 1) % b == 0;
}

void Runner::RunLayer(const model::LayerWeights& w, const model::RopeCache& rope,
                      std::span<const float> h, std::span<float> next,
                      model::LinearObserver* observer) const {
  const model::ModelConfig& c = src_.config();
  const auto d = static_cast<size_t>(c.hidden);
  for (const Batch& b : batches_) {
    const size_t off = b.offset * d, n = static_cast<size_t>(b.tokens) * d;
    model::DecoderLayerForward(c, w, rope, h.subspan(off, n), next.subspan(off, n), b.lens, nullptr,
                               observer);
    BlockEnd(LastSequence(b.offset, b.lens));
  }
}

Status Runner::Forward(bool keep_all, model::LinearObserver* observer, SweepHooks* hooks) {
  const model::ModelConfig& c = src_.config();
  const int64_t d = c.hidden, layers = c.num_layers;
  if (keep_all) {
    PQ_ASSIGN_OR_RETURN(store_, BoundaryStore::Create(layers, total_tokens_ * d,
                                                      opt_.memory_budget_bytes, opt_.work_dir));
  }
  std::vector<float> h(static_cast<size_t>(total_tokens_ * d)), next(h.size());
  for (size_t s = 0; s < seqs_.size(); ++s)
    PQ_RETURN_IF_ERROR(src_.Embed(
        seqs_[s].ids, Rows(h, offsets_[s], static_cast<int64_t>(seqs_[s].ids.size()), d)));
  const model::RopeCache rope = model::RopeCache::Make(c, std::max<int64_t>(max_tokens_, 1));
  std::optional<Progress> progress;
  if (opt_.progress) progress.emplace(opt_.forward_label, static_cast<size_t>(layers));
  for (int64_t l = 0; l < layers; ++l) {
    if (keep_all) PQ_RETURN_IF_ERROR(store_.Put(l, h));
    PQ_ASSIGN_OR_RETURN(model::LayerWeights w, src_.LoadLayer(l));
    SweepStep step;
    model::LinearObserver* along = nullptr;
    if (hooks) {
      step = LayerStep(l, w);
      if (model::LinearObserver* obs = hooks->Observe(step)) RunLayer(w, rope, h, next, obs);
      PQ_RETURN_IF_ERROR(hooks->Replace(step));
      along = hooks->Along(step);
    }
    RunLayer(w, rope, h, next, along ? along : observer);
    if (hooks) PQ_RETURN_IF_ERROR(hooks->After(step));
    h.swap(next);
    if (progress) progress->Advance();
  }
  if (progress) progress->Finish();
  final_ = std::move(h);
  return Status::Ok();
}

Status Runner::Boundary(int64_t b, std::span<float> out) const {
  if (b == src_.config().num_layers) {
    std::copy(final_.begin(), final_.end(), out.begin());
    return Status::Ok();
  }
  return store_.Get(b, out);
}

Result<HeadResult> Runner::Head(const LogitsFn& on_logits, bool backward, double loss_scale,
                                model::LinearObserver* observer,
                                const model::HeadWeights* weights) {
  const model::ModelConfig& c = src_.config();
  const int64_t d = c.hidden;
  model::HeadWeights loaded;
  if (!weights) {
    PQ_ASSIGN_OR_RETURN(loaded, src_.LoadHead());
  }
  const model::HeadWeights& hw = weights ? *weights : loaded;
  HeadResult r;
  double block_nll = 0;
  if (backward) d_final_.assign(final_.size(), 0.0f);
  const LossHeadOptions lo{opt_.head_chunk_bytes, static_cast<float>(loss_scale)};
  std::optional<Progress> progress;  // an hour of a real model's probe: say where it is
  if (opt_.progress && backward) progress.emplace("loss head", seqs_.size());
  for (size_t s = 0; s < seqs_.size(); ++s) {
    if (progress && s > 0) progress->Advance();
    const Sequence& seq = seqs_[s];
    const auto t = static_cast<int64_t>(seq.ids.size());
    std::vector<float> n(static_cast<size_t>(t * d)), rstd(static_cast<size_t>(t)),
        nll(static_cast<size_t>(t)), dn;
    const auto x = Rows(final_, offsets_[s], t, d);
    ops::RmsNorm(x, hw.final_norm, static_cast<float>(c.rms_eps), c.norm_offset, n, rstd, t, d);
    if (on_logits) {  // without backward, the logits the caller sees give the NLLs too
      if (observer && !backward) observer->OnLinearInput(hw.lm_head, n, t);
      PQ_RETURN_IF_ERROR(LogitsByTokenChunks(
          hw.lm_head, n, t, opt_.head_chunk_bytes,
          [&](int64_t row0, std::span<const float> logits) -> Status {
            const auto rows = static_cast<int64_t>(logits.size()) / c.vocab;
            std::vector<float> lse(static_cast<size_t>(rows));
            const auto r0 = static_cast<size_t>(row0), rn = static_cast<size_t>(rows);
            ops::CrossEntropy(logits, std::span(seq.targets).subspan(r0, rn),
                              std::span(nll).subspan(r0, rn), lse, rows, c.vocab);
            return on_logits(s, row0, logits);
          }));
    }
    if (backward || !on_logits) {
      if (backward) dn.assign(n.size(), 0.0f);
      ChunkedCrossEntropy(hw.lm_head, n, seq.targets, t, lo, nll, dn, observer);
    }
    for (int64_t i = 0; i < t; ++i) {
      if (seq.targets[static_cast<size_t>(i)] < 0) continue;
      r.nll_sum += nll[static_cast<size_t>(i)];
      block_nll += nll[static_cast<size_t>(i)];
      ++r.scored;
    }
    if (EndsBlock(s)) r.block_nll.push_back(std::exchange(block_nll, 0.0));
    if (backward)
      ops::RmsNormBackward(dn, x, hw.final_norm, rstd, c.norm_offset,
                           Rows(d_final_, offsets_[s], t, d), {}, t, d);
    BlockEnd(s);
  }
  if (progress) {
    progress->Advance();
    progress->Finish();
  }
  return r;
}

size_t Runner::LastSequence(size_t off, std::span<const int64_t> lens) const {
  const auto first = std::lower_bound(offsets_.begin(), offsets_.end(), off) - offsets_.begin();
  return static_cast<size_t>(first) + lens.size() - 1;
}

std::optional<size_t> Runner::SequencesIn(size_t rows) const {
  if (rows == static_cast<size_t>(total_tokens_)) return seqs_.size();
  for (size_t n = 0; n < seqs_.size(); ++n)
    if (offsets_[n] == rows) return n;
  return std::nullopt;
}

void Runner::ForEachBatch(int64_t batch_tokens, size_t seqs, const BatchFn& fn) const {
  size_t s = 0;
  while (s < seqs) {  // consecutive sequences up to batch_tokens (at least one)
    std::vector<int64_t> lens;
    int64_t tokens = 0;
    const size_t off = offsets_[s];
    do {
      lens.push_back(static_cast<int64_t>(seqs_[s].ids.size()));
      tokens += lens.back();
      ++s;
    } while (s < seqs && !EndsBlock(s - 1) &&
             tokens + static_cast<int64_t>(seqs_[s].ids.size()) <= batch_tokens);
    fn(off, lens);
  }
}

Status Runner::ObserveLayer(int64_t l, const model::LayerWeights& w,
                            model::LinearObserver& observer, int64_t batch_tokens) const {
  const model::ModelConfig& c = src_.config();
  const auto d = static_cast<size_t>(c.hidden);
  std::vector<float> x(final_.size()), y;
  PQ_RETURN_IF_ERROR(store_.Get(l, x));
  const model::RopeCache rope = model::RopeCache::Make(c, std::max<int64_t>(max_tokens_, 1));
  ForEachBatch(batch_tokens, seqs_.size(), [&](size_t off, std::span<const int64_t> lens) {
    int64_t t = 0;
    for (int64_t n : lens) t += n;
    const size_t n = static_cast<size_t>(t) * d;
    y.resize(n);
    model::DecoderLayerForward(c, w, rope, std::span<const float>(x).subspan(off * d, n), y, lens,
                               nullptr, &observer);
    BlockEnd(LastSequence(off, lens));
  });
  return Status::Ok();
}

Status Runner::RerunLayer(int64_t l, const model::LayerWeights& w, int64_t batch_tokens,
                          std::span<float> y, std::vector<int32_t>* topk,
                          std::span<const int32_t> fixed_topk) const {
  std::vector<float> x(final_.size());
  PQ_RETURN_IF_ERROR(store_.Get(l, x));
  return RunLayerOn(l, w, std::span<const float>(x).first(std::min(x.size(), y.size())),
                    batch_tokens, y, topk, fixed_topk);
}

Status Runner::RunLayerOn(int64_t l, const model::LayerWeights& w, std::span<const float> x,
                          int64_t batch_tokens, std::span<float> y, std::vector<int32_t>* topk,
                          std::span<const int32_t> fixed_topk) const {
  const model::ModelConfig& c = src_.config();
  const auto d = static_cast<size_t>(c.hidden);
  const auto k = static_cast<size_t>(c.IsMoeLayer(l) ? c.top_k : 0);
  const size_t rows = x.size() / d;
  const std::optional<size_t> seqs = SequencesIn(rows);
  if (!seqs || x.size() != rows * d || y.size() != x.size() ||
      (!fixed_topk.empty() && fixed_topk.size() != rows * k))
    return InvalidArgument(
        "RunLayerOn: input, output or fixed routing of the wrong size (whole sequences)");
  if (topk) topk->assign(rows * k, 0);
  const model::RopeCache rope = model::RopeCache::Make(c, std::max<int64_t>(max_tokens_, 1));
  ForEachBatch(batch_tokens, *seqs, [&](size_t off, std::span<const int64_t> lens) {
    size_t t = 0;
    for (int64_t n : lens) t += static_cast<size_t>(n);
    model::LayerActs acts;
    model::DecoderLayerForward(
        c, w, rope, x.subspan(off * d, t * d), y.subspan(off * d, t * d), lens,
        topk ? &acts : nullptr, nullptr,
        fixed_topk.empty() ? fixed_topk : fixed_topk.subspan(off * k, t * k));
    if (topk && k > 0)
      std::copy(acts.topk_idx.begin(), acts.topk_idx.end(),
                topk->begin() + static_cast<std::ptrdiff_t>(off * k));
  });
  return Status::Ok();
}

Status Runner::Backward(model::LinearObserver* observer, const BoundaryGradFn& on_grad) {
  if (d_final_.size() != final_.size()) return Internal("Backward needs Head(..., backward=true)");
  return BackwardFrom(src_.config().num_layers - 1, d_final_, observer, nullptr, on_grad);
}

Status Runner::BackwardFrom(int64_t top, std::vector<float> dy, model::LinearObserver* observer,
                            const LayerFn& on_layer, const BoundaryGradFn& on_grad) {
  const model::ModelConfig& c = src_.config();
  const int64_t d = c.hidden;
  if (top >= c.num_layers || dy.size() != final_.size())
    return InvalidArgument("BackwardFrom: bad start layer or gradient size");
  std::vector<float> x(final_.size()), dx(final_.size());
  const model::RopeCache rope = model::RopeCache::Make(c, std::max<int64_t>(max_tokens_, 1));
  std::optional<Progress> progress;
  if (opt_.progress) progress.emplace("backward", static_cast<size_t>(top + 1));
  for (int64_t l = top; l >= 0; --l) {
    PQ_RETURN_IF_ERROR(store_.Get(l, x));
    PQ_ASSIGN_OR_RETURN(model::LayerWeights w, src_.LoadLayer(l));
    if (on_layer) PQ_RETURN_IF_ERROR(on_layer(l, w, dy));
    for (const Batch& b : batches_) {
      model::LayerActs acts;
      std::vector<float> y(static_cast<size_t>(b.tokens * d));
      const auto xs = Rows(x, b.offset, b.tokens, d);
      model::DecoderLayerForward(c, w, rope, xs, y, b.lens, &acts);  // recompute from saved input
      model::DecoderLayerBackward(c, w, rope, xs, acts, Rows(dy, b.offset, b.tokens, d),
                                  Rows(dx, b.offset, b.tokens, d), b.lens, observer);
      BlockEnd(LastSequence(b.offset, b.lens));
    }
    if (on_grad) PQ_RETURN_IF_ERROR(on_grad(l, dx));
    dy.swap(dx);
    if (progress) progress->Advance();
  }
  if (progress) progress->Finish();
  return Status::Ok();
}

}  // namespace pq::engine
