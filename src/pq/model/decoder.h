// One decoder layer, forward and backward, written as calls to compute ops (reads like the
// math; no SIMD or threads here). Pre-norm residual block (architectures.md §1.6):
//   h = x + o_proj(Attention(RoPE(qk_norm(q_proj(n1))), RoPE(qk_norm(k_proj(n1))), v_proj(n1)))
//   y = h + FFN(n2),  n1 = RmsNorm(x), n2 = RmsNorm(h),  FFN = SwiGLU MLP or routed experts.
// Processes a batch of independent sequences at once: the token rows of all sequences are
// concatenated ([T, D], T = sum of `lens`) so the Linears run as one large matmul; RoPE
// positions and causal attention are per sequence.
#pragma once

#include <span>
#include <vector>

#include "pq/model/config.h"
#include "pq/model/weights.h"

namespace pq::model {

// Receives each Linear's input rows x[R, K] and output-gradient rows dy[R, N] while the
// layer is resident (R = the batch's tokens; for an expert, only the tokens routed to it).
class LinearObserver {
 public:
  virtual ~LinearObserver() = default;
  virtual void OnLinear(const LinearWeights& linear, std::span<const float> x,
                        std::span<const float> dy, int64_t rows) = 0;
  // Forward only: the Linear's input rows x[R, K] (before any activation quantization).
  virtual void OnLinearInput(const LinearWeights& /*linear*/, std::span<const float> /*x*/,
                             int64_t /*rows*/) {}
  // OnLinear for the output rows [row0, row0 + n) only: dy[R, n] (a Linear too large to hold
  // its whole output gradient, the lm_head over a 248k vocabulary). One sample's calls cover
  // the rows in order; row0 == 0 starts the sample. Observers that keep per-output statistics
  // override it; the default takes whole Linears only.
  virtual void OnLinearRows(const LinearWeights& linear, int64_t row0, int64_t n,
                            std::span<const float> x, std::span<const float> dy, int64_t rows);
};

// y[T, N] = Q_a(x[T, K]) W^T + b, where Q_a is the run-time activation quantization of the
// Linear's format (identity unless linear.act_format quantizes activations). Reports x to
// `observer` (optional) first.
void LinearForward(std::span<const float> x, const LinearWeights& linear, std::span<float> y,
                   int64_t t, LinearObserver* observer = nullptr);

// x[T, K] ← Q_a(x), the run-time activation quantization LinearForward applies (nothing for
// formats that leave activations alone; NaN everywhere when x is not finite, as the runtime
// would propagate it).
void QuantizeLinearInput(const LinearWeights& linear, std::span<float> x, int64_t t);

// RoPE cos/sin tables for positions 0..T-1 ([T, Dh/2] each).
struct RopeCache {
  int64_t tokens = 0;
  std::vector<float> cos, sin;
  static RopeCache Make(const ModelConfig& config, int64_t tokens);
  // The tables of the first t positions.
  std::span<const float> Cos(int64_t t) const { return std::span(cos).first(Rows(t)); }
  std::span<const float> Sin(int64_t t) const { return std::span(sin).first(Rows(t)); }

 private:
  size_t Rows(int64_t t) const {
    return static_cast<size_t>(t) * (cos.size() / static_cast<size_t>(tokens));
  }
};

// What the backward pass needs from the forward pass of one layer on one sequence.
struct ExpertActs {
  std::vector<int32_t> rows;           // token index of each routed row
  std::vector<int32_t> slot;           // which top-k slot of that token chose this expert
  std::vector<float> x, g, u, m, out;  // [R, D], [R, F], [R, F], [R, F], [R, D]
};
// Gated DeltaNet mixer (model/gated_deltanet.cc), C = 2 Hk*Dk + Hv*Dv.
struct LinearAttnActs {
  std::vector<float> mixed, z, b, a;  // projections [T, C], [T, Hv*Dv], [T, Hv], [T, Hv]
  std::vector<float> conv;            // silu(conv(mixed)) [T, C]
  std::vector<float> q_raw, k_raw;    // [T, Hk*Dk] split from conv
  std::vector<float> q_inv, k_inv;    // [T*Hk] l2 norms' inverse
  std::vector<float> q, k, v;         // recurrence inputs [T, Hv, Dk], [T, Hv, Dk], [T, Hv, Dv]
  std::vector<float> g, beta;         // [T, Hv]
  std::vector<float> core, rstd;      // recurrence output [T, Hv, Dv], gated norm [T*Hv]
  std::vector<float> normed;          // out_proj input [T, Hv*Dv]
};
struct LayerActs {
  std::vector<float> n1, rstd1;          // [T, D], [T]
  std::vector<float> q_pre, k_pre;       // before q/k norm [T, H*Dh], [T, Hkv*Dh]
  std::vector<float> q_gate;             // attention output gate (pre-sigmoid) [T, H*Dh] or empty
  std::vector<float> q_rstd, k_rstd;     // [T*H], [T*Hkv]
  std::vector<float> q, k, v;            // after norm + RoPE (attention inputs)
  std::vector<float> probs;              // per sequence [H, T_s, T_s], concatenated
  std::vector<float> attn;               // [T, H*Dh]
  std::vector<float> attn_gated;         // attn * sigmoid(q_gate): o_proj input [T, H*Dh]
  LinearAttnActs lin;                    // Gated DeltaNet layers
  std::vector<float> h, n2, rstd2;       // [T, D], [T, D], [T]
  std::vector<float> g, u, m;            // dense MLP [T, F]
  std::vector<float> router_probs;       // [T, E]
  std::vector<int32_t> topk_idx;         // [T, K]
  std::vector<float> topk_w;             // [T, K]
  std::vector<ExpertActs> experts;       // [E]
  std::vector<float> sg, su, sm, s_out;  // shared expert [T, Fs] x3, [T, D]
  std::vector<float> s_gate;             // shared expert gate logit [T]
};

// Gated DeltaNet mixer (architectures.md §2.6.2): n1[T, D] -> out[T, D] for sequences of
// lengths `lens` (the conv and the recurrence restart at each sequence).
void LinearAttentionForward(const ModelConfig& c, const LinearAttentionWeights& w,
                            std::span<const float> n1, std::span<const int64_t> lens,
                            LinearAttnActs& a, std::vector<float>& out, LinearObserver* obs);
// d_out[T, D] -> dn1[T, D] (accumulated).
void LinearAttentionBackward(const ModelConfig& c, const LinearAttentionWeights& w,
                             std::span<const float> n1, std::span<const int64_t> lens,
                             const LinearAttnActs& a, std::span<const float> d_out,
                             std::span<float> dn1, LinearObserver* obs);

// dx[T, K] += dy[T, N] W; reports (x, dy) to the observer first.
void LinearBackward(std::span<const float> dy, std::span<const float> x, const LinearWeights& l,
                    std::span<float> dx, int64_t t, LinearObserver* obs);

// y[T, D] = layer(x[T, D]) for sequences of lengths `lens` (sum T). `acts` (optional) keeps
// what the backward needs. `observer` (optional) sees every Linear's input (OnLinearInput).
// `fixed_topk` ([T, top_k], MoE layers only; empty: the router's choice): route every token
// to these experts instead, weighted by the router's current probabilities of them
// (normalised as the router normalises) — the routing frozen, for pricing ablations.
void DecoderLayerForward(const ModelConfig& c, const LayerWeights& w, const RopeCache& rope,
                         std::span<const float> x, std::span<float> y,
                         std::span<const int64_t> lens, LayerActs* acts,
                         LinearObserver* observer = nullptr,
                         std::span<const int32_t> fixed_topk = {});

// dx[T, D] = dL/dx given dy[T, D] = dL/dy and the forward's `acts` (x is the layer input).
// Calls `observer` (optional) for every Linear with its input rows and output gradients.
void DecoderLayerBackward(const ModelConfig& c, const LayerWeights& w, const RopeCache& rope,
                          std::span<const float> x, const LayerActs& acts,
                          std::span<const float> dy, std::span<float> dx,
                          std::span<const int64_t> lens, LinearObserver* observer);

}  // namespace pq::model
