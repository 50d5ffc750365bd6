#include "pq/model/decoder.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "pq/compute/hybrid_ops.h"
#include "pq/compute/ops.h"
#include "pq/core/check.h"
#include "pq/formats/act_quant.h"

namespace pq::model {
namespace {

namespace ops = compute::cpu;
using Vec = std::vector<float>;

Vec Zeros(int64_t n) { return Vec(static_cast<size_t>(n), 0.0f); }

compute::RopeSpec Spec(const ModelConfig& c) {
  return {static_cast<int>(c.head_dim), static_cast<int>(c.rot_dim)};
}

float AttnScale(const ModelConfig& c) { return 1.0f / std::sqrt(static_cast<float>(c.head_dim)); }

std::span<float> Slice(Vec& v, size_t off, int64_t n) {
  return std::span<float>(v).subspan(off, static_cast<size_t>(n));
}
std::span<const float> Slice(const Vec& v, size_t off, int64_t n) {
  return std::span<const float>(v).subspan(off, static_cast<size_t>(n));
}

// x[R, 2*Dh] (per head [first Dh | second Dh]) -> first[R, Dh], second[R, Dh].
void SplitHeadPairs(const Vec& x, Vec& first, Vec& second, int64_t rows, int64_t dh) {
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(x.begin() + r * 2 * dh, dh, first.begin() + r * dh);
    std::copy_n(x.begin() + r * 2 * dh + dh, dh, second.begin() + r * dh);
  }
}

// The inverse of SplitHeadPairs.
void JoinHeadPairs(const Vec& first, const Vec& second, Vec& x, int64_t rows, int64_t dh) {
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(first.begin() + r * dh, dh, x.begin() + r * 2 * dh);
    std::copy_n(second.begin() + r * dh, dh, x.begin() + r * 2 * dh + dh);
  }
}

// Calls fn(T_s, q offset, k/v offset, probs offset) for each sequence of the batch.
template <typename Fn>
void ForEachSequence(std::span<const int64_t> lens, int64_t h, int64_t hkv, int64_t dh, Fn fn) {
  size_t qo = 0, ko = 0, po = 0;
  for (int64_t ts : lens) {
    fn(ts, qo, ko, po);
    qo += static_cast<size_t>(ts * h * dh);
    ko += static_cast<size_t>(ts * hkv * dh);
    po += static_cast<size_t>(h * ts * ts);
  }
}

// ---- attention block: n1[T, D] -> attn output added into h[T, D] ----
void AttentionForward(const ModelConfig& c, const LayerWeights& w, const RopeCache& rope,
                      std::span<const int64_t> lens, int64_t t, LayerActs& a, Vec& o,
                      LinearObserver* obs) {
  const int64_t h = c.heads, hkv = c.kv_heads, dh = c.head_dim;
  a.q_pre = Zeros(t * h * dh);
  a.k_pre = Zeros(t * hkv * dh);
  a.v = Zeros(t * hkv * dh);
  if (c.attn_output_gate) {  // q_proj rows per head: [query Dh | gate Dh]
    Vec qg = Zeros(t * h * 2 * dh);
    LinearForward(a.n1, w.q, qg, t, obs);
    a.q_gate = Zeros(t * h * dh);
    SplitHeadPairs(qg, a.q_pre, a.q_gate, t * h, dh);
  } else {
    LinearForward(a.n1, w.q, a.q_pre, t, obs);
  }
  LinearForward(a.n1, w.k, a.k_pre, t, obs);
  LinearForward(a.n1, w.v, a.v, t, obs);
  a.q = a.q_pre;
  a.k = a.k_pre;
  if (c.qk_norm) {  // per-head RMSNorm over Dh, before RoPE
    a.q_rstd = Zeros(t * h);
    a.k_rstd = Zeros(t * hkv);
    const auto eps = static_cast<float>(c.rms_eps);
    ops::RmsNorm(a.q_pre, w.q_norm, eps, c.norm_offset, a.q, a.q_rstd, t * h, dh);
    ops::RmsNorm(a.k_pre, w.k_norm, eps, c.norm_offset, a.k, a.k_rstd, t * hkv, dh);
  }
  a.attn = Zeros(t * h * dh);
  int64_t probs_total = 0;
  for (int64_t ts : lens) probs_total += h * ts * ts;
  a.probs = Zeros(probs_total);
  // Positions restart at 0 and attention is causal within each sequence.
  ForEachSequence(lens, h, hkv, dh, [&](int64_t ts, size_t qo, size_t ko, size_t po) {
    const auto q = Slice(a.q, qo, ts * h * dh), k = Slice(a.k, ko, ts * hkv * dh);
    ops::Rope(q, rope.Cos(ts), rope.Sin(ts), ts, h, Spec(c));
    ops::Rope(k, rope.Cos(ts), rope.Sin(ts), ts, hkv, Spec(c));
    ops::Attention(q, k, Slice(a.v, ko, ts * hkv * dh), Slice(a.attn, qo, ts * h * dh),
                   Slice(a.probs, po, h * ts * ts), ts, h, hkv, dh, AttnScale(c));
  });
  o = Zeros(t * c.hidden);
  if (!c.attn_output_gate) {
    LinearForward(a.attn, w.o, o, t, obs);
    return;
  }
  a.attn_gated = Zeros(t * h * dh);
  ops::SigmoidGate(a.attn, a.q_gate, a.attn_gated, t, h * dh, h * dh);
  LinearForward(a.attn_gated, w.o, o, t, obs);
}

// d_o[T, D] -> dn1[T, D] (accumulated)
void AttentionBackward(const ModelConfig& c, const LayerWeights& w, const RopeCache& rope,
                       std::span<const int64_t> lens, int64_t t, const LayerActs& a,
                       std::span<const float> d_o, Vec& dn1, LinearObserver* obs) {
  const int64_t h = c.heads, hkv = c.kv_heads, dh = c.head_dim;
  Vec d_attn = Zeros(t * h * dh), d_gate;
  if (c.attn_output_gate) {
    Vec d_gated = Zeros(t * h * dh);
    LinearBackward(d_o, a.attn_gated, w.o, d_gated, t, obs);
    d_gate = Zeros(t * h * dh);
    ops::SigmoidGateBackward(d_gated, a.attn, a.q_gate, d_attn, d_gate, t, h * dh, h * dh);
  } else {
    LinearBackward(d_o, a.attn, w.o, d_attn, t, obs);
  }
  Vec dq = Zeros(t * h * dh), dk = Zeros(t * hkv * dh), dv = Zeros(t * hkv * dh);
  ForEachSequence(lens, h, hkv, dh, [&](int64_t ts, size_t qo, size_t ko, size_t po) {
    const int64_t nq = ts * h * dh, nk = ts * hkv * dh;
    const auto dqs = Slice(dq, qo, nq), dks = Slice(dk, ko, nk);
    ops::AttentionBackward(Slice(d_attn, qo, nq), Slice(a.q, qo, nq), Slice(a.k, ko, nk),
                           Slice(a.v, ko, nk), Slice(a.probs, po, h * ts * ts), dqs, dks,
                           Slice(dv, ko, nk), ts, h, hkv, dh, AttnScale(c));
    ops::RopeBackward(dqs, rope.Cos(ts), rope.Sin(ts), ts, h, Spec(c));
    ops::RopeBackward(dks, rope.Cos(ts), rope.Sin(ts), ts, hkv, Spec(c));
  });
  if (c.qk_norm) {
    Vec dq_pre = Zeros(t * h * dh), dk_pre = Zeros(t * hkv * dh);
    ops::RmsNormBackward(dq, a.q_pre, w.q_norm, a.q_rstd, c.norm_offset, dq_pre, {}, t * h, dh);
    ops::RmsNormBackward(dk, a.k_pre, w.k_norm, a.k_rstd, c.norm_offset, dk_pre, {}, t * hkv, dh);
    dq.swap(dq_pre);
    dk.swap(dk_pre);
  }
  if (c.attn_output_gate) {
    Vec dqg = Zeros(t * h * 2 * dh);
    JoinHeadPairs(dq, d_gate, dqg, t * h, dh);
    dq.swap(dqg);
  }
  LinearBackward(dq, a.n1, w.q, dn1, t, obs);
  LinearBackward(dk, a.n1, w.k, dn1, t, obs);
  LinearBackward(dv, a.n1, w.v, dn1, t, obs);
}

// ---- dense SwiGLU MLP: n2[T, D] -> out[T, D] ----
void MlpForward(const LayerWeights& w, int64_t t, LayerActs& a, Vec& out, LinearObserver* obs) {
  const int64_t f = w.gate.rows;
  a.g = Zeros(t * f);
  a.u = Zeros(t * f);
  a.m = Zeros(t * f);
  LinearForward(a.n2, w.gate, a.g, t, obs);
  LinearForward(a.n2, w.up, a.u, t, obs);
  ops::SwiGlu(a.g, a.u, a.m);
  out = Zeros(t * w.down.rows);
  LinearForward(a.m, w.down, out, t, obs);
}

void MlpBackward(const LayerWeights& w, int64_t t, const LayerActs& a, std::span<const float> dout,
                 Vec& dn2, LinearObserver* obs) {
  const int64_t f = w.gate.rows;
  Vec dm = Zeros(t * f), dg = Zeros(t * f), du = Zeros(t * f);
  LinearBackward(dout, a.m, w.down, dm, t, obs);
  ops::SwiGluBackward(dm, a.g, a.u, dg, du);
  LinearBackward(dg, a.n2, w.gate, dn2, t, obs);
  LinearBackward(du, a.n2, w.up, dn2, t, obs);
}

// ---- shared expert: out[T, D] += sigmoid(n2 . w_sg) * SwiGLU_shared(n2) ----
void SharedExpertForward(const LayerWeights& w, int64_t t, LayerActs& a, Vec& out,
                         LinearObserver* obs) {
  const int64_t f = w.shared_gate.rows, d = w.shared_down.rows;
  a.sg = Zeros(t * f);
  a.su = Zeros(t * f);
  a.sm = Zeros(t * f);
  a.s_out = Zeros(t * d);
  a.s_gate = Zeros(t);
  LinearForward(a.n2, w.shared_gate, a.sg, t, obs);
  LinearForward(a.n2, w.shared_up, a.su, t, obs);
  ops::SwiGlu(a.sg, a.su, a.sm);
  LinearForward(a.sm, w.shared_down, a.s_out, t, obs);
  LinearForward(a.n2, w.shared_expert_gate, a.s_gate, t, obs);
  Vec gated = Zeros(t * d);
  ops::SigmoidGate(a.s_out, a.s_gate, gated, t, d, 1);
  for (size_t i = 0; i < out.size(); ++i) out[i] += gated[i];
}

void SharedExpertBackward(const LayerWeights& w, int64_t t, const LayerActs& a,
                          std::span<const float> dout, Vec& dn2, LinearObserver* obs) {
  const int64_t f = w.shared_gate.rows, d = w.shared_down.rows;
  Vec d_out = Zeros(t * d), d_gate = Zeros(t);
  ops::SigmoidGateBackward(dout, a.s_out, a.s_gate, d_out, d_gate, t, d, 1);
  Vec dm = Zeros(t * f), dg = Zeros(t * f), du = Zeros(t * f);
  LinearBackward(d_out, a.sm, w.shared_down, dm, t, obs);
  ops::SwiGluBackward(dm, a.sg, a.su, dg, du);
  LinearBackward(dg, a.n2, w.shared_gate, dn2, t, obs);
  LinearBackward(du, a.n2, w.shared_up, dn2, t, obs);
  LinearBackward(d_gate, a.n2, w.shared_expert_gate, dn2, t, obs);
}

// ---- routed experts: n2[T, D] -> out[T, D] = sum_k w[t,k] * Expert_idx[t,k](n2[t]) ----
// The router's probabilities of the experts in `fixed` [T, K] become the routing weights
// (normalised over the K when the router normalises), replacing its own top-k choice.
void FixRouting(const ModelConfig& c, int64_t t, std::span<const int32_t> fixed, LayerActs& a) {
  const int64_t e_count = c.num_experts, k = c.top_k;
  PQ_CHECK(fixed.size() == static_cast<size_t>(t * k), "fixed_topk must be [T, top_k]");
  for (int64_t r = 0; r < t; ++r) {
    double wsum = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      const auto i = static_cast<size_t>(r * k + j);
      PQ_CHECK(fixed[i] >= 0 && fixed[i] < e_count, "fixed_topk: expert out of range");
      a.topk_idx[i] = fixed[i];
      a.topk_w[i] = a.router_probs[static_cast<size_t>(r * e_count + fixed[i])];
      wsum += a.topk_w[i];
    }
    if (!c.norm_topk_prob) continue;
    for (int64_t j = 0; j < k; ++j) {
      const auto i = static_cast<size_t>(r * k + j);
      a.topk_w[i] = static_cast<float>(a.topk_w[i] / wsum);
    }
  }
}

void MoeForward(const ModelConfig& c, const LayerWeights& w, int64_t t, LayerActs& a, Vec& out,
                LinearObserver* obs, std::span<const int32_t> fixed_topk) {
  const int64_t d = c.hidden, e_count = c.num_experts, k = c.top_k;
  Vec logits = Zeros(t * e_count);
  LinearForward(a.n2, w.router, logits, t, obs);
  a.router_probs = Zeros(t * e_count);
  a.topk_idx.assign(static_cast<size_t>(t * k), 0);
  a.topk_w = Zeros(t * k);
  ops::RouterTopK(logits, a.router_probs, a.topk_idx, a.topk_w, t, e_count, k, c.norm_topk_prob);
  if (!fixed_topk.empty()) FixRouting(c, t, fixed_topk, a);
  a.experts.assign(static_cast<size_t>(e_count), ExpertActs{});
  for (int64_t i = 0; i < t * k; ++i) {
    ExpertActs& ea = a.experts[static_cast<size_t>(a.topk_idx[static_cast<size_t>(i)])];
    ea.rows.push_back(static_cast<int32_t>(i / k));
    ea.slot.push_back(static_cast<int32_t>(i % k));
  }
  out = Zeros(t * d);
  for (int64_t e = 0; e < e_count; ++e) {
    ExpertActs& ea = a.experts[static_cast<size_t>(e)];
    const ExpertWeights& ew = w.experts[static_cast<size_t>(e)];
    const auto r = static_cast<int64_t>(ea.rows.size());
    if (r == 0) continue;
    const int64_t f = ew.gate.rows;
    ea.x = Zeros(r * d);
    for (int64_t i = 0; i < r; ++i)
      std::copy_n(a.n2.begin() + ea.rows[static_cast<size_t>(i)] * d, d, ea.x.begin() + i * d);
    ea.g = Zeros(r * f);
    ea.u = Zeros(r * f);
    ea.m = Zeros(r * f);
    ea.out = Zeros(r * d);
    LinearForward(ea.x, ew.gate, ea.g, r, obs);
    LinearForward(ea.x, ew.up, ea.u, r, obs);
    ops::SwiGlu(ea.g, ea.u, ea.m);
    LinearForward(ea.m, ew.down, ea.out, r, obs);
    for (int64_t i = 0; i < r; ++i) {
      const int64_t row = ea.rows[static_cast<size_t>(i)];
      const float wt = a.topk_w[static_cast<size_t>(row * k + ea.slot[static_cast<size_t>(i)])];
      for (int64_t j = 0; j < d; ++j)
        out[static_cast<size_t>(row * d + j)] += wt * ea.out[static_cast<size_t>(i * d + j)];
    }
  }
  if (!w.shared_gate.module.empty()) SharedExpertForward(w, t, a, out, obs);
}

void MoeBackward(const ModelConfig& c, const LayerWeights& w, int64_t t, const LayerActs& a,
                 std::span<const float> dout, Vec& dn2, LinearObserver* obs) {
  const int64_t d = c.hidden, e_count = c.num_experts, k = c.top_k;
  if (!w.shared_gate.module.empty()) SharedExpertBackward(w, t, a, dout, dn2, obs);
  Vec dweights = Zeros(t * k);
  for (int64_t e = 0; e < e_count; ++e) {
    const ExpertActs& ea = a.experts[static_cast<size_t>(e)];
    const ExpertWeights& ew = w.experts[static_cast<size_t>(e)];
    const auto r = static_cast<int64_t>(ea.rows.size());
    if (r == 0) continue;
    const int64_t f = ew.gate.rows;
    Vec dexp = Zeros(r * d);  // dL/d(expert output) = weight * dout
    for (int64_t i = 0; i < r; ++i) {
      const int64_t row = ea.rows[static_cast<size_t>(i)];
      const size_t slot = static_cast<size_t>(row * k + ea.slot[static_cast<size_t>(i)]);
      double dot = 0;
      for (int64_t j = 0; j < d; ++j) {
        const float g = dout[static_cast<size_t>(row * d + j)];
        dot += static_cast<double>(g) * ea.out[static_cast<size_t>(i * d + j)];
        dexp[static_cast<size_t>(i * d + j)] = a.topk_w[slot] * g;
      }
      dweights[slot] += static_cast<float>(dot);
    }
    Vec dm = Zeros(r * f), dg = Zeros(r * f), du = Zeros(r * f), dx = Zeros(r * d);
    LinearBackward(dexp, ea.m, ew.down, dm, r, obs);
    ops::SwiGluBackward(dm, ea.g, ea.u, dg, du);
    LinearBackward(dg, ea.x, ew.gate, dx, r, obs);
    LinearBackward(du, ea.x, ew.up, dx, r, obs);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < d; ++j)
        dn2[static_cast<size_t>(ea.rows[static_cast<size_t>(i)] * d + j)] +=
            dx[static_cast<size_t>(i * d + j)];
  }
  Vec dlogits = Zeros(t * e_count);
  ops::RouterTopKBackward(dweights, a.router_probs, a.topk_idx, dlogits, t, e_count, k,
                          c.norm_topk_prob);
  LinearBackward(dlogits, a.n2, w.router, dn2, t, obs);
}

}  // namespace

void LinearBackward(std::span<const float> dy, std::span<const float> x, const LinearWeights& l,
                    std::span<float> dx, int64_t t, LinearObserver* obs) {
  if (obs) obs->OnLinear(l, x, dy, t);
  ops::MatMulBackward(dy, x, l.w, dx, {}, {}, t, l.cols, l.rows);
}

void QuantizeLinearInput(const LinearWeights& l, std::span<float> x, int64_t t) {
  if (!formats::Spec(l.act_format).quantizes_activations) return;
  if (!formats::FakeQuantizeActivations(l.act_format, x, t, l.cols, l.input_global_scale).ok())
    std::fill(x.begin(), x.end(), std::numeric_limits<float>::quiet_NaN());
}

void LinearObserver::OnLinearRows(const LinearWeights& linear, int64_t row0, int64_t n,
                                  std::span<const float> x, std::span<const float> dy,
                                  int64_t rows) {
  PQ_CHECK(row0 == 0 && n == linear.rows,
           "this LinearObserver takes whole Linears only (OnLinearRows)");
  OnLinear(linear, x, dy, rows);
}

void LinearForward(std::span<const float> x, const LinearWeights& l, std::span<float> y, int64_t t,
                   LinearObserver* obs) {
  if (obs) obs->OnLinearInput(l, x, t);
  if (!formats::Spec(l.act_format).quantizes_activations) {
    ops::MatMul(x, l.w, l.b, y, t, l.cols, l.rows);
    return;
  }
  Vec xq(x.begin(), x.end());
  if (!formats::FakeQuantizeActivations(l.act_format, xq, t, l.cols, l.input_global_scale).ok()) {
    // Non-finite activations (a diverged model): propagate NaN as the runtime would.
    std::fill(y.begin(), y.end(), std::numeric_limits<float>::quiet_NaN());
    return;
  }
  ops::MatMul(xq, l.w, l.b, y, t, l.cols, l.rows);
}

RopeCache RopeCache::Make(const ModelConfig& c, int64_t tokens) {
  RopeCache r;
  r.tokens = tokens;
  const auto half = static_cast<size_t>(c.rot_dim / 2);
  r.cos.assign(static_cast<size_t>(tokens) * half, 0.0f);
  r.sin.assign(static_cast<size_t>(tokens) * half, 0.0f);
  std::vector<int32_t> pos(static_cast<size_t>(tokens));
  for (int64_t i = 0; i < tokens; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  compute::RopeTables(pos, c.inv_freq, r.cos, r.sin);
  return r;
}

void DecoderLayerForward(const ModelConfig& c, const LayerWeights& w, const RopeCache& rope,
                         std::span<const float> x, std::span<float> y,
                         std::span<const int64_t> lens, LayerActs* acts, LinearObserver* obs,
                         std::span<const int32_t> fixed_topk) {
  int64_t t = 0;
  for (int64_t ts : lens) {
    PQ_CHECK(rope.tokens >= ts, "RoPE cache shorter than a sequence");
    t += ts;
  }
  LayerActs local;
  LayerActs& a = acts ? *acts : local;
  const int64_t d = c.hidden;
  const float eps = static_cast<float>(c.rms_eps);
  a.n1 = Zeros(t * d);
  a.rstd1 = Zeros(t);
  ops::RmsNorm(x, w.input_norm, eps, c.norm_offset, a.n1, a.rstd1, t, d);
  Vec o;
  if (c.IsLinearAttention(w.layer))
    LinearAttentionForward(c, w.lin, a.n1, lens, a.lin, o, obs);
  else
    AttentionForward(c, w, rope, lens, t, a, o, obs);
  a.h = Zeros(t * d);
  for (size_t i = 0; i < a.h.size(); ++i) a.h[i] = x[i] + o[i];
  a.n2 = Zeros(t * d);
  a.rstd2 = Zeros(t);
  ops::RmsNorm(a.h, w.post_norm, eps, c.norm_offset, a.n2, a.rstd2, t, d);
  Vec f;
  if (c.IsMoeLayer(w.layer))
    MoeForward(c, w, t, a, f, obs, fixed_topk);
  else
    MlpForward(w, t, a, f, obs);
  for (size_t i = 0; i < a.h.size(); ++i) y[i] = a.h[i] + f[i];
}

void DecoderLayerBackward(const ModelConfig& c, const LayerWeights& w, const RopeCache& rope,
                          std::span<const float> x, const LayerActs& a, std::span<const float> dy,
                          std::span<float> dx, std::span<const int64_t> lens, LinearObserver* obs) {
  const int64_t d = c.hidden;
  int64_t t = 0;
  for (int64_t ts : lens) t += ts;
  Vec dn2 = Zeros(t * d);
  if (c.IsMoeLayer(w.layer))
    MoeBackward(c, w, t, a, dy, dn2, obs);
  else
    MlpBackward(w, t, a, dy, dn2, obs);
  Vec dh(dy.begin(), dy.end());  // residual
  ops::RmsNormBackward(dn2, a.h, w.post_norm, a.rstd2, c.norm_offset, dh, {}, t, d);
  Vec dn1 = Zeros(t * d);
  if (c.IsLinearAttention(w.layer))
    LinearAttentionBackward(c, w.lin, a.n1, lens, a.lin, dh, dn1, obs);
  else
    AttentionBackward(c, w, rope, lens, t, a, dh, dn1, obs);
  std::copy(dh.begin(), dh.end(), dx.begin());  // residual
  ops::RmsNormBackward(dn1, x, w.input_norm, a.rstd1, c.norm_offset, dx, {}, t, d);
}

}  // namespace pq::model
