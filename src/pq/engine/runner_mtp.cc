// Runner::Mtp / Runner::MtpForward: the multi-token-prediction head of Qwen3-Next / Qwen3.5 /
// Qwen3.6 (architectures.md §4), forward and backward, one sequence at a time:
//   e = RMSNorm_{1+w}(embed(x_{t+1})),  h = RMSNorm_{1+w}(RMSNorm_final(body_t))
//   u = fc([e ; h]),  u' = DecoderLayer_L(u),  logits = lm_head(RMSNorm_{1+w}(u'))  -> x_{t+2}
#include <optional>
#include <utility>

#include "pq/compute/ops.h"
#include "pq/core/log.h"
#include "pq/engine/loss_head.h"
#include "pq/engine/runner.h"

namespace pq::engine {
namespace {

namespace ops = compute::cpu;
using Vec = std::vector<float>;

Vec Zeros(int64_t n) { return Vec(static_cast<size_t>(n), 0.0f); }

// [e ; h] rows: x[T, 2D] from e[T, D] and h[T, D].
void Concat(const Vec& e, const Vec& h, std::span<float> x, int64_t t, int64_t d) {
  for (int64_t i = 0; i < t; ++i) {
    std::copy_n(e.begin() + i * d, d, x.begin() + i * 2 * d);
    std::copy_n(h.begin() + i * d, d, x.begin() + i * 2 * d + d);
  }
}

}  // namespace

Status Runner::MtpInput(size_t s, const model::HeadWeights& hw, const model::MtpWeights& mw,
                        std::span<float> x) const {
  const model::ModelConfig& c = src_.config();
  const int64_t d = c.hidden, t = static_cast<int64_t>(seqs_[s].ids.size()) - 2;
  const auto eps = static_cast<float>(c.rms_eps);
  const float off = c.norm_offset;
  // Body hidden at 0..T-3 after the final norm, then the MTP's own norms.
  const auto body = std::span<const float>(final_).subspan(offsets_[s] * static_cast<size_t>(d),
                                                           static_cast<size_t>(t * d));
  Vec hb = Zeros(t * d), hn = Zeros(t * d), emb = Zeros(t * d), en = Zeros(t * d), rstd = Zeros(t);
  ops::RmsNorm(body, hw.final_norm, eps, off, hb, rstd, t, d);
  ops::RmsNorm(hb, mw.norm_hidden, eps, off, hn, rstd, t, d);
  PQ_RETURN_IF_ERROR(src_.Embed(std::span(seqs_[s].ids).subspan(1, static_cast<size_t>(t)), emb));
  ops::RmsNorm(emb, mw.norm_embedding, eps, off, en, rstd, t, d);
  Concat(en, hn, x, t, d);
  return Status::Ok();
}

Result<HeadResult> Runner::Mtp(const LogitsFn& on_logits, bool backward, double loss_scale,
                               model::LinearObserver* observer, const MtpParts& weights) {
  const model::ModelConfig& c = src_.config();
  const int64_t d = c.hidden, layer = c.num_layers;
  const auto eps = static_cast<float>(c.rms_eps);
  const float off = c.norm_offset;
  model::MtpWeights own_mtp;
  model::HeadWeights own_head;
  model::LayerWeights own_layer;
  if (!weights.mtp) {
    PQ_ASSIGN_OR_RETURN(own_mtp, src_.LoadMtp());
  }
  if (!weights.head) {
    PQ_ASSIGN_OR_RETURN(own_head, src_.LoadHead());
  }
  if (!weights.layer) {
    PQ_ASSIGN_OR_RETURN(own_layer, src_.LoadLayer(layer));
  }
  const model::MtpWeights& mw = weights.mtp ? *weights.mtp : own_mtp;
  const model::HeadWeights& hw = weights.head ? *weights.head : own_head;
  const model::LayerWeights& lw = weights.layer ? *weights.layer : own_layer;
  const model::RopeCache rope = model::RopeCache::Make(c, std::max<int64_t>(max_tokens_, 1));
  HeadResult r;
  double block_nll = 0;
  const auto end_block = [&](size_t s) {  // after sequence s (RunnerOptions::sample_block)
    if (EndsBlock(s)) r.block_nll.push_back(std::exchange(block_nll, 0.0));
    BlockEnd(s);
  };
  std::optional<Progress> progress;
  if (opt_.progress && backward) progress.emplace("mtp head", seqs_.size());
  for (size_t s = 0; s < seqs_.size(); ++s) {
    if (s > 0) end_block(s - 1);
    if (progress && s > 0) progress->Advance();
    const Sequence& seq = seqs_[s];
    const int64_t t = static_cast<int64_t>(seq.ids.size()) - 2;
    if (t <= 0) continue;
    Vec x = Zeros(t * 2 * d), u = Zeros(t * d), y = Zeros(t * d);
    PQ_RETURN_IF_ERROR(MtpInput(s, hw, mw, x));
    model::LinearForward(x, mw.fc, u, t, observer);
    model::LayerActs acts;
    const int64_t lens[] = {t};
    model::DecoderLayerForward(c, lw, rope, u, y, lens, &acts, observer);
    Vec n = Zeros(t * d), rstd_o = Zeros(t), nll = Zeros(t), dn;
    ops::RmsNorm(y, mw.norm, eps, off, n, rstd_o, t, d);
    const std::span<const int32_t> targets =
        std::span(seq.targets).subspan(1, static_cast<size_t>(t));
    if (on_logits) {
      PQ_RETURN_IF_ERROR(LogitsByTokenChunks(
          hw.lm_head, n, t, opt_.head_chunk_bytes,
          [&](int64_t row0, std::span<const float> logits) { return on_logits(s, row0, logits); }));
    }
    if (backward) dn = Zeros(t * d);
    ChunkedCrossEntropy(hw.lm_head, n, targets, t,
                        {opt_.head_chunk_bytes, static_cast<float>(loss_scale)}, nll, dn);
    for (int64_t i = 0; i < t; ++i) {
      if (targets[static_cast<size_t>(i)] < 0) continue;
      r.nll_sum += nll[static_cast<size_t>(i)];
      block_nll += nll[static_cast<size_t>(i)];
      ++r.scored;
    }
    if (!backward) continue;
    Vec dy = Zeros(t * d), du = Zeros(t * d), dx = Zeros(t * 2 * d);
    ops::RmsNormBackward(dn, y, mw.norm, rstd_o, off, dy, {}, t, d);
    model::DecoderLayerBackward(c, lw, rope, u, acts, dy, du, lens, observer);
    model::LinearBackward(du, x, mw.fc, dx, t, observer);
  }
  if (!seqs_.empty()) end_block(seqs_.size() - 1);
  if (progress) {
    progress->Advance();
    progress->Finish();
  }
  return r;
}

Status Runner::MtpForward(SweepHooks& hooks) {
  const model::ModelConfig& c = src_.config();
  const int64_t d = c.hidden, layer = c.num_layers;
  PQ_ASSIGN_OR_RETURN(model::MtpWeights mw, src_.LoadMtp());
  PQ_ASSIGN_OR_RETURN(model::HeadWeights hw, src_.LoadHead());
  PQ_ASSIGN_OR_RETURN(model::LayerWeights w, src_.LoadLayer(layer));
  std::vector<int64_t> lens;  // T-2 of every sequence with T > 2
  for (const Sequence& seq : seqs_)
    if (seq.ids.size() > 2) lens.push_back(static_cast<int64_t>(seq.ids.size()) - 2);
  int64_t rows = 0;
  for (int64_t t : lens) rows += t;
  Vec x = Zeros(rows * 2 * d), u = Zeros(rows * d), y = Zeros(rows * d);  // [rows, 2D], [rows, D]
  const auto ud = static_cast<size_t>(d), w2 = 2 * ud;
  std::vector<size_t> row0(seqs_.size() + 1, 0);  // first MTP row of each sequence
  for (size_t s = 0; s < seqs_.size(); ++s) {
    const int64_t t = static_cast<int64_t>(seqs_[s].ids.size()) - 2;
    row0[s + 1] = row0[s] + static_cast<size_t>(std::max<int64_t>(t, 0));
    if (t <= 0) continue;
    PQ_RETURN_IF_ERROR(
        MtpInput(s, hw, mw, std::span(x).subspan(row0[s] * w2, static_cast<size_t>(t) * w2)));
  }
  // fc on the rows of each sample block (one block: all rows at once).
  const auto fc_by_block = [&](model::LinearObserver* obs) {
    for (size_t s = 0, first = 0; s < seqs_.size(); ++s) {
      if (!EndsBlock(s)) continue;
      const size_t r0 = row0[first], n = row0[s + 1] - r0;
      if (n > 0)
        model::LinearForward(std::span(x).subspan(r0 * w2, n * w2), mw.fc,
                             std::span(u).subspan(r0 * ud, n * ud), static_cast<int64_t>(n), obs);
      if (obs) BlockEnd(s);
      first = s + 1;
    }
  };
  const SweepStep fc{layer, true, {&mw.fc}};
  if (model::LinearObserver* obs = hooks.Observe(fc)) fc_by_block(obs);
  PQ_RETURN_IF_ERROR(hooks.Replace(fc));
  fc_by_block(nullptr);
  SweepStep step{layer, false, {}};
  model::ForEachLinear(w, [&](model::LinearWeights& lw) { step.linears.push_back(&lw); });
  if (model::LinearObserver* obs = hooks.Observe(step)) {
    const model::RopeCache rope = model::RopeCache::Make(c, std::max<int64_t>(max_tokens_, 1));
    for (size_t s = 0; s < seqs_.size(); ++s) {
      const size_t n = row0[s + 1] - row0[s];
      const int64_t len[] = {static_cast<int64_t>(n)};
      if (n > 0)
        model::DecoderLayerForward(c, w, rope, std::span(u).subspan(row0[s] * ud, n * ud),
                                   std::span(y).subspan(row0[s] * ud, n * ud), len, nullptr, obs);
      BlockEnd(s);
    }
  }
  return hooks.Replace(step);
}

}  // namespace pq::engine
