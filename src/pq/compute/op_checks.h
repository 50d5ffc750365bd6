// Shape checks shared by the `ref` and `cpu` ops: every span is checked against the shape
// arguments, and a mismatch aborts with the op, the tensor and both sizes.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>

#include "pq/compute/ops.h"
#include "pq/core/check.h"

namespace pq::compute::internal {

// Aborts unless `got` == `want` (or, when `optional`, got == 0). `what` names the op and
// tensor with its shape, e.g. "MatMul: x[T,K]".
inline void CheckSpanSize(size_t got, int64_t want, bool optional, const char* what,
                          const char* file, int line) {
  if (want >= 0 && got == static_cast<size_t>(want)) return;
  if (optional && got == 0) return;
  char msg[256];
  std::snprintf(msg, sizeof(msg), "%s has %zu elements, shape says %lld%s", what, got,
                static_cast<long long>(want), optional ? " (or 0 to skip)" : "");
  ::pq::internal::CheckFailed(file, line, "span size matches shape", msg);
}

}  // namespace pq::compute::internal

// A required span: span_.size() == want_.
#define PQ_CHECK_SIZE(span_, want_, what_) \
  ::pq::compute::internal::CheckSpanSize((span_).size(), (want_), false, what_, __FILE__, __LINE__)
// An optional (gradient) span: empty, or span_.size() == want_.
#define PQ_CHECK_OPT_SIZE(span_, want_, what_) \
  ::pq::compute::internal::CheckSpanSize((span_).size(), (want_), true, what_, __FILE__, __LINE__)

namespace pq::compute::internal {

// Per-op shape checks (the same for `ref` and `cpu`). Names follow ops.h.
template <typename T>
void CheckMatMul(std::span<const T> x, std::span<const T> w, std::span<const T> b,
                 std::span<const T> y, int64_t tokens, int64_t k, int64_t n) {
  PQ_CHECK(tokens >= 0 && k >= 0 && n >= 0, "MatMul: negative shape");
  PQ_CHECK_SIZE(x, tokens * k, "MatMul: x[T,K]");
  PQ_CHECK_SIZE(w, n * k, "MatMul: w[N,K]");
  PQ_CHECK_OPT_SIZE(b, n, "MatMul: b[N]");
  PQ_CHECK_SIZE(y, tokens * n, "MatMul: y[T,N]");
}

template <typename T>
void CheckMatMulBackward(std::span<const T> dy, std::span<const T> x, std::span<const T> w,
                         std::span<const T> dx, std::span<const T> dw, std::span<const T> db,
                         int64_t tokens, int64_t k, int64_t n) {
  PQ_CHECK(tokens >= 0 && k >= 0 && n >= 0, "MatMulBackward: negative shape");
  PQ_CHECK_SIZE(dy, tokens * n, "MatMulBackward: dy[T,N]");
  PQ_CHECK_OPT_SIZE(dx, tokens * k, "MatMulBackward: dx[T,K]");
  PQ_CHECK_OPT_SIZE(dw, n * k, "MatMulBackward: dw[N,K]");
  PQ_CHECK_OPT_SIZE(db, n, "MatMulBackward: db[N]");
  // x is only read for dw, w only for dx.
  if (!dw.empty()) PQ_CHECK_SIZE(x, tokens * k, "MatMulBackward: x[T,K]");
  if (!dx.empty()) PQ_CHECK_SIZE(w, n * k, "MatMulBackward: w[N,K]");
}

template <typename T>
void CheckRmsNorm(std::span<const T> x, std::span<const T> w, std::span<const T> y,
                  std::span<const T> rstd, int64_t tokens, int64_t dim) {
  PQ_CHECK(tokens >= 0 && dim > 0, "RmsNorm: need tokens >= 0, dim > 0");
  PQ_CHECK_SIZE(x, tokens * dim, "RmsNorm: x[T,D]");
  PQ_CHECK_SIZE(w, dim, "RmsNorm: w[D]");
  PQ_CHECK_SIZE(y, tokens * dim, "RmsNorm: y[T,D]");
  PQ_CHECK_SIZE(rstd, tokens, "RmsNorm: rstd[T]");
}

template <typename T>
void CheckRmsNormBackward(std::span<const T> dy, std::span<const T> x, std::span<const T> w,
                          std::span<const T> rstd, std::span<const T> dx, std::span<const T> dw,
                          int64_t tokens, int64_t dim) {
  PQ_CHECK(tokens >= 0 && dim > 0, "RmsNormBackward: need tokens >= 0, dim > 0");
  PQ_CHECK_SIZE(dy, tokens * dim, "RmsNormBackward: dy[T,D]");
  PQ_CHECK_SIZE(x, tokens * dim, "RmsNormBackward: x[T,D]");
  PQ_CHECK_SIZE(w, dim, "RmsNormBackward: w[D]");
  PQ_CHECK_SIZE(rstd, tokens, "RmsNormBackward: rstd[T]");
  PQ_CHECK_OPT_SIZE(dx, tokens * dim, "RmsNormBackward: dx[T,D]");
  PQ_CHECK_OPT_SIZE(dw, dim, "RmsNormBackward: dw[D]");
}

template <typename T>
void CheckRope(std::span<const T> x, std::span<const float> cos, std::span<const float> sin,
               int64_t tokens, int64_t heads, RopeSpec spec) {
  PQ_CHECK(tokens >= 0 && heads >= 0, "Rope: negative shape");
  PQ_CHECK(spec.head_dim > 0, "Rope: head_dim must be > 0");
  PQ_CHECK(spec.rot_dim >= 0 && spec.rot_dim <= spec.head_dim && spec.rot_dim % 2 == 0,
           "Rope: rot_dim must be even and in [0, head_dim]");
  PQ_CHECK_SIZE(x, tokens * heads * spec.head_dim, "Rope: x[T,heads,Dh]");
  PQ_CHECK_SIZE(cos, tokens * (spec.rot_dim / 2), "Rope: cos[T,rot_dim/2]");
  PQ_CHECK_SIZE(sin, tokens * (spec.rot_dim / 2), "Rope: sin[T,rot_dim/2]");
}

template <typename T>
void CheckAttention(std::span<const T> q, std::span<const T> k, std::span<const T> v,
                    std::span<const T> probs, int64_t tokens, int64_t heads, int64_t kv_heads,
                    int64_t head_dim) {
  PQ_CHECK(tokens >= 0 && heads > 0 && kv_heads > 0 && head_dim > 0,
           "Attention: need tokens >= 0 and heads, kv_heads, head_dim > 0");
  PQ_CHECK(heads % kv_heads == 0, "Attention: heads must be a multiple of kv_heads");
  PQ_CHECK_SIZE(q, tokens * heads * head_dim, "Attention: q[T,H,Dh]");
  PQ_CHECK_SIZE(k, tokens * kv_heads * head_dim, "Attention: k[T,Hkv,Dh]");
  PQ_CHECK_SIZE(v, tokens * kv_heads * head_dim, "Attention: v[T,Hkv,Dh]");
  PQ_CHECK_SIZE(probs, heads * tokens * tokens, "Attention: probs[H,T,T]");
}

template <typename T>
void CheckRouter(std::span<const T> logits_or_dlogits, std::span<const T> probs,
                 std::span<const int32_t> idx, std::span<const T> weights, int64_t tokens,
                 int64_t experts, int64_t top_k, bool backward) {
  PQ_CHECK(tokens >= 0 && experts > 0 && top_k > 0 && top_k <= experts,
           "RouterTopK: need tokens >= 0 and 0 < top_k <= experts");
  if (backward) {
    PQ_CHECK_OPT_SIZE(logits_or_dlogits, tokens * experts, "RouterTopKBackward: dlogits[T,E]");
    PQ_CHECK_SIZE(weights, tokens * top_k, "RouterTopKBackward: dweights[T,K]");
  } else {
    PQ_CHECK_SIZE(logits_or_dlogits, tokens * experts, "RouterTopK: logits[T,E]");
    PQ_CHECK_SIZE(weights, tokens * top_k, "RouterTopK: weights[T,K]");
  }
  PQ_CHECK_SIZE(probs, tokens * experts, "RouterTopK: probs[T,E]");
  PQ_CHECK_SIZE(idx, tokens * top_k, "RouterTopK: idx[T,K]");
}

template <typename T>
void CheckCrossEntropy(std::span<const T> logits, std::span<const int32_t> targets,
                       std::span<const T> logsumexp, int64_t tokens, int64_t vocab) {
  PQ_CHECK(tokens >= 0 && vocab > 0, "CrossEntropy: need tokens >= 0, vocab > 0");
  PQ_CHECK_SIZE(logits, tokens * vocab, "CrossEntropy: logits[T,V]");
  PQ_CHECK_SIZE(targets, tokens, "CrossEntropy: targets[T]");
  PQ_CHECK_SIZE(logsumexp, tokens, "CrossEntropy: logsumexp[T]");
  for (const int32_t t : targets) PQ_CHECK(t < vocab, "CrossEntropy: target >= vocab");
}

// One vocabulary chunk [v0, v0 + vc) of CrossEntropyBackward: logits [T, vc].
template <typename T>
void CheckCrossEntropyChunk(std::span<const T> logits, std::span<const int32_t> targets,
                            std::span<const T> logsumexp, std::span<const T> dlogits,
                            int64_t tokens, int64_t v0, int64_t vc) {
  PQ_CHECK(tokens >= 0 && v0 >= 0 && vc > 0, "CrossEntropyBackwardChunk: need v0 >= 0, Vc > 0");
  PQ_CHECK_SIZE(logits, tokens * vc, "CrossEntropyBackwardChunk: logits[T,Vc]");
  PQ_CHECK_SIZE(targets, tokens, "CrossEntropyBackwardChunk: targets[T]");
  PQ_CHECK_SIZE(logsumexp, tokens, "CrossEntropyBackwardChunk: logsumexp[T]");
  PQ_CHECK_OPT_SIZE(dlogits, tokens * vc, "CrossEntropyBackwardChunk: dlogits[T,Vc]");
}

// Embedding: returns the number of table rows; every id must be a valid row. `y` is the
// output (forward) or dy (backward).
template <typename T>
int64_t CheckEmbedding(std::span<const T> table, std::span<const int32_t> ids, std::span<const T> y,
                       int64_t dim, const char* what_y) {
  PQ_CHECK(dim > 0, "Embedding: dim must be > 0");
  PQ_CHECK(table.size() % static_cast<size_t>(dim) == 0,
           "Embedding: table size is not a multiple of dim");
  const int64_t rows = static_cast<int64_t>(table.size()) / dim;
  PQ_CHECK_SIZE(y, static_cast<int64_t>(ids.size()) * dim, what_y);
  for (const int32_t id : ids) PQ_CHECK(id >= 0 && id < rows, "Embedding: id out of range");
  return rows;
}

}  // namespace pq::compute::internal

// Shape checks of the hybrid-layer ops (hybrid_ops.h) and of cpu::GatedDeltaRule: the same
// for `ref` and `cpu`. Names follow hybrid_ops.h.
namespace pq::compute::internal {

// CausalConv1dSilu(Backward): x and y (or dy) [T,C], w[C,Kc].
template <typename T>
void CheckCausalConv(std::span<const T> x, std::span<const T> w, std::span<const T> y_or_dy,
                     int64_t tokens, int64_t channels, int64_t kernel) {
  PQ_CHECK(tokens >= 0 && channels >= 0 && kernel > 0,
           "CausalConv1dSilu: need tokens, channels >= 0 and kernel > 0");
  PQ_CHECK_SIZE(x, tokens * channels, "CausalConv1dSilu: x[T,C]");
  PQ_CHECK_SIZE(w, channels * kernel, "CausalConv1dSilu: w[C,Kc]");
  PQ_CHECK_SIZE(y_or_dy, tokens * channels, "CausalConv1dSilu: y / dy[T,C]");
}

template <typename T>
void CheckCausalConvBackward(std::span<const T> dy, std::span<const T> x, std::span<const T> w,
                             std::span<const T> dx, std::span<const T> dw, int64_t tokens,
                             int64_t channels, int64_t kernel) {
  CheckCausalConv<T>(x, w, dy, tokens, channels, kernel);
  PQ_CHECK_OPT_SIZE(dx, tokens * channels, "CausalConv1dSiluBackward: dx[T,C]");
  PQ_CHECK_OPT_SIZE(dw, channels * kernel, "CausalConv1dSiluBackward: dw[C,Kc]");
}

// L2Norm(Backward): x and y (or dy) [R,Dh], inv[R].
template <typename T>
void CheckL2Norm(std::span<const T> x, std::span<const T> y_or_dy, std::span<const T> inv,
                 int64_t rows, int64_t dim) {
  PQ_CHECK(rows >= 0 && dim > 0, "L2Norm: need rows >= 0, dim > 0");
  PQ_CHECK_SIZE(x, rows * dim, "L2Norm: x[R,Dh]");
  PQ_CHECK_SIZE(y_or_dy, rows * dim, "L2Norm: y / dy[R,Dh]");
  PQ_CHECK_SIZE(inv, rows, "L2Norm: inv[R]");
}

// GatedRmsNorm(Backward): x, z and y (or dy) [R,Dh], w[Dh], rstd[R].
template <typename T>
void CheckGatedRmsNorm(std::span<const T> x, std::span<const T> z, std::span<const T> w,
                       std::span<const T> y_or_dy, std::span<const T> rstd, int64_t rows,
                       int64_t dim) {
  PQ_CHECK(rows >= 0 && dim > 0, "GatedRmsNorm: need rows >= 0, dim > 0");
  PQ_CHECK_SIZE(x, rows * dim, "GatedRmsNorm: x[R,Dh]");
  PQ_CHECK_SIZE(z, rows * dim, "GatedRmsNorm: z[R,Dh]");
  PQ_CHECK_SIZE(w, dim, "GatedRmsNorm: w[Dh]");
  PQ_CHECK_SIZE(y_or_dy, rows * dim, "GatedRmsNorm: y / dy[R,Dh]");
  PQ_CHECK_SIZE(rstd, rows, "GatedRmsNorm: rstd[R]");
}

template <typename T>
void CheckGatedRmsNormBackward(std::span<const T> dy, std::span<const T> x, std::span<const T> z,
                               std::span<const T> w, std::span<const T> rstd, std::span<const T> dx,
                               std::span<const T> dz, std::span<const T> dw, int64_t rows,
                               int64_t dim) {
  CheckGatedRmsNorm<T>(x, z, w, dy, rstd, rows, dim);
  PQ_CHECK_OPT_SIZE(dx, rows * dim, "GatedRmsNormBackward: dx[R,Dh]");
  PQ_CHECK_OPT_SIZE(dz, rows * dim, "GatedRmsNormBackward: dz[R,Dh]");
  PQ_CHECK_OPT_SIZE(dw, dim, "GatedRmsNormBackward: dw[Dh]");
}

// DeltaGates(Backward): a, b and g, beta (or dg, dbeta) [T,Hv]; a_log, dt_bias[Hv].
template <typename T>
void CheckDeltaGates(std::span<const T> a, std::span<const T> b, std::span<const T> a_log,
                     std::span<const T> dt_bias, std::span<const T> g_or_dg,
                     std::span<const T> beta_or_dbeta, int64_t tokens, int64_t heads) {
  PQ_CHECK(tokens >= 0 && heads > 0, "DeltaGates: need tokens >= 0, heads > 0");
  PQ_CHECK_SIZE(a, tokens * heads, "DeltaGates: a[T,Hv]");
  PQ_CHECK_SIZE(b, tokens * heads, "DeltaGates: b[T,Hv]");
  PQ_CHECK_SIZE(a_log, heads, "DeltaGates: a_log[Hv]");
  PQ_CHECK_SIZE(dt_bias, heads, "DeltaGates: dt_bias[Hv]");
  PQ_CHECK_SIZE(g_or_dg, tokens * heads, "DeltaGates: g / dg[T,Hv]");
  PQ_CHECK_SIZE(beta_or_dbeta, tokens * heads, "DeltaGates: beta / dbeta[T,Hv]");
}

// SigmoidGate(Backward): x and y (or dy) [T,N], gate[T,G], G divides N.
template <typename T>
void CheckSigmoidGate(std::span<const T> x, std::span<const T> gate, std::span<const T> y_or_dy,
                      int64_t tokens, int64_t n, int64_t groups) {
  PQ_CHECK(tokens >= 0 && n > 0 && groups > 0, "SigmoidGate: need tokens >= 0, n, groups > 0");
  PQ_CHECK(n % groups == 0, "SigmoidGate: n must be a multiple of groups");
  PQ_CHECK_SIZE(x, tokens * n, "SigmoidGate: x[T,N]");
  PQ_CHECK_SIZE(gate, tokens * groups, "SigmoidGate: gate[T,G]");
  PQ_CHECK_SIZE(y_or_dy, tokens * n, "SigmoidGate: y / dy[T,N]");
}

// RepeatHeads(Backward): x (or dx) [T,Hk,Dh], y (or dy) [T,Hk*r,Dh]; x optional in backward.
template <typename T>
void CheckRepeatHeads(std::span<const T> x, std::span<const T> y, int64_t tokens, int64_t heads,
                      int64_t repeat, int64_t dim, bool backward) {
  PQ_CHECK(tokens >= 0 && heads > 0 && repeat > 0 && dim > 0,
           "RepeatHeads: need tokens >= 0 and heads, repeat, dim > 0");
  if (backward) {
    PQ_CHECK_OPT_SIZE(x, tokens * heads * dim, "RepeatHeadsBackward: dx[T,Hk,Dh]");
    PQ_CHECK_SIZE(y, tokens * heads * repeat * dim, "RepeatHeadsBackward: dy[T,Hk*r,Dh]");
  } else {
    PQ_CHECK_SIZE(x, tokens * heads * dim, "RepeatHeads: x[T,Hk,Dh]");
    PQ_CHECK_SIZE(y, tokens * heads * repeat * dim, "RepeatHeads: y[T,Hk*r,Dh]");
  }
}

// GatedDeltaRule inputs: q, k[T,H,Dk], v[T,H,Dv], g, beta[T,H] (deltanet.h).
template <typename T>
void CheckGatedDeltaRule(std::span<const T> q, std::span<const T> k, std::span<const T> v,
                         std::span<const T> g, std::span<const T> beta, int64_t tokens,
                         int64_t heads, int64_t key_dim, int64_t value_dim) {
  PQ_CHECK(tokens >= 0 && heads > 0 && key_dim > 0 && value_dim > 0,
           "GatedDeltaRule: need tokens >= 0 and heads, key_dim, value_dim > 0");
  PQ_CHECK_SIZE(q, tokens * heads * key_dim, "GatedDeltaRule: q[T,H,Dk]");
  PQ_CHECK_SIZE(k, tokens * heads * key_dim, "GatedDeltaRule: k[T,H,Dk]");
  PQ_CHECK_SIZE(v, tokens * heads * value_dim, "GatedDeltaRule: v[T,H,Dv]");
  PQ_CHECK_SIZE(g, tokens * heads, "GatedDeltaRule: g[T,H]");
  PQ_CHECK_SIZE(beta, tokens * heads, "GatedDeltaRule: beta[T,H]");
}

}  // namespace pq::compute::internal
