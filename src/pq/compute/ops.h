// The compute-op interface: every op the model code calls, forward and backward.
// Two implementations with the same signatures: `ref` (scalar, templated on the element type
// so complex-step / double gradient checks are possible; the specification) and `cpu`
// (fast: BLAS sgemm, threads; checked against `ref`). Model code calls `cpu::` ops only.
//
// Glossary (shape comments): T tokens, D hidden size, H query heads, Hkv key/value heads,
// Dh head dim, F FFN size, V vocab, E experts, K top-k, N/M generic matrix dims.
// All tensors are row-major and contiguous. Backward ops ACCUMULATE (+=) into gradient
// outputs (so callers zero them first); an empty span means "not needed, skip".
#pragma once

#include <cstdint>
#include <span>

namespace pq::compute {

struct RopeSpec {
  int head_dim = 0;  // Dh
  int rot_dim = 0;   // leading dims rotated (== head_dim unless partial rotary); even
};

#define PQ_COMPUTE_OPS(T_)                                                                         \
  /* y[T,N] = x[T,K] . w[N,K]^T + b[N]  (b may be empty) */                                        \
  void MatMul(std::span<const T_> x, std::span<const T_> w, std::span<const T_> b,                 \
              std::span<T_> y, int64_t tokens, int64_t k, int64_t n);                              \
  /* dx[T,K] += dy[T,N] . w[N,K];  dw[N,K] += dy^T . x;  db[N] += sum_t dy */                      \
  void MatMulBackward(std::span<const T_> dy, std::span<const T_> x, std::span<const T_> w,        \
                      std::span<T_> dx, std::span<T_> dw, std::span<T_> db, int64_t tokens,        \
                      int64_t k, int64_t n);                                                       \
  /* h[K,K] += x[T,K]^T . x  (a Linear's input second moment; h stays exactly symmetric) */        \
  void GramUpdate(std::span<const T_> x, std::span<T_> h, int64_t tokens, int64_t k);              \
  /* y[T,D] = (w + offset) * x * rstd,  rstd[T] = 1/sqrt(mean(x^2) + eps) (saved).                 \
     offset 0: plain RMSNorm; 1: zero-centred (1+w). */                                            \
  void RmsNorm(std::span<const T_> x, std::span<const T_> w, float eps, float offset,              \
               std::span<T_> y, std::span<T_> rstd, int64_t tokens, int64_t dim);                  \
  void RmsNormBackward(std::span<const T_> dy, std::span<const T_> x, std::span<const T_> w,       \
                       std::span<const T_> rstd, float offset, std::span<T_> dx, std::span<T_> dw, \
                       int64_t tokens, int64_t dim);                                               \
  /* In place on x[T, heads, Dh]: rotate-half RoPE on the first rot_dim dims of each head,         \
     pairs (i, i + rot_dim/2), with cos/sin[T, rot_dim/2]. */                                      \
  void Rope(std::span<T_> x, std::span<const float> cos, std::span<const float> sin,               \
            int64_t tokens, int64_t heads, RopeSpec spec);                                         \
  /* In place on dx: the transpose (inverse rotation). */                                          \
  void RopeBackward(std::span<T_> dx, std::span<const float> cos, std::span<const float> sin,      \
                    int64_t tokens, int64_t heads, RopeSpec spec);                                 \
  /* Causal GQA attention: q[T,H,Dh], k/v[T,Hkv,Dh] -> o[T,H,Dh]; query head h reads kv            \
     head h / (H/Hkv). probs[H,T,T] (softmax rows, saved for backward). */                         \
  void Attention(std::span<const T_> q, std::span<const T_> k, std::span<const T_> v,              \
                 std::span<T_> o, std::span<T_> probs, int64_t tokens, int64_t heads,              \
                 int64_t kv_heads, int64_t head_dim, float scale);                                 \
  void AttentionBackward(std::span<const T_> d_o, std::span<const T_> q, std::span<const T_> k,    \
                         std::span<const T_> v, std::span<const T_> probs, std::span<T_> dq,       \
                         std::span<T_> dk, std::span<T_> dv, int64_t tokens, int64_t heads,        \
                         int64_t kv_heads, int64_t head_dim, float scale);                         \
  /* h[n] = silu(g[n]) * u[n] */                                                                   \
  void SwiGlu(std::span<const T_> g, std::span<const T_> u, std::span<T_> h);                      \
  void SwiGluBackward(std::span<const T_> dh, std::span<const T_> g, std::span<const T_> u,        \
                      std::span<T_> dg, std::span<T_> du);                                         \
  /* MoE router: probs[T,E] = softmax(logits[T,E]) (saved); per token the top-k experts            \
     idx[T,K] (descending prob, ties -> lower index) and weights[T,K] = their probs,               \
     divided by their sum when norm_topk. */                                                       \
  void RouterTopK(std::span<const T_> logits, std::span<T_> probs, std::span<int32_t> idx,         \
                  std::span<T_> weights, int64_t tokens, int64_t experts, int64_t top_k,           \
                  bool norm_topk);                                                                 \
  /* dlogits[T,E] += d(weights)/d(logits)^T . dweights[T,K] (selection held fixed). */             \
  void RouterTopKBackward(std::span<const T_> dweights, std::span<const T_> probs,                 \
                          std::span<const int32_t> idx, std::span<T_> dlogits, int64_t tokens,     \
                          int64_t experts, int64_t top_k, bool norm_topk);                         \
  /* y[T,D] = table[ids[t], :] */                                                                  \
  void Embedding(std::span<const T_> table, std::span<const int32_t> ids, std::span<T_> y,         \
                 int64_t dim);                                                                     \
  void EmbeddingBackward(std::span<const T_> dy, std::span<const int32_t> ids,                     \
                         std::span<T_> dtable, int64_t dim);                                       \
  /* Per-token NLL of targets[T] under logits[T,V] (targets < 0 ignored: nll 0).                   \
     Also writes logsumexp[T] (saved). */                                                          \
  void CrossEntropy(std::span<const T_> logits, std::span<const int32_t> targets,                  \
                    std::span<T_> nll, std::span<T_> logsumexp, int64_t tokens, int64_t vocab);    \
  /* dlogits[T,V] += scale * (softmax(logits) - onehot(target)) for non-ignored tokens. */         \
  void CrossEntropyBackward(std::span<const T_> logits, std::span<const int32_t> targets,          \
                            std::span<const T_> logsumexp, T_ scale, std::span<T_> dlogits,        \
                            int64_t tokens, int64_t vocab);                                        \
  /* The same for the vocabulary chunk [v0, v0+Vc) of logits that are never whole:                 \
     dlogits[T,Vc] += scale * (exp(logits[T,Vc] - logsumexp[T]) - onehot(targets - v0)),           \
     targets[T] the whole-vocabulary ids (the one-hot only where one falls in the chunk),          \
     logsumexp over the whole vocabulary. */                                                       \
  void CrossEntropyBackwardChunk(std::span<const T_> logits, std::span<const int32_t> targets,     \
                                 std::span<const T_> logsumexp, T_ scale, std::span<T_> dlogits,   \
                                 int64_t tokens, int64_t v0, int64_t vc);

namespace ref {
PQ_COMPUTE_OPS(float)
PQ_COMPUTE_OPS(double)
}  // namespace ref

namespace cpu {
// Threads used by the fast ops: the installed ExecContext's (core/exec_context.h; library
// entry points install the one in their options). SetNumThreads sets the count outside any
// context (0 = all cores), for tests and benchmarks that call the ops directly.
void SetNumThreads(int n);
int NumThreads();
PQ_COMPUTE_OPS(float)
}  // namespace cpu

#undef PQ_COMPUTE_OPS

// RoPE tables: cos/sin[T, rot_dim/2] for positions[T] and inv_freq[rot_dim/2] (angles in
// double, stored as float).
void RopeTables(std::span<const int32_t> positions, std::span<const double> inv_freq,
                std::span<float> cos, std::span<float> sin);

}  // namespace pq::compute
