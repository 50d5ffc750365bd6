// Reference (scalar) ops, part 1: MatMul, RmsNorm, RoPE, SwiGLU, Embedding, CrossEntropy.
// The specification the fast ops are tested against: straightforward loops, every sum in
// double (also in the float instantiation), results rounded to T once at the end.
#include <algorithm>
#include <cmath>
#include <vector>

#include "pq/compute/op_checks.h"
#include "pq/compute/ops.h"
#include "pq/compute/ref_util.h"

namespace pq::compute::ref {
namespace {

using ref_util::Round;
using ref_util::Sigmoid;

using internal::CheckMatMul;
using internal::CheckMatMulBackward;

// y[T,N] = x[T,K] . w[N,K]^T + b[N]
template <typename T>
void MatMulT(std::span<const T> x, std::span<const T> w, std::span<const T> b, std::span<T> y,
             int64_t tokens, int64_t k, int64_t n) {
  CheckMatMul<T>(x, w, b, y, tokens, k, n);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = b.empty() ? 0.0 : static_cast<double>(b.data()[j]);
      for (int64_t i = 0; i < k; ++i)
        acc += static_cast<double>(x.data()[t * k + i]) * static_cast<double>(w.data()[j * k + i]);
      y.data()[t * n + j] = Round<T>(acc);
    }
  }
}

// dx[T,K] += dy[T,N] . w[N,K];  dw[N,K] += dy^T . x;  db[N] += sum_t dy
template <typename T>
void MatMulBackwardT(std::span<const T> dy, std::span<const T> x, std::span<const T> w,
                     std::span<T> dx, std::span<T> dw, std::span<T> db, int64_t tokens, int64_t k,
                     int64_t n) {
  CheckMatMulBackward<T>(dy, x, w, dx, dw, db, tokens, k, n);
  const T* g = dy.data();
  if (!dx.empty()) {
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = 0; i < k; ++i) {
        double acc = 0.0;
        for (int64_t j = 0; j < n; ++j)
          acc += static_cast<double>(g[t * n + j]) * static_cast<double>(w.data()[j * k + i]);
        dx.data()[t * k + i] = Round<T>(dx.data()[t * k + i] + acc);
      }
    }
  }
  if (!dw.empty()) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < k; ++i) {
        double acc = 0.0;
        for (int64_t t = 0; t < tokens; ++t)
          acc += static_cast<double>(g[t * n + j]) * static_cast<double>(x.data()[t * k + i]);
        dw.data()[j * k + i] = Round<T>(dw.data()[j * k + i] + acc);
      }
    }
  }
  if (!db.empty()) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t t = 0; t < tokens; ++t) acc += static_cast<double>(g[t * n + j]);
      db.data()[j] = Round<T>(db.data()[j] + acc);
    }
  }
}

// y[T,D] = (w + offset) * x * rstd,  rstd[T] = 1/sqrt(mean(x^2) + eps)
template <typename T>
void RmsNormT(std::span<const T> x, std::span<const T> w, float eps, float offset, std::span<T> y,
              std::span<T> rstd, int64_t tokens, int64_t dim) {
  internal::CheckRmsNorm<T>(x, w, y, rstd, tokens, dim);
  for (int64_t t = 0; t < tokens; ++t) {
    const T* xt = x.data() + t * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xt[i]) * static_cast<double>(xt[i]);
    const double r = 1.0 / std::sqrt(ss / static_cast<double>(dim) + static_cast<double>(eps));
    rstd.data()[t] = Round<T>(r);
    for (int64_t i = 0; i < dim; ++i) {
      const double wi = static_cast<double>(w.data()[i]) + static_cast<double>(offset);
      y.data()[t * dim + i] = Round<T>(wi * static_cast<double>(xt[i]) * r);
    }
  }
}

// With w' = w + offset, xh = x r, g = dy * w':
//   dw += sum_t dy * xh;   dx += r (g - xh mean_i(g_i xh_i))
template <typename T>
void RmsNormBackwardT(std::span<const T> dy, std::span<const T> x, std::span<const T> w,
                      std::span<const T> rstd, float offset, std::span<T> dx, std::span<T> dw,
                      int64_t tokens, int64_t dim) {
  internal::CheckRmsNormBackward<T>(dy, x, w, rstd, dx, dw, tokens, dim);
  std::vector<double> dw_acc(static_cast<size_t>(dim), 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    const double r = static_cast<double>(rstd.data()[t]);
    const T* xt = x.data() + t * dim;
    const T* gt = dy.data() + t * dim;
    double dot = 0.0;  // sum_i g_i xh_i
    for (int64_t i = 0; i < dim; ++i) {
      const double xh = static_cast<double>(xt[i]) * r;
      const double wi = static_cast<double>(w.data()[i]) + static_cast<double>(offset);
      dot += static_cast<double>(gt[i]) * wi * xh;
      dw_acc[static_cast<size_t>(i)] += static_cast<double>(gt[i]) * xh;
    }
    const double mean = dot / static_cast<double>(dim);
    if (dx.empty()) continue;
    for (int64_t i = 0; i < dim; ++i) {
      const double xh = static_cast<double>(xt[i]) * r;
      const double wi = static_cast<double>(w.data()[i]) + static_cast<double>(offset);
      T& d = dx.data()[t * dim + i];
      d = Round<T>(static_cast<double>(d) + r * (static_cast<double>(gt[i]) * wi - xh * mean));
    }
  }
  if (dw.empty()) return;
  for (int64_t i = 0; i < dim; ++i)
    dw.data()[i] = Round<T>(static_cast<double>(dw.data()[i]) + dw_acc[static_cast<size_t>(i)]);
}

// Rotates pairs (i, i + rot_dim/2) of every head by +angle (sign 1) or -angle (sign -1).
template <typename T>
void RotateT(std::span<T> x, std::span<const float> cos, std::span<const float> sin, int64_t tokens,
             int64_t heads, RopeSpec spec, double sign) {
  internal::CheckRope<T>(x, cos, sin, tokens, heads, spec);
  const int64_t dh = spec.head_dim, half = spec.rot_dim / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      T* xh = x.data() + (t * heads + h) * dh;
      for (int64_t i = 0; i < half; ++i) {
        const double c = static_cast<double>(cos.data()[t * half + i]);
        const double s = sign * static_cast<double>(sin.data()[t * half + i]);
        const double a = static_cast<double>(xh[i]), b = static_cast<double>(xh[i + half]);
        xh[i] = Round<T>(a * c - b * s);
        xh[i + half] = Round<T>(b * c + a * s);
      }
    }
  }
}

// h[n] = silu(g[n]) * u[n],  silu(g) = g sigmoid(g)
template <typename T>
void SwiGluT(std::span<const T> g, std::span<const T> u, std::span<T> h) {
  PQ_CHECK_SIZE(u, static_cast<int64_t>(g.size()), "SwiGlu: u[n] (n = g.size())");
  PQ_CHECK_SIZE(h, static_cast<int64_t>(g.size()), "SwiGlu: h[n] (n = g.size())");
  for (size_t i = 0; i < g.size(); ++i) {
    const double a = static_cast<double>(g[i]);
    h[i] = Round<T>(a * Sigmoid(a) * static_cast<double>(u[i]));
  }
}

// dg += dh u silu'(g), silu'(g) = s (1 + g (1 - s));  du += dh silu(g)
template <typename T>
void SwiGluBackwardT(std::span<const T> dh, std::span<const T> g, std::span<const T> u,
                     std::span<T> dg, std::span<T> du) {
  const int64_t n = static_cast<int64_t>(g.size());
  PQ_CHECK_SIZE(dh, n, "SwiGluBackward: dh[n] (n = g.size())");
  PQ_CHECK_SIZE(u, n, "SwiGluBackward: u[n] (n = g.size())");
  PQ_CHECK_OPT_SIZE(dg, n, "SwiGluBackward: dg[n]");
  PQ_CHECK_OPT_SIZE(du, n, "SwiGluBackward: du[n]");
  for (size_t i = 0; i < g.size(); ++i) {
    const double a = static_cast<double>(g[i]), s = Sigmoid(a);
    const double d = static_cast<double>(dh[i]);
    if (!dg.empty())
      dg[i] = Round<T>(static_cast<double>(dg[i]) +
                       d * static_cast<double>(u[i]) * s * (1.0 + a * (1.0 - s)));
    if (!du.empty()) du[i] = Round<T>(static_cast<double>(du[i]) + d * a * s);
  }
}

// y[T,D] = table[ids[t], :]
template <typename T>
void EmbeddingT(std::span<const T> table, std::span<const int32_t> ids, std::span<T> y,
                int64_t dim) {
  internal::CheckEmbedding<T>(table, ids, y, dim, "Embedding: y[T,D] (T = ids.size())");
  for (size_t t = 0; t < ids.size(); ++t) {
    const T* row = table.data() + static_cast<int64_t>(ids[t]) * dim;
    std::copy(row, row + dim, y.data() + static_cast<int64_t>(t) * dim);
  }
}

// dtable[ids[t], :] += dy[t, :]
template <typename T>
void EmbeddingBackwardT(std::span<const T> dy, std::span<const int32_t> ids, std::span<T> dtable,
                        int64_t dim) {
  if (dtable.empty()) {
    PQ_CHECK_SIZE(dy, static_cast<int64_t>(ids.size()) * dim, "EmbeddingBackward: dy[T,D]");
    return;
  }
  internal::CheckEmbedding<T>(dtable, ids, dy, dim, "EmbeddingBackward: dy[T,D]");
  for (size_t t = 0; t < ids.size(); ++t) {
    T* row = dtable.data() + static_cast<int64_t>(ids[t]) * dim;
    const T* g = dy.data() + static_cast<int64_t>(t) * dim;
    for (int64_t i = 0; i < dim; ++i) row[i] = Round<T>(static_cast<double>(row[i]) + g[i]);
  }
}

// nll[t] = logsumexp(logits[t]) - logits[t, targets[t]]  (0 for targets[t] < 0)
template <typename T>
void CrossEntropyT(std::span<const T> logits, std::span<const int32_t> targets, std::span<T> nll,
                   std::span<T> logsumexp, int64_t tokens, int64_t vocab) {
  internal::CheckCrossEntropy<T>(logits, targets, logsumexp, tokens, vocab);
  PQ_CHECK_SIZE(nll, tokens, "CrossEntropy: nll[T]");
  for (int64_t t = 0; t < tokens; ++t) {
    const T* l = logits.data() + t * vocab;
    const double m = static_cast<double>(*std::max_element(l, l + vocab));
    double sum = 0.0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(l[i]) - m);
    const double lse = m + std::log(sum);
    logsumexp.data()[t] = Round<T>(lse);
    const int32_t target = targets.data()[t];
    nll.data()[t] = target < 0 ? T(0) : Round<T>(lse - static_cast<double>(l[target]));
  }
}

// dlogits[t, :] += scale * (softmax(logits[t]) - onehot(targets[t]))  (targets[t] >= 0)
template <typename T>
void CrossEntropyBackwardChunkT(std::span<const T> logits, std::span<const int32_t> targets,
                                std::span<const T> logsumexp, T scale, std::span<T> dlogits,
                                int64_t tokens, int64_t v0, int64_t vc) {
  internal::CheckCrossEntropyChunk<T>(logits, targets, logsumexp, dlogits, tokens, v0, vc);
  if (dlogits.empty()) return;
  const double sc = static_cast<double>(scale);
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t target = targets.data()[t];
    if (target < 0) continue;
    const double lse = static_cast<double>(logsumexp.data()[t]);
    for (int64_t i = 0; i < vc; ++i) {
      const double p = std::exp(static_cast<double>(logits.data()[t * vc + i]) - lse);
      T& d = dlogits.data()[t * vc + i];
      d = Round<T>(static_cast<double>(d) + sc * (p - (v0 + i == target ? 1.0 : 0.0)));
    }
  }
}

template <typename T>
void CrossEntropyBackwardT(std::span<const T> logits, std::span<const int32_t> targets,
                           std::span<const T> logsumexp, T scale, std::span<T> dlogits,
                           int64_t tokens, int64_t vocab) {
  internal::CheckCrossEntropy<T>(logits, targets, logsumexp, tokens, vocab);
  PQ_CHECK_OPT_SIZE(dlogits, tokens * vocab, "CrossEntropyBackward: dlogits[T,V]");
  CrossEntropyBackwardChunkT<T>(logits, targets, logsumexp, scale, dlogits, tokens, 0, vocab);
}

}  // namespace

// The declared (non-template) ops forward to the templates above.
#define PQ_REF_OPS_PART1(T_)                                                                       \
  void MatMul(std::span<const T_> x, std::span<const T_> w, std::span<const T_> b,                 \
              std::span<T_> y, int64_t tokens, int64_t k, int64_t n) {                             \
    MatMulT<T_>(x, w, b, y, tokens, k, n);                                                         \
  }                                                                                                \
  void MatMulBackward(std::span<const T_> dy, std::span<const T_> x, std::span<const T_> w,        \
                      std::span<T_> dx, std::span<T_> dw, std::span<T_> db, int64_t tokens,        \
                      int64_t k, int64_t n) {                                                      \
    MatMulBackwardT<T_>(dy, x, w, dx, dw, db, tokens, k, n);                                       \
  }                                                                                                \
  void GramUpdate(std::span<const T_> x, std::span<T_> h, int64_t tokens, int64_t k) {             \
    MatMulBackwardT<T_>(x, x, {}, {}, h, {}, tokens, k, k);                                        \
  }                                                                                                \
  void RmsNorm(std::span<const T_> x, std::span<const T_> w, float eps, float offset,              \
               std::span<T_> y, std::span<T_> rstd, int64_t tokens, int64_t dim) {                 \
    RmsNormT<T_>(x, w, eps, offset, y, rstd, tokens, dim);                                         \
  }                                                                                                \
  void RmsNormBackward(std::span<const T_> dy, std::span<const T_> x, std::span<const T_> w,       \
                       std::span<const T_> rstd, float offset, std::span<T_> dx, std::span<T_> dw, \
                       int64_t tokens, int64_t dim) {                                              \
    RmsNormBackwardT<T_>(dy, x, w, rstd, offset, dx, dw, tokens, dim);                             \
  }                                                                                                \
  void Rope(std::span<T_> x, std::span<const float> cos, std::span<const float> sin,               \
            int64_t tokens, int64_t heads, RopeSpec spec) {                                        \
    RotateT<T_>(x, cos, sin, tokens, heads, spec, 1.0);                                            \
  }                                                                                                \
  void RopeBackward(std::span<T_> dx, std::span<const float> cos, std::span<const float> sin,      \
                    int64_t tokens, int64_t heads, RopeSpec spec) {                                \
    RotateT<T_>(dx, cos, sin, tokens, heads, spec, -1.0);                                          \
  }                                                                                                \
  void SwiGlu(std::span<const T_> g, std::span<const T_> u, std::span<T_> h) {                     \
    SwiGluT<T_>(g, u, h);                                                                          \
  }                                                                                                \
  void SwiGluBackward(std::span<const T_> dh, std::span<const T_> g, std::span<const T_> u,        \
                      std::span<T_> dg, std::span<T_> du) {                                        \
    SwiGluBackwardT<T_>(dh, g, u, dg, du);                                                         \
  }                                                                                                \
  void Embedding(std::span<const T_> table, std::span<const int32_t> ids, std::span<T_> y,         \
                 int64_t dim) {                                                                    \
    EmbeddingT<T_>(table, ids, y, dim);                                                            \
  }                                                                                                \
  void EmbeddingBackward(std::span<const T_> dy, std::span<const int32_t> ids,                     \
                         std::span<T_> dtable, int64_t dim) {                                      \
    EmbeddingBackwardT<T_>(dy, ids, dtable, dim);                                                  \
  }                                                                                                \
  void CrossEntropy(std::span<const T_> logits, std::span<const int32_t> targets,                  \
                    std::span<T_> nll, std::span<T_> logsumexp, int64_t tokens, int64_t vocab) {   \
    CrossEntropyT<T_>(logits, targets, nll, logsumexp, tokens, vocab);                             \
  }                                                                                                \
  void CrossEntropyBackward(std::span<const T_> logits, std::span<const int32_t> targets,          \
                            std::span<const T_> logsumexp, T_ scale, std::span<T_> dlogits,        \
                            int64_t tokens, int64_t vocab) {                                       \
    CrossEntropyBackwardT<T_>(logits, targets, logsumexp, scale, dlogits, tokens, vocab);          \
  }                                                                                                \
  void CrossEntropyBackwardChunk(std::span<const T_> logits, std::span<const int32_t> targets,     \
                                 std::span<const T_> logsumexp, T_ scale, std::span<T_> dlogits,   \
                                 int64_t tokens, int64_t v0, int64_t vc) {                         \
    CrossEntropyBackwardChunkT<T_>(logits, targets, logsumexp, scale, dlogits, tokens, v0, vc);    \
  }

PQ_REF_OPS_PART1(float)
PQ_REF_OPS_PART1(double)
#undef PQ_REF_OPS_PART1

}  // namespace pq::compute::ref
