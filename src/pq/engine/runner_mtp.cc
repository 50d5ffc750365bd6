// Runner::Mtp: the multi-token-prediction head of Qwen3-Next / Qwen3.5 / Qwen3.6
// (architectures.md §4), forward and backward, one sequence at a time:
//   e = RMSNorm_{1+w}(embed(x_{t+1})),  h = RMSNorm_{1+w}(RMSNorm_final(body_t))
//   u = fc([e ; h]),  u' = DecoderLayer_L(u),  logits = lm_head(RMSNorm_{1+w}(u'))  -> x_{t+2}
#include "pq/compute/ops.h"
#include "pq/engine/runner.h"

namespace pq::engine {
namespace {

namespace ops = compute::cpu;
using Vec = std::vector<float>;

Vec Zeros(int64_t n) { return Vec(static_cast<size_t>(n), 0.0f); }

// [e ; h] rows: x[T, 2D] from e[T, D] and h[T, D] (and back for the gradient).
void Concat(const Vec& e, const Vec& h, Vec& x, int64_t t, int64_t d) {
  for (int64_t i = 0; i < t; ++i) {
    std::copy_n(e.begin() + i * d, d, x.begin() + i * 2 * d);
    std::copy_n(h.begin() + i * d, d, x.begin() + i * 2 * d + d);
  }
}

}  // namespace

Result<HeadResult> Runner::Mtp(const LogitsFn& on_logits, bool backward, double loss_scale,
                               model::LinearObserver* observer) {
  const model::ModelConfig& c = src_.config();
  const int64_t d = c.hidden, v = c.vocab, layer = c.num_layers;
  const auto eps = static_cast<float>(c.rms_eps);
  const float off = c.norm_offset;
  PQ_ASSIGN_OR_RETURN(model::MtpWeights mw, src_.LoadMtp());
  PQ_ASSIGN_OR_RETURN(model::HeadWeights hw, src_.LoadHead());
  PQ_ASSIGN_OR_RETURN(model::LayerWeights lw, src_.LoadLayer(layer));
  const model::RopeCache rope = model::RopeCache::Make(c, std::max<int64_t>(max_tokens_, 1));
  HeadResult r;
  for (size_t s = 0; s < seqs_.size(); ++s) {
    const Sequence& seq = seqs_[s];
    const int64_t t = static_cast<int64_t>(seq.ids.size()) - 2;
    if (t <= 0) continue;
    // Body hidden at 0..T-3 after the final norm, then the MTP's own norms.
    Vec body(final_.begin() + static_cast<std::ptrdiff_t>(offsets_[s] * static_cast<size_t>(d)),
             final_.begin() + static_cast<std::ptrdiff_t>((offsets_[s] + static_cast<size_t>(t)) *
                                                          static_cast<size_t>(d)));
    Vec hb = Zeros(t * d), rstd = Zeros(t), hn = Zeros(t * d), emb = Zeros(t * d),
        en = Zeros(t * d), rstd_h = Zeros(t), rstd_e = Zeros(t);
    ops::RmsNorm(body, hw.final_norm, eps, off, hb, rstd, t, d);
    ops::RmsNorm(hb, mw.norm_hidden, eps, off, hn, rstd_h, t, d);
    PQ_RETURN_IF_ERROR(src_.Embed(std::span(seq.ids).subspan(1, static_cast<size_t>(t)), emb));
    ops::RmsNorm(emb, mw.norm_embedding, eps, off, en, rstd_e, t, d);
    Vec x = Zeros(t * 2 * d), u = Zeros(t * d), y = Zeros(t * d);
    Concat(en, hn, x, t, d);
    model::LinearForward(x, mw.fc, u, t, observer);
    model::LayerActs acts;
    const int64_t lens[] = {t};
    model::DecoderLayerForward(c, lw, rope, u, y, lens, &acts, observer);
    Vec n = Zeros(t * d), rstd_o = Zeros(t), logits = Zeros(t * v), nll = Zeros(t), lse = Zeros(t);
    ops::RmsNorm(y, mw.norm, eps, off, n, rstd_o, t, d);
    model::LinearForward(n, hw.lm_head, logits, t);
    if (on_logits) PQ_RETURN_IF_ERROR(on_logits(s, logits));
    const std::span<const int32_t> targets =
        std::span(seq.targets).subspan(1, static_cast<size_t>(t));
    ops::CrossEntropy(logits, targets, nll, lse, t, v);
    for (int64_t i = 0; i < t; ++i) {
      if (targets[static_cast<size_t>(i)] < 0) continue;
      r.nll_sum += nll[static_cast<size_t>(i)];
      ++r.scored;
    }
    if (!backward) continue;
    Vec dlogits = Zeros(t * v), dn = Zeros(t * d), dy = Zeros(t * d), du = Zeros(t * d),
        dx = Zeros(t * 2 * d);
    ops::CrossEntropyBackward(logits, targets, lse, static_cast<float>(loss_scale), dlogits, t, v);
    ops::MatMulBackward(dlogits, n, hw.lm_head.w, dn, {}, {}, t, d, v);
    ops::RmsNormBackward(dn, y, mw.norm, rstd_o, off, dy, {}, t, d);
    model::DecoderLayerBackward(c, lw, rope, u, acts, dy, du, lens, observer);
    model::LinearBackward(du, x, mw.fc, dx, t, observer);
  }
  return r;
}

}  // namespace pq::engine
