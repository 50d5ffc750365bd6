// Reference (scalar) ops, part 2: causal GQA attention and the MoE top-k router.
// Sums in double (also in the float instantiation), results rounded to T at the end.
#include <algorithm>
#include <cmath>
#include <vector>

#include "pq/compute/op_checks.h"
#include "pq/compute/ref_util.h"
#include "pq/compute/ops.h"

namespace pq::compute::ref {
namespace {

using ref_util::Round;
using ref_util::Sigmoid;

// q[T,H,Dh], k/v[T,Hkv,Dh] -> o[T,H,Dh], probs[H,T,T]:
//   s_ij = scale q_i.k_j (j <= i),  p_i = softmax_j(s_i),  o_i = sum_j p_ij v_j
template <typename T>
void AttentionT(std::span<const T> q, std::span<const T> k, std::span<const T> v, std::span<T> o,
                std::span<T> probs, int64_t tokens, int64_t heads, int64_t kv_heads,
                int64_t head_dim, float scale) {
  internal::CheckAttention<T>(q, k, v, probs, tokens, heads, kv_heads, head_dim);
  PQ_CHECK_SIZE(o, tokens * heads * head_dim, "Attention: o[T,H,Dh]");
  const int64_t group = heads / kv_heads, dh = head_dim;
  std::vector<double> p(static_cast<size_t>(tokens));
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t g = h / group;
    for (int64_t i = 0; i < tokens; ++i) {
      const T* qi = q.data() + (i * heads + h) * dh;
      double m = -INFINITY;
      for (int64_t j = 0; j <= i; ++j) {
        const T* kj = k.data() + (j * kv_heads + g) * dh;
        double s = 0.0;
        for (int64_t d = 0; d < dh; ++d)
          s += static_cast<double>(qi[d]) * static_cast<double>(kj[d]);
        p[static_cast<size_t>(j)] = s * static_cast<double>(scale);
        m = std::max(m, p[static_cast<size_t>(j)]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j <= i; ++j) {
        p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - m);
        sum += p[static_cast<size_t>(j)];
      }
      T* prow = probs.data() + (h * tokens + i) * tokens;
      for (int64_t j = 0; j < tokens; ++j) {
        if (j <= i) p[static_cast<size_t>(j)] /= sum;
        prow[j] = j <= i ? Round<T>(p[static_cast<size_t>(j)]) : T(0);
      }
      T* oi = o.data() + (i * heads + h) * dh;
      for (int64_t d = 0; d < dh; ++d) {
        double acc = 0.0;
        for (int64_t j = 0; j <= i; ++j)
          acc += p[static_cast<size_t>(j)] *
                 static_cast<double>(v.data()[(j * kv_heads + g) * dh + d]);
        oi[d] = Round<T>(acc);
      }
    }
  }
}

// dP = dO V^T, dS = P (dP - rowsum(P dP)), dQ += scale dS K, dK += scale dS^T Q, dV += P^T dO;
// kv-head gradients sum over their query heads.
template <typename T>
void AttentionBackwardT(std::span<const T> d_o, std::span<const T> q, std::span<const T> k,
                        std::span<const T> v, std::span<const T> probs, std::span<T> dq,
                        std::span<T> dk, std::span<T> dv, int64_t tokens, int64_t heads,
                        int64_t kv_heads, int64_t head_dim, float scale) {
  internal::CheckAttention<T>(q, k, v, probs, tokens, heads, kv_heads, head_dim);
  PQ_CHECK_SIZE(d_o, tokens * heads * head_dim, "AttentionBackward: d_o[T,H,Dh]");
  PQ_CHECK_OPT_SIZE(dq, tokens * heads * head_dim, "AttentionBackward: dq[T,H,Dh]");
  PQ_CHECK_OPT_SIZE(dk, tokens * kv_heads * head_dim, "AttentionBackward: dk[T,Hkv,Dh]");
  PQ_CHECK_OPT_SIZE(dv, tokens * kv_heads * head_dim, "AttentionBackward: dv[T,Hkv,Dh]");
  const int64_t group = heads / kv_heads, dh = head_dim;
  const double sc = static_cast<double>(scale);
  std::vector<double> gq(dq.size(), 0.0), gk(dk.size(), 0.0), gv(dv.size(), 0.0);
  std::vector<double> ds(static_cast<size_t>(tokens));
  auto at = [](std::span<const T> s, int64_t i) { return static_cast<double>(s.data()[i]); };
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t g = h / group;
    for (int64_t i = 0; i < tokens; ++i) {
      const int64_t oi = (i * heads + h) * dh;
      const int64_t prow = (h * tokens + i) * tokens;
      double rowsum = 0.0;  // sum_j P_ij dP_ij
      for (int64_t j = 0; j <= i; ++j) {
        const int64_t vj = (j * kv_heads + g) * dh;
        double dp = 0.0;
        for (int64_t d = 0; d < dh; ++d) dp += at(d_o, oi + d) * at(v, vj + d);
        ds[static_cast<size_t>(j)] = dp;
        rowsum += at(probs, prow + j) * dp;
      }
      for (int64_t j = 0; j <= i; ++j) {
        const double pij = at(probs, prow + j);
        const double dsij = pij * (ds[static_cast<size_t>(j)] - rowsum);
        const int64_t kj = (j * kv_heads + g) * dh;
        for (int64_t d = 0; d < dh; ++d) {
          if (!gq.empty()) gq[static_cast<size_t>(oi + d)] += sc * dsij * at(k, kj + d);
          if (!gk.empty()) gk[static_cast<size_t>(kj + d)] += sc * dsij * at(q, oi + d);
          if (!gv.empty()) gv[static_cast<size_t>(kj + d)] += pij * at(d_o, oi + d);
        }
      }
    }
  }
  auto add = [](std::span<T> out, const std::vector<double>& acc) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = Round<T>(static_cast<double>(out[i]) + acc[i]);
  };
  add(dq, gq);
  add(dk, gk);
  add(dv, gv);
}

// probs[T,E] = softmax(logits); idx[T,K] = top-k of probs (descending, ties -> lower index);
// weights[T,K] = probs[idx] (/ their sum when norm_topk).
template <typename T>
void RouterTopKT(std::span<const T> logits, std::span<T> probs, std::span<int32_t> idx,
                 std::span<T> weights, int64_t tokens, int64_t experts, int64_t top_k,
                 bool norm_topk) {
  internal::CheckRouter<T>(logits, probs, idx, weights, tokens, experts, top_k, false);
  std::vector<bool> taken(static_cast<size_t>(experts));
  for (int64_t t = 0; t < tokens; ++t) {
    const T* l = logits.data() + t * experts;
    T* p = probs.data() + t * experts;
    const double m = static_cast<double>(*std::max_element(l, l + experts));
    double sum = 0.0;
    for (int64_t e = 0; e < experts; ++e) sum += std::exp(static_cast<double>(l[e]) - m);
    for (int64_t e = 0; e < experts; ++e)
      p[e] = Round<T>(std::exp(static_cast<double>(l[e]) - m) / sum);
    // Selection on the stored probs: k passes of "largest not yet taken", first index wins.
    std::fill(taken.begin(), taken.end(), false);
    double wsum = 0.0;
    for (int64_t j = 0; j < top_k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < experts; ++e)
        if (!taken[static_cast<size_t>(e)] && (best < 0 || p[e] > p[best])) best = e;
      taken[static_cast<size_t>(best)] = true;
      idx.data()[t * top_k + j] = static_cast<int32_t>(best);
      wsum += static_cast<double>(p[best]);
    }
    for (int64_t j = 0; j < top_k; ++j) {
      const double pj = static_cast<double>(p[idx.data()[t * top_k + j]]);
      weights.data()[t * top_k + j] = Round<T>(norm_topk ? pj / wsum : pj);
    }
  }
}

// With G = dweights and the selection fixed: dp[idx_j] = G_j (or (G_j - sum_k G_k w_k) / S
// when normalised, S = sum_k p[idx_k]); then dlogits += p (dp - sum_e p_e dp_e).
template <typename T>
void RouterTopKBackwardT(std::span<const T> dweights, std::span<const T> probs,
                         std::span<const int32_t> idx, std::span<T> dlogits, int64_t tokens,
                         int64_t experts, int64_t top_k, bool norm_topk) {
  internal::CheckRouter<T>(dlogits, probs, idx, dweights, tokens, experts, top_k, true);
  if (dlogits.empty()) return;
  std::vector<double> dp(static_cast<size_t>(experts));
  for (int64_t t = 0; t < tokens; ++t) {
    const T* p = probs.data() + t * experts;
    const int32_t* sel = idx.data() + t * top_k;
    const T* gw = dweights.data() + t * top_k;
    double s = 0.0, gdotw = 0.0;
    for (int64_t j = 0; j < top_k; ++j) {
      PQ_CHECK(sel[j] >= 0 && sel[j] < experts, "RouterTopKBackward: idx out of range");
      s += static_cast<double>(p[sel[j]]);
    }
    for (int64_t j = 0; j < top_k; ++j)
      gdotw += static_cast<double>(gw[j]) * static_cast<double>(p[sel[j]]) / s;
    std::fill(dp.begin(), dp.end(), 0.0);
    for (int64_t j = 0; j < top_k; ++j) {
      const double g = static_cast<double>(gw[j]);
      dp[static_cast<size_t>(sel[j])] += norm_topk ? (g - gdotw) / s : g;
    }
    double pdp = 0.0;
    for (int64_t e = 0; e < experts; ++e)
      pdp += static_cast<double>(p[e]) * dp[static_cast<size_t>(e)];
    for (int64_t e = 0; e < experts; ++e) {
      T& d = dlogits.data()[t * experts + e];
      d = Round<T>(static_cast<double>(d) +
                   static_cast<double>(p[e]) * (dp[static_cast<size_t>(e)] - pdp));
    }
  }
}

}  // namespace

#define PQ_REF_OPS_PART2(T_)                                                                    \
  void Attention(std::span<const T_> q, std::span<const T_> k, std::span<const T_> v,           \
                 std::span<T_> o, std::span<T_> probs, int64_t tokens, int64_t heads,           \
                 int64_t kv_heads, int64_t head_dim, float scale) {                             \
    AttentionT<T_>(q, k, v, o, probs, tokens, heads, kv_heads, head_dim, scale);                \
  }                                                                                             \
  void AttentionBackward(std::span<const T_> d_o, std::span<const T_> q, std::span<const T_> k, \
                         std::span<const T_> v, std::span<const T_> probs, std::span<T_> dq,    \
                         std::span<T_> dk, std::span<T_> dv, int64_t tokens, int64_t heads,     \
                         int64_t kv_heads, int64_t head_dim, float scale) {                     \
    AttentionBackwardT<T_>(d_o, q, k, v, probs, dq, dk, dv, tokens, heads, kv_heads, head_dim,  \
                           scale);                                                              \
  }                                                                                             \
  void RouterTopK(std::span<const T_> logits, std::span<T_> probs, std::span<int32_t> idx,      \
                  std::span<T_> weights, int64_t tokens, int64_t experts, int64_t top_k,        \
                  bool norm_topk) {                                                             \
    RouterTopKT<T_>(logits, probs, idx, weights, tokens, experts, top_k, norm_topk);            \
  }                                                                                             \
  void RouterTopKBackward(std::span<const T_> dweights, std::span<const T_> probs,              \
                          std::span<const int32_t> idx, std::span<T_> dlogits, int64_t tokens,  \
                          int64_t experts, int64_t top_k, bool norm_topk) {                     \
    RouterTopKBackwardT<T_>(dweights, probs, idx, dlogits, tokens, experts, top_k, norm_topk);  \
  }

PQ_REF_OPS_PART2(float)
PQ_REF_OPS_PART2(double)
#undef PQ_REF_OPS_PART2

}  // namespace pq::compute::ref
