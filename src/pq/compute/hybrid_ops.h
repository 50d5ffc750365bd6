// Ops of the hybrid Qwen3-Next / Qwen3.5 / Qwen3.6 layers (architectures.md §2.6, §6): the
// Gated DeltaNet mixer's pieces and the sigmoid gates. Same conventions as ops.h: `ref`
// (scalar, templated, the specification, float and double for gradient checks) and `cpu`
// (fast, float, checked against `ref`); backward ops ACCUMULATE (+=) into gradient outputs,
// an empty gradient span is skipped; shapes are checked.
//
// Glossary: T tokens (ONE sequence: the conv and the recurrence run along time), C channels,
// Kc conv kernel width, R rows, Dh head dim, Hk key heads, Hv value heads, r = Hv / Hk.
#pragma once

#include <cstdint>
#include <span>

namespace pq::compute {

#define PQ_HYBRID_OPS(T_)                                                                          \
  /* Causal depthwise conv over time + SiLU: y[t,c] = silu(sum_j w[c,j] x[t-Kc+1+j, c]),           \
     x[<0] = 0 (zero left padding; w[c,Kc-1] hits the current token). x, y[T,C], w[C,Kc]. */       \
  void CausalConv1dSilu(std::span<const T_> x, std::span<const T_> w, std::span<T_> y,             \
                        int64_t tokens, int64_t channels, int64_t kernel);                         \
  void CausalConv1dSiluBackward(std::span<const T_> dy, std::span<const T_> x,                     \
                                std::span<const T_> w, std::span<T_> dx, std::span<T_> dw,         \
                                int64_t tokens, int64_t channels, int64_t kernel);                 \
  /* Per row of x[R,Dh]: y = scale * x * (sum x^2 + eps)^(-1/2); inv[R] saved. */                  \
  void L2Norm(std::span<const T_> x, float eps, float scale, std::span<T_> y, std::span<T_> inv,   \
              int64_t rows, int64_t dim);                                                          \
  void L2NormBackward(std::span<const T_> dy, std::span<const T_> x, std::span<const T_> inv,      \
                      float scale, std::span<T_> dx, int64_t rows, int64_t dim);                   \
  /* Norm-before-gate RMSNorm per row of x[R,Dh]: y = (w * x * rstd) * silu(z), w[Dh] plain        \
     (NOT 1+w), rstd[R] = 1/sqrt(mean(x^2)+eps) saved. */                                          \
  void GatedRmsNorm(std::span<const T_> x, std::span<const T_> z, std::span<const T_> w,           \
                    float eps, std::span<T_> y, std::span<T_> rstd, int64_t rows, int64_t dim);    \
  void GatedRmsNormBackward(std::span<const T_> dy, std::span<const T_> x, std::span<const T_> z,  \
                            std::span<const T_> w, std::span<const T_> rstd, std::span<T_> dx,     \
                            std::span<T_> dz, std::span<T_> dw, int64_t rows, int64_t dim);        \
  /* DeltaNet gates per [T,Hv] element: g = -exp(a_log[h]) * softplus(a + dt_bias[h])              \
     (softplus(x) = x for x > 20, as PyTorch), beta = sigmoid(b). */                               \
  void DeltaGates(std::span<const T_> a, std::span<const T_> b, std::span<const T_> a_log,         \
                  std::span<const T_> dt_bias, std::span<T_> g, std::span<T_> beta,                \
                  int64_t tokens, int64_t heads);                                                  \
  void DeltaGatesBackward(std::span<const T_> dg, std::span<const T_> dbeta,                       \
                          std::span<const T_> a, std::span<const T_> b, std::span<const T_> a_log, \
                          std::span<const T_> dt_bias, std::span<T_> da, std::span<T_> db,         \
                          int64_t tokens, int64_t heads);                                          \
  /* y[T,N] = x[T,N] * sigmoid(gate[T,G]): each run of N/G consecutive elements of a row           \
     shares one gate value (G = N: elementwise; G = 1: one scalar per token). */                   \
  void SigmoidGate(std::span<const T_> x, std::span<const T_> gate, std::span<T_> y,               \
                   int64_t tokens, int64_t n, int64_t groups);                                     \
  void SigmoidGateBackward(std::span<const T_> dy, std::span<const T_> x,                          \
                           std::span<const T_> gate, std::span<T_> dx, std::span<T_> dgate,        \
                           int64_t tokens, int64_t n, int64_t groups);                             \
  /* Key heads onto value heads: y[T, Hk*r, Dh], value head j = key head j / r (consecutive        \
     grouping, repeat-interleave). Backward sums the r copies into dx[T, Hk, Dh]. */               \
  void RepeatHeads(std::span<const T_> x, std::span<T_> y, int64_t tokens, int64_t heads,          \
                   int64_t repeat, int64_t dim);                                                   \
  void RepeatHeadsBackward(std::span<const T_> dy, std::span<T_> dx, int64_t tokens,               \
                           int64_t heads, int64_t repeat, int64_t dim);

namespace ref {
PQ_HYBRID_OPS(float)
PQ_HYBRID_OPS(double)
}  // namespace ref

namespace cpu {
PQ_HYBRID_OPS(float)
// The Gated DeltaNet recurrence (deltanet.h has the math and the reference): float, heads
// in parallel on the ops thread pool, same results as ref::GatedDeltaRule to float rounding.
// q, k[T,H,Dk], v[T,H,Dv], g, beta[T,H] -> out[T,H,Dv]; state_out[H,Dk,Dv] optional.
// Backward: dq, dk[T,H,Dk], dv[T,H,Dv], dg, dbeta[T,H] += (empty = skip), from dout[T,H,Dv];
// it saves the state every 64 tokens in a forward recompute and redoes each 64-token chunk
// in reverse (never inverting the update): O((T/64 + 64)·Dk·Dv) floats per head in flight.
void GatedDeltaRule(std::span<const float> q, std::span<const float> k, std::span<const float> v,
                    std::span<const float> g, std::span<const float> beta, std::span<float> out,
                    std::span<float> state_out, int64_t tokens, int64_t heads, int64_t key_dim,
                    int64_t value_dim);
void GatedDeltaRuleBackward(std::span<const float> dout, std::span<const float> q,
                            std::span<const float> k, std::span<const float> v,
                            std::span<const float> g, std::span<const float> beta,
                            std::span<float> dq, std::span<float> dk, std::span<float> dv,
                            std::span<float> dg, std::span<float> dbeta, int64_t tokens,
                            int64_t heads, int64_t key_dim, int64_t value_dim);
}  // namespace cpu

#undef PQ_HYBRID_OPS

}  // namespace pq::compute
