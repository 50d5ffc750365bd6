#include "pq/engine/loss_head.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "pq/compute/ops.h"
#include "pq/core/check.h"

namespace pq::engine {
namespace {

namespace ops = compute::cpu;
using Vec = std::vector<float>;

// logits[T, vc] = xq · W[v0 : v0+vc]ᵀ (+ b) for xq = Q_a(n) already applied.
void ChunkLogits(const model::LinearWeights& head, std::span<const float> xq, int64_t t, int64_t v0,
                 int64_t vc, std::span<float> logits) {
  const int64_t k = head.cols;
  const auto w =
      std::span(head.w).subspan(static_cast<size_t>(v0 * k), static_cast<size_t>(vc * k));
  const auto b = head.b.empty()
                     ? std::span<const float>()
                     : std::span(head.b).subspan(static_cast<size_t>(v0), static_cast<size_t>(vc));
  ops::MatMul(xq, w, b, logits, t, k, vc);
}

double LogAddExp(double a, double b) {
  const double m = std::max(a, b);
  if (m == -std::numeric_limits<double>::infinity()) return m;
  return m + std::log(std::exp(a - m) + std::exp(b - m));
}

// The whole vocabulary in one chunk: the unchunked head, bit for bit.
void WholeVocabulary(const model::LinearWeights& head, std::span<const float> n,
                     std::span<const int32_t> targets, int64_t t, float scale, std::span<float> nll,
                     std::span<float> dn, model::LinearObserver* observer) {
  const int64_t v = head.rows, d = head.cols;
  Vec logits(static_cast<size_t>(t * v)), lse(static_cast<size_t>(t));
  model::LinearForward(n, head, logits, t, observer);
  ops::CrossEntropy(logits, targets, nll, lse, t, v);
  if (dn.empty()) return;
  Vec dlogits(logits.size(), 0.0f);
  ops::CrossEntropyBackward(logits, targets, lse, scale, dlogits, t, v);
  if (observer) observer->OnLinear(head, n, dlogits, t);
  ops::MatMulBackward(dlogits, n, head.w, dn, {}, {}, t, d, v);
}

}  // namespace

int64_t VocabChunkRows(int64_t tokens, int64_t vocab, uint64_t budget_bytes) {
  const uint64_t per_row = static_cast<uint64_t>(std::max<int64_t>(tokens, 1)) * sizeof(float);
  const auto fit = static_cast<int64_t>(std::min<uint64_t>(budget_bytes / per_row, INT64_MAX));
  return std::min(vocab, std::max<int64_t>(fit, 64));
}

void ChunkedCrossEntropy(const model::LinearWeights& head, std::span<const float> n,
                         std::span<const int32_t> targets, int64_t t, const LossHeadOptions& o,
                         std::span<float> nll, std::span<float> dn,
                         model::LinearObserver* observer) {
  const int64_t v = head.rows, d = head.cols;
  PQ_CHECK(n.size() == static_cast<size_t>(t * d) && targets.size() == static_cast<size_t>(t) &&
               nll.size() == static_cast<size_t>(t) &&
               (dn.empty() || dn.size() == static_cast<size_t>(t * d)),
           "ChunkedCrossEntropy: n[T, D], targets[T], nll[T], dn[T, D] sizes");
  const int64_t chunk = VocabChunkRows(t, v, o.chunk_bytes);
  if (chunk >= v) return WholeVocabulary(head, n, targets, t, o.scale, nll, dn, observer);
  if (observer) observer->OnLinearInput(head, n, t);
  Vec xq(n.begin(), n.end());  // Q_a(n), once for every chunk
  model::QuantizeLinearInput(head, xq, t);
  // Pass 1: log-sum-exp over the whole vocabulary, the target's logit.
  std::vector<double> lse(static_cast<size_t>(t), -std::numeric_limits<double>::infinity());
  Vec z(static_cast<size_t>(t), 0.0f), logits(static_cast<size_t>(t * chunk));
  Vec part(static_cast<size_t>(t)), unused(static_cast<size_t>(t));
  const std::vector<int32_t> none(static_cast<size_t>(t), -1);
  for (int64_t v0 = 0; v0 < v; v0 += chunk) {
    const int64_t vc = std::min(chunk, v - v0);
    const auto lc = std::span(logits).first(static_cast<size_t>(t * vc));
    ChunkLogits(head, xq, t, v0, vc, lc);
    ops::CrossEntropy(lc, none, unused, part, t, vc);
    for (int64_t r = 0; r < t; ++r) {
      const auto i = static_cast<size_t>(r);
      lse[i] = LogAddExp(lse[i], part[i]);
      const int64_t hit = targets[i] - v0;
      if (targets[i] >= 0 && hit >= 0 && hit < vc) z[i] = lc[static_cast<size_t>(r * vc + hit)];
    }
  }
  Vec lse_f(static_cast<size_t>(t));
  for (size_t i = 0; i < lse.size(); ++i) {
    nll[i] = targets[i] < 0 ? 0.0f : static_cast<float>(lse[i] - z[i]);
    lse_f[i] = static_cast<float>(lse[i]);
  }
  if (dn.empty()) return;
  // Pass 2: each chunk's logits again, their gradient, its share of dL/dn.
  Vec dl(logits.size());
  for (int64_t v0 = 0; v0 < v; v0 += chunk) {
    const int64_t vc = std::min(chunk, v - v0);
    const auto lc = std::span(logits).first(static_cast<size_t>(t * vc));
    const auto dc = std::span(dl).first(lc.size());
    ChunkLogits(head, xq, t, v0, vc, lc);
    std::fill(dc.begin(), dc.end(), 0.0f);
    ops::CrossEntropyBackwardChunk(lc, targets, lse_f, o.scale, dc, t, v0, vc);
    if (observer) observer->OnLinearRows(head, v0, vc, n, dc, t);
    const auto w =
        std::span(head.w).subspan(static_cast<size_t>(v0 * d), static_cast<size_t>(vc * d));
    ops::MatMulBackward(dc, n, w, dn, {}, {}, t, d, vc);
  }
}

Status LogitsByTokenChunks(const model::LinearWeights& head, std::span<const float> n, int64_t t,
                           uint64_t chunk_bytes, const LogitRowsFn& on_rows) {
  const int64_t v = head.rows, d = head.cols;
  const uint64_t row_bytes = static_cast<uint64_t>(v) * sizeof(float);
  const int64_t rows = std::max<int64_t>(1, static_cast<int64_t>(chunk_bytes / row_bytes));
  Vec logits;
  for (int64_t r0 = 0; r0 < t; r0 += rows) {
    const int64_t r = std::min(rows, t - r0);
    logits.resize(static_cast<size_t>(r * v));
    model::LinearForward(n.subspan(static_cast<size_t>(r0 * d), static_cast<size_t>(r * d)), head,
                         logits, r);
    PQ_RETURN_IF_ERROR(on_rows(r0, logits));
  }
  return Status::Ok();
}

}  // namespace pq::engine
