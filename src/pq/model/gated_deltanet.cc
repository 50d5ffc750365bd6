// The Gated DeltaNet mixer of Qwen3-Next / Qwen3.5 / Qwen3.6 linear-attention layers
// (architectures.md §2.6.2, backward §6), written as calls to compute ops:
//   mixed = W_qkv n1, z = W_z n1, b = W_b n1, a = W_a n1
//   u = silu(causal_conv(mixed)) = [q_raw | k_raw | v]          (per sequence)
//   q = l2norm(q_raw) / sqrt(Dk), k = l2norm(k_raw)             (per key head)
//   g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b)    (per value head)
//   o = GatedDeltaRule(repeat(q), repeat(k), v, g, beta)        (per sequence)
//   out = W_out ((w_norm * rmsnorm(o)) * silu(z))               (per value head)
#include <cmath>

#include "pq/compute/deltanet.h"
#include "pq/compute/hybrid_ops.h"
#include "pq/core/check.h"
#include "pq/model/decoder.h"

namespace pq::model {
namespace {

namespace ops = compute::cpu;
using Vec = std::vector<float>;

Vec Zeros(int64_t n) { return Vec(static_cast<size_t>(n), 0.0f); }

constexpr float kL2Eps = 1e-6f;  // transformers' l2norm inside the DeltaNet kernel

// One contiguous run of columns copied between a fused projection and its split buffers.
struct Segment {
  int64_t src, dst, len;
  int which;  // destination buffer index
};

// Qwen3-Next's fused rows (architectures.md §2.5): in_proj_qkvz per key head g holds
// [q_g | k_g | v of its r value heads | z of them]; in_proj_ba per key head [b (r) | a (r)].
// Buffers: qkvz -> {mixed [C], z [Vd]}; ba -> {b [Hv], a [Hv]}.
std::vector<Segment> QkvzSegments(const ModelConfig& c) {
  const int64_t hk = c.lin_k_heads, dk = c.lin_k_dim, r = c.lin_v_heads / hk, rv = r * c.lin_v_dim,
                kd = c.lin_key_dim();
  std::vector<Segment> s;
  for (int64_t g = 0, off = 0; g < hk; ++g) {
    s.push_back({off, g * dk, dk, 0});
    s.push_back({off + dk, kd + g * dk, dk, 0});
    s.push_back({off + 2 * dk, 2 * kd + g * rv, rv, 0});
    s.push_back({off + 2 * dk + rv, g * rv, rv, 1});
    off += 2 * dk + 2 * rv;
  }
  return s;
}

std::vector<Segment> BaSegments(const ModelConfig& c) {
  const int64_t hk = c.lin_k_heads, r = c.lin_v_heads / hk;
  std::vector<Segment> s;
  for (int64_t g = 0; g < hk; ++g) {
    s.push_back({g * 2 * r, g * r, r, 0});
    s.push_back({g * 2 * r + r, g * r, r, 1});
  }
  return s;
}

// fused[T, F] -> (out0[T, N0], out1[T, N1]) along `segs` (forward), or back (scatter).
void Route(const std::vector<Segment>& segs, int64_t t, Vec& fused, int64_t f, Vec& out0,
           int64_t n0, Vec& out1, int64_t n1, bool to_fused) {
  for (int64_t i = 0; i < t; ++i)
    for (const Segment& s : segs) {
      Vec& buf = s.which == 0 ? out0 : out1;
      const int64_t n = s.which == 0 ? n0 : n1;
      float* a = fused.data() + i * f + s.src;
      float* b = buf.data() + i * n + s.dst;
      if (to_fused)
        std::copy_n(b, s.len, a);
      else
        std::copy_n(a, s.len, b);
    }
}

// Columns [off, off + n) of x[T, C] <-> y[T, n].
void Columns(Vec& x, int64_t c, int64_t off, Vec& y, int64_t n, int64_t t, bool to_x) {
  for (int64_t i = 0; i < t; ++i) {
    float* a = x.data() + i * c + off;
    float* b = y.data() + i * n;
    if (to_x)
      std::copy_n(b, n, a);
    else
      std::copy_n(a, n, b);
  }
}

// The four input projections: mixed[T, C], z[T, Vd], b, a[T, Hv].
void Projections(const ModelConfig& c, const LinearAttentionWeights& w, std::span<const float> n1,
                 int64_t t, LinearAttnActs& a, LinearObserver* obs) {
  const int64_t cd = c.lin_conv_dim(), vd = c.lin_value_dim(), hv = c.lin_v_heads;
  a.mixed = Zeros(t * cd);
  a.z = Zeros(t * vd);
  a.b = Zeros(t * hv);
  a.a = Zeros(t * hv);
  if (!c.lin_fused_naming) {
    LinearForward(n1, w.in_qkv, a.mixed, t, obs);
    LinearForward(n1, w.in_z, a.z, t, obs);
    LinearForward(n1, w.in_b, a.b, t, obs);
    LinearForward(n1, w.in_a, a.a, t, obs);
    return;
  }
  Vec qkvz = Zeros(t * (cd + vd)), ba = Zeros(t * 2 * hv);
  LinearForward(n1, w.in_qkv, qkvz, t, obs);
  LinearForward(n1, w.in_b, ba, t, obs);
  Route(QkvzSegments(c), t, qkvz, cd + vd, a.mixed, cd, a.z, vd, false);
  Route(BaSegments(c), t, ba, 2 * hv, a.b, hv, a.a, hv, false);
}

void ProjectionsBackward(const ModelConfig& c, const LinearAttentionWeights& w,
                         std::span<const float> n1, int64_t t, Vec& d_mixed, Vec& dz, Vec& db,
                         Vec& da, std::span<float> dn1, LinearObserver* obs) {
  const int64_t cd = c.lin_conv_dim(), vd = c.lin_value_dim(), hv = c.lin_v_heads;
  if (!c.lin_fused_naming) {
    LinearBackward(d_mixed, n1, w.in_qkv, dn1, t, obs);
    LinearBackward(dz, n1, w.in_z, dn1, t, obs);
    LinearBackward(db, n1, w.in_b, dn1, t, obs);
    LinearBackward(da, n1, w.in_a, dn1, t, obs);
    return;
  }
  Vec dqkvz = Zeros(t * (cd + vd)), dba = Zeros(t * 2 * hv);
  Route(QkvzSegments(c), t, dqkvz, cd + vd, d_mixed, cd, dz, vd, true);
  Route(BaSegments(c), t, dba, 2 * hv, db, hv, da, hv, true);
  LinearBackward(dqkvz, n1, w.in_qkv, dn1, t, obs);
  LinearBackward(dba, n1, w.in_b, dn1, t, obs);
}

// Calls fn(T_s, first token) per sequence.
template <typename Fn>
void ForEachSeq(std::span<const int64_t> lens, Fn fn) {
  int64_t off = 0;
  for (int64_t ts : lens) {
    fn(ts, off);
    off += ts;
  }
}

template <typename V>
auto Rows(V& v, int64_t first, int64_t n, int64_t width) {
  return std::span(v).subspan(static_cast<size_t>(first * width), static_cast<size_t>(n * width));
}

}  // namespace

void LinearAttentionForward(const ModelConfig& c, const LinearAttentionWeights& w,
                            std::span<const float> n1, std::span<const int64_t> lens,
                            LinearAttnActs& a, Vec& out, LinearObserver* obs) {
  int64_t t = 0;
  for (int64_t ts : lens) t += ts;
  const int64_t cd = c.lin_conv_dim(), kd = c.lin_key_dim(), vd = c.lin_value_dim();
  const int64_t hk = c.lin_k_heads, hv = c.lin_v_heads, dk = c.lin_k_dim, dv = c.lin_v_dim;
  const int64_t r = hv / hk;
  Projections(c, w, n1, t, a, obs);
  a.conv = Zeros(t * cd);
  ForEachSeq(lens, [&](int64_t ts, int64_t off) {
    ops::CausalConv1dSilu(Rows(std::as_const(a.mixed), off, ts, cd), w.conv,
                          Rows(a.conv, off, ts, cd), ts, cd, c.conv_kernel);
  });
  a.q_raw = Zeros(t * kd);
  a.k_raw = Zeros(t * kd);
  a.v = Zeros(t * vd);
  Columns(a.conv, cd, 0, a.q_raw, kd, t, false);
  Columns(a.conv, cd, kd, a.k_raw, kd, t, false);
  Columns(a.conv, cd, 2 * kd, a.v, vd, t, false);
  Vec qn = Zeros(t * kd), kn = Zeros(t * kd);
  a.q_inv = Zeros(t * hk);
  a.k_inv = Zeros(t * hk);
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
  ops::L2Norm(a.q_raw, kL2Eps, q_scale, qn, a.q_inv, t * hk, dk);
  ops::L2Norm(a.k_raw, kL2Eps, 1.0f, kn, a.k_inv, t * hk, dk);
  a.q = Zeros(t * hv * dk);
  a.k = Zeros(t * hv * dk);
  ops::RepeatHeads(qn, a.q, t, hk, r, dk);
  ops::RepeatHeads(kn, a.k, t, hk, r, dk);
  a.g = Zeros(t * hv);
  a.beta = Zeros(t * hv);
  ops::DeltaGates(a.a, a.b, w.a_log, w.dt_bias, a.g, a.beta, t, hv);
  a.core = Zeros(t * vd);
  ForEachSeq(lens, [&](int64_t ts, int64_t off) {
    ops::GatedDeltaRule(
        Rows(std::as_const(a.q), off, ts, hv * dk), Rows(std::as_const(a.k), off, ts, hv * dk),
        Rows(std::as_const(a.v), off, ts, vd), Rows(std::as_const(a.g), off, ts, hv),
        Rows(std::as_const(a.beta), off, ts, hv), Rows(a.core, off, ts, vd), {}, ts, hv, dk, dv);
  });
  a.normed = Zeros(t * vd);
  a.rstd = Zeros(t * hv);
  ops::GatedRmsNorm(a.core, a.z, w.norm, static_cast<float>(c.rms_eps), a.normed, a.rstd, t * hv,
                    dv);
  out = Zeros(t * c.hidden);
  LinearForward(a.normed, w.out, out, t, obs);
}

void LinearAttentionBackward(const ModelConfig& c, const LinearAttentionWeights& w,
                             std::span<const float> n1, std::span<const int64_t> lens,
                             const LinearAttnActs& a, std::span<const float> d_out,
                             std::span<float> dn1, LinearObserver* obs) {
  int64_t t = 0;
  for (int64_t ts : lens) t += ts;
  const int64_t cd = c.lin_conv_dim(), kd = c.lin_key_dim(), vd = c.lin_value_dim();
  const int64_t hk = c.lin_k_heads, hv = c.lin_v_heads, dk = c.lin_k_dim, dv = c.lin_v_dim;
  const int64_t r = hv / hk;
  Vec d_normed = Zeros(t * vd), d_core = Zeros(t * vd), dz = Zeros(t * vd);
  LinearBackward(d_out, a.normed, w.out, d_normed, t, obs);
  ops::GatedRmsNormBackward(d_normed, a.core, a.z, w.norm, a.rstd, d_core, dz, {}, t * hv, dv);
  Vec dq = Zeros(t * hv * dk), dk_rep = Zeros(t * hv * dk), dv_ = Zeros(t * vd);
  Vec dg = Zeros(t * hv), dbeta = Zeros(t * hv);
  ForEachSeq(lens, [&](int64_t ts, int64_t off) {
    ops::GatedDeltaRuleBackward(
        Rows(std::as_const(d_core), off, ts, vd), Rows(a.q, off, ts, hv * dk),
        Rows(a.k, off, ts, hv * dk), Rows(a.v, off, ts, vd), Rows(a.g, off, ts, hv),
        Rows(a.beta, off, ts, hv), Rows(dq, off, ts, hv * dk), Rows(dk_rep, off, ts, hv * dk),
        Rows(dv_, off, ts, vd), Rows(dg, off, ts, hv), Rows(dbeta, off, ts, hv), ts, hv, dk, dv);
  });
  Vec da = Zeros(t * hv), db = Zeros(t * hv);
  ops::DeltaGatesBackward(dg, dbeta, a.a, a.b, w.a_log, w.dt_bias, da, db, t, hv);
  Vec dqn = Zeros(t * kd), dkn = Zeros(t * kd);
  ops::RepeatHeadsBackward(dq, dqn, t, hk, r, dk);
  ops::RepeatHeadsBackward(dk_rep, dkn, t, hk, r, dk);
  Vec dq_raw = Zeros(t * kd), dk_raw = Zeros(t * kd);
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
  ops::L2NormBackward(dqn, a.q_raw, a.q_inv, q_scale, dq_raw, t * hk, dk);
  ops::L2NormBackward(dkn, a.k_raw, a.k_inv, 1.0f, dk_raw, t * hk, dk);
  Vec d_conv = Zeros(t * cd);
  Columns(d_conv, cd, 0, dq_raw, kd, t, true);
  Columns(d_conv, cd, kd, dk_raw, kd, t, true);
  Columns(d_conv, cd, 2 * kd, dv_, vd, t, true);
  Vec d_mixed = Zeros(t * cd);
  ForEachSeq(lens, [&](int64_t ts, int64_t off) {
    ops::CausalConv1dSiluBackward(Rows(std::as_const(d_conv), off, ts, cd),
                                  Rows(a.mixed, off, ts, cd), w.conv, Rows(d_mixed, off, ts, cd),
                                  {}, ts, cd, c.conv_kernel);
  });
  ProjectionsBackward(c, w, n1, t, d_mixed, dz, db, da, dn1, obs);
}

}  // namespace pq::model
