// Fast CPU ops (float): OpenBLAS sgemm for the matrix products, plain loops threaded over
// tokens (or columns, for reductions over tokens) for the rest. Checked against `ref`.
// Reductions (norm statistics, softmax / logsumexp sums, bias and weight sums) accumulate in
// double; everything else is float.
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <vector>

#include "pq/compute/cpu_util.h"
#include "pq/compute/op_checks.h"
#include "pq/compute/ops.h"
#include "pq/core/exec_context.h"
#include "pq/core/thread_pool.h"

namespace pq::compute::cpu {
namespace {

// Below this much work (roughly element operations) a chunk is not worth a thread.
constexpr int64_t kMinWorkPerThread = 1 << 15;

}  // namespace

void SetNumThreads(int n) {
  PQ_CHECK(n >= 0, "SetNumThreads: n must be >= 0 (0 = all cores)");
  SetProcessThreads(n);
  openblas_set_num_threads(1);  // we thread around sgemm ourselves (see Gemm)
}

int NumThreads() { return ExecThreads(); }

namespace internal {

void ParallelRange(int64_t n, int64_t work_per_item,
                   const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t work = n * std::max<int64_t>(work_per_item, 1);
  const int64_t threads =
      std::min<int64_t>({static_cast<int64_t>(NumThreads()), n, work / kMinWorkPerThread + 1});
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  ParallelFor(static_cast<size_t>(n), static_cast<int>(threads),
              [&fn](size_t b, size_t e) { fn(static_cast<int64_t>(b), static_cast<int64_t>(e)); });
}

namespace {

void GemmOne(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
             int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
              static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

// C is cut into blocks by its shape alone — never by the thread count — and each block is one
// single-threaded sgemm, so every element of C is computed by the same call with 1 or N
// threads: results are bit-identical across --threads. A block has at least this many
// multiply-adds (one more sgemm call must pay for itself) and at least kMinGemmBlock rows or
// columns (each call re-packs the other operand), and there are at most kMaxGemmBlocks.
constexpr int64_t kMinGemmWorkPerBlock = 1 << 20;
constexpr int64_t kMinGemmBlock = 64;
constexpr int64_t kMaxGemmBlocks = 64;

// The block size along a split dimension of length `d` whose one row/column costs `work_per`
// multiply-adds: a multiple of 16 (whole SIMD panels).
int64_t GemmBlock(int64_t d, int64_t work_per) {
  const int64_t by_work = (kMinGemmWorkPerBlock + work_per - 1) / std::max<int64_t>(work_per, 1);
  const int64_t block =
      std::max({kMinGemmBlock, by_work, (d + kMaxGemmBlocks - 1) / kMaxGemmBlocks});
  return std::min(d, (block + 15) / 16 * 16);
}

}  // namespace

// OpenBLAS runs single-threaded (its pthread pool spins with sched_yield and fights our own
// threads on small machines); we split C into row or column blocks (GemmBlock) and hand the
// blocks to our threads.
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  PQ_CHECK(m >= 0 && n >= 0 && k >= 0, "Gemm: negative size");
  if (m == 0 || n == 0) return;
  if (k == 0) {  // op(A) op(B) is all zeros
    if (beta == 1.0f) return;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  PQ_CHECK(std::max({m, n, k, lda, ldb, ldc}) <= INT_MAX, "Gemm: size exceeds BLAS int range");
  static const bool blas_single = (openblas_set_num_threads(1), true);  // even before SetNumThreads
  (void)blas_single;
  const bool by_rows = m >= n;  // row blocks of C (rows of op(A)), else column blocks
  const int64_t d = by_rows ? m : n;
  const int64_t block = GemmBlock(d, (by_rows ? n : m) * k);
  const int64_t blocks = (d + block - 1) / block;
  auto run = [&](int64_t i) {
    const int64_t p0 = i * block, len = std::min(block, d - p0);
    if (by_rows) {
      const float* a0 = trans_a ? a + p0 : a + p0 * lda;
      GemmOne(trans_a, trans_b, len, n, k, alpha, a0, lda, b, ldb, beta, c + p0 * ldc, ldc);
    } else {
      const float* b0 = trans_b ? b + p0 * ldb : b + p0;
      GemmOne(trans_a, trans_b, m, len, k, alpha, a, lda, b0, ldb, beta, c + p0, ldc);
    }
  };
  const int threads = static_cast<int>(std::min<int64_t>(NumThreads(), blocks));
  if (threads <= 1) {
    for (int64_t i = 0; i < blocks; ++i) run(i);
    return;
  }
  ParallelFor(static_cast<size_t>(blocks), threads, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) run(static_cast<int64_t>(i));
  });
}

}  // namespace internal

using internal::Gemm;
using internal::ParallelRange;

// y[T,N] = x[T,K] . w[N,K]^T + b[N]
void MatMul(std::span<const float> x, std::span<const float> w, std::span<const float> b,
            std::span<float> y, int64_t tokens, int64_t k, int64_t n) {
  compute::internal::CheckMatMul<float>(x, w, b, y, tokens, k, n);
  if (!b.empty())
    for (int64_t t = 0; t < tokens; ++t) std::copy(b.begin(), b.end(), y.data() + t * n);
  Gemm(false, true, tokens, n, k, 1.0f, x.data(), k, w.data(), k, b.empty() ? 0.0f : 1.0f, y.data(),
       n);
}

// dx[T,K] += dy[T,N] . w[N,K];  dw[N,K] += dy^T . x;  db[N] += sum_t dy
void MatMulBackward(std::span<const float> dy, std::span<const float> x, std::span<const float> w,
                    std::span<float> dx, std::span<float> dw, std::span<float> db, int64_t tokens,
                    int64_t k, int64_t n) {
  compute::internal::CheckMatMulBackward<float>(dy, x, w, dx, dw, db, tokens, k, n);
  if (!dx.empty())
    Gemm(false, false, tokens, k, n, 1.0f, dy.data(), n, w.data(), k, 1.0f, dx.data(), k);
  if (!dw.empty())
    Gemm(true, false, n, k, tokens, 1.0f, dy.data(), n, x.data(), k, 1.0f, dw.data(), k);
  if (db.empty()) return;
  ParallelRange(n, tokens, [&](int64_t b, int64_t e) {  // columns [b, e)
    std::vector<double> acc(static_cast<size_t>(e - b), 0.0);
    for (int64_t t = 0; t < tokens; ++t) {
      const float* g = dy.data() + t * n;
      for (int64_t j = b; j < e; ++j) acc[static_cast<size_t>(j - b)] += g[j];
    }
    for (int64_t j = b; j < e; ++j)
      db.data()[j] = static_cast<float>(db.data()[j] + acc[static_cast<size_t>(j - b)]);
  });
}

// h[K,K] += x[T,K]^T . x. Only the lower triangle is multiplied — row block [p0, p0 + len) of
// h against columns [0, p0 + len), one single-threaded sgemm each (about half of MatMulBackward's
// work for the same sum) — then mirrored into the upper one. The blocks depend on k alone, so
// results are bit-identical on any thread count; the threads take the blocks small and large
// alternately (a block's work grows with its row).
void GramUpdate(std::span<const float> x, std::span<float> h, int64_t tokens, int64_t k) {
  PQ_CHECK(tokens >= 0 && k >= 0, "GramUpdate: negative size");
  PQ_CHECK(x.size() == static_cast<size_t>(tokens * k), "GramUpdate: x must be [tokens, k]");
  PQ_CHECK(h.size() == static_cast<size_t>(k * k), "GramUpdate: h must be [k, k]");
  if (tokens == 0 || k == 0) return;
  PQ_CHECK(std::max(tokens, k) <= INT_MAX, "GramUpdate: size exceeds BLAS int range");
  static const bool blas_single = (openblas_set_num_threads(1), true);
  (void)blas_single;
  const int64_t block = std::max<int64_t>(64, (k / 16 + 15) / 16 * 16);
  const int64_t blocks = (k + block - 1) / block;
  auto run = [&](int64_t i) {
    const int64_t p0 = i * block, len = std::min(block, k - p0);
    internal::GemmOne(true, false, len, p0 + len, tokens, 1.0f, x.data() + p0, k, x.data(), k, 1.0f,
                      h.data() + p0 * k, k);
  };
  const int64_t work = k * k / 2 * tokens;
  const int threads = static_cast<int>(
      std::min<int64_t>({NumThreads(), blocks, work / internal::kMinGemmWorkPerBlock + 1}));
  if (threads <= 1) {
    for (int64_t i = 0; i < blocks; ++i) run(i);
  } else {
    ParallelFor(static_cast<size_t>(blocks), threads, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {  // 0, last, 1, last - 1, ...
        const auto j = static_cast<int64_t>(i / 2);
        run(i % 2 == 0 ? j : blocks - 1 - j);
      }
    });
  }
  constexpr int64_t kTile = 32;  // the mirror in tiles: the strided reads stay in cache
  float* hp = h.data();
  for (int64_t ib = 0; ib < k; ib += kTile)
    for (int64_t jb = ib; jb < k; jb += kTile)
      for (int64_t i = ib; i < std::min(ib + kTile, k); ++i)
        for (int64_t j = std::max(jb, i + 1); j < std::min(jb + kTile, k); ++j)
          hp[i * k + j] = hp[j * k + i];
}

// y[T,D] = (w + offset) * x * rstd,  rstd[T] = 1/sqrt(mean(x^2) + eps)
void RmsNorm(std::span<const float> x, std::span<const float> w, float eps, float offset,
             std::span<float> y, std::span<float> rstd, int64_t tokens, int64_t dim) {
  compute::internal::CheckRmsNorm<float>(x, w, y, rstd, tokens, dim);
  ParallelRange(tokens, dim, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* xt = x.data() + t * dim;
      float* yt = y.data() + t * dim;
      double ss = 0.0;
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xt[i]) * xt[i];
      const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
      rstd.data()[t] = r;
      for (int64_t i = 0; i < dim; ++i) yt[i] = (w.data()[i] + offset) * (xt[i] * r);
    }
  });
}

// dw += sum_t dy * xh;  dx += r (g - xh mean_i(g_i xh_i)),  xh = x r, g = dy (w + offset)
void RmsNormBackward(std::span<const float> dy, std::span<const float> x, std::span<const float> w,
                     std::span<const float> rstd, float offset, std::span<float> dx,
                     std::span<float> dw, int64_t tokens, int64_t dim) {
  compute::internal::CheckRmsNormBackward<float>(dy, x, w, rstd, dx, dw, tokens, dim);
  if (!dx.empty()) {
    ParallelRange(tokens, dim, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const float* xt = x.data() + t * dim;
        const float* gt = dy.data() + t * dim;
        float* dxt = dx.data() + t * dim;
        const float r = rstd.data()[t];
        double dot = 0.0;
        for (int64_t i = 0; i < dim; ++i)
          dot += static_cast<double>(gt[i] * (w.data()[i] + offset)) * (xt[i] * r);
        const float mean = static_cast<float>(dot / static_cast<double>(dim));
        for (int64_t i = 0; i < dim; ++i)
          dxt[i] += r * (gt[i] * (w.data()[i] + offset) - (xt[i] * r) * mean);
      }
    });
  }
  if (dw.empty()) return;
  ParallelRange(dim, tokens, [&](int64_t b, int64_t e) {  // columns [b, e)
    std::vector<double> acc(static_cast<size_t>(e - b), 0.0);
    for (int64_t t = 0; t < tokens; ++t) {
      const float r = rstd.data()[t];
      for (int64_t i = b; i < e; ++i)
        acc[static_cast<size_t>(i - b)] += dy.data()[t * dim + i] * (x.data()[t * dim + i] * r);
    }
    for (int64_t i = b; i < e; ++i)
      dw.data()[i] = static_cast<float>(dw.data()[i] + acc[static_cast<size_t>(i - b)]);
  });
}

namespace {

// Rotates pairs (i, i + rot_dim/2) of every head by +angle (sign 1) or -angle (sign -1).
void Rotate(std::span<float> x, std::span<const float> cos, std::span<const float> sin,
            int64_t tokens, int64_t heads, RopeSpec spec, float sign) {
  compute::internal::CheckRope<float>(x, cos, sin, tokens, heads, spec);
  const int64_t dh = spec.head_dim, half = spec.rot_dim / 2;
  ParallelRange(tokens, heads * spec.rot_dim, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* ct = cos.data() + t * half;
      const float* st = sin.data() + t * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* lo = x.data() + (t * heads + h) * dh;
        float* hi = lo + half;
        for (int64_t i = 0; i < half; ++i) {
          const float c = ct[i], s = sign * st[i], a = lo[i], bb = hi[i];
          lo[i] = a * c - bb * s;
          hi[i] = bb * c + a * s;
        }
      }
    }
  });
}

// Logistic sigmoid; exp overflow gives exactly 0 (no NaN) for very negative g.
inline float Sigmoid(float g) { return 1.0f / (1.0f + std::exp(-g)); }

}  // namespace

void Rope(std::span<float> x, std::span<const float> cos, std::span<const float> sin,
          int64_t tokens, int64_t heads, RopeSpec spec) {
  Rotate(x, cos, sin, tokens, heads, spec, 1.0f);
}

void RopeBackward(std::span<float> dx, std::span<const float> cos, std::span<const float> sin,
                  int64_t tokens, int64_t heads, RopeSpec spec) {
  Rotate(dx, cos, sin, tokens, heads, spec, -1.0f);
}

// h[n] = silu(g[n]) * u[n]
void SwiGlu(std::span<const float> g, std::span<const float> u, std::span<float> h) {
  const int64_t n = static_cast<int64_t>(g.size());
  PQ_CHECK_SIZE(u, n, "SwiGlu: u[n] (n = g.size())");
  PQ_CHECK_SIZE(h, n, "SwiGlu: h[n] (n = g.size())");
  ParallelRange(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float a = g.data()[i];
      h.data()[i] = a * Sigmoid(a) * u.data()[i];
    }
  });
}

// dg += dh u s (1 + g (1 - s));  du += dh g s,  s = sigmoid(g)
void SwiGluBackward(std::span<const float> dh, std::span<const float> g, std::span<const float> u,
                    std::span<float> dg, std::span<float> du) {
  const int64_t n = static_cast<int64_t>(g.size());
  PQ_CHECK_SIZE(dh, n, "SwiGluBackward: dh[n] (n = g.size())");
  PQ_CHECK_SIZE(u, n, "SwiGluBackward: u[n] (n = g.size())");
  PQ_CHECK_OPT_SIZE(dg, n, "SwiGluBackward: dg[n]");
  PQ_CHECK_OPT_SIZE(du, n, "SwiGluBackward: du[n]");
  ParallelRange(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float a = g.data()[i], s = Sigmoid(a), d = dh.data()[i];
      if (!dg.empty()) dg.data()[i] += d * u.data()[i] * (s * (1.0f + a * (1.0f - s)));
      if (!du.empty()) du.data()[i] += d * (a * s);
    }
  });
}

// y[T,D] = table[ids[t], :]
void Embedding(std::span<const float> table, std::span<const int32_t> ids, std::span<float> y,
               int64_t dim) {
  compute::internal::CheckEmbedding<float>(table, ids, y, dim,
                                           "Embedding: y[T,D] (T = ids.size())");
  ParallelRange(static_cast<int64_t>(ids.size()), dim, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      std::memcpy(y.data() + t * dim, table.data() + static_cast<int64_t>(ids.data()[t]) * dim,
                  static_cast<size_t>(dim) * sizeof(float));
  });
}

// dtable[ids[t], :] += dy[t, :]  (threaded over columns, so repeated ids never race)
void EmbeddingBackward(std::span<const float> dy, std::span<const int32_t> ids,
                       std::span<float> dtable, int64_t dim) {
  if (dtable.empty()) {
    PQ_CHECK_SIZE(dy, static_cast<int64_t>(ids.size()) * dim, "EmbeddingBackward: dy[T,D]");
    return;
  }
  compute::internal::CheckEmbedding<float>(dtable, ids, dy, dim, "EmbeddingBackward: dy[T,D]");
  const int64_t tokens = static_cast<int64_t>(ids.size());
  ParallelRange(dim, tokens, [&](int64_t b, int64_t e) {
    for (int64_t t = 0; t < tokens; ++t) {
      float* row = dtable.data() + static_cast<int64_t>(ids.data()[t]) * dim;
      const float* g = dy.data() + t * dim;
      for (int64_t i = b; i < e; ++i) row[i] += g[i];
    }
  });
}

// nll[t] = logsumexp(logits[t]) - logits[t, targets[t]]  (0 for targets[t] < 0)
void CrossEntropy(std::span<const float> logits, std::span<const int32_t> targets,
                  std::span<float> nll, std::span<float> logsumexp, int64_t tokens, int64_t vocab) {
  compute::internal::CheckCrossEntropy<float>(logits, targets, logsumexp, tokens, vocab);
  PQ_CHECK_SIZE(nll, tokens, "CrossEntropy: nll[T]");
  ParallelRange(tokens, vocab * 4, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* l = logits.data() + t * vocab;
      const float m = *std::max_element(l, l + vocab);
      double sum = 0.0;
      for (int64_t i = 0; i < vocab; ++i) sum += std::exp(l[i] - m);
      const double lse = m + std::log(sum);
      logsumexp.data()[t] = static_cast<float>(lse);
      const int32_t target = targets.data()[t];
      nll.data()[t] = target < 0 ? 0.0f : static_cast<float>(lse - l[target]);
    }
  });
}

// dlogits[t, :] += scale * (softmax(logits[t]) - onehot(targets[t]))  (targets[t] >= 0)
void CrossEntropyBackward(std::span<const float> logits, std::span<const int32_t> targets,
                          std::span<const float> logsumexp, float scale, std::span<float> dlogits,
                          int64_t tokens, int64_t vocab) {
  compute::internal::CheckCrossEntropy<float>(logits, targets, logsumexp, tokens, vocab);
  PQ_CHECK_OPT_SIZE(dlogits, tokens * vocab, "CrossEntropyBackward: dlogits[T,V]");
  CrossEntropyBackwardChunk(logits, targets, logsumexp, scale, dlogits, tokens, 0, vocab);
}

void CrossEntropyBackwardChunk(std::span<const float> logits, std::span<const int32_t> targets,
                               std::span<const float> logsumexp, float scale,
                               std::span<float> dlogits, int64_t tokens, int64_t v0, int64_t vc) {
  compute::internal::CheckCrossEntropyChunk<float>(logits, targets, logsumexp, dlogits, tokens, v0,
                                                   vc);
  if (dlogits.empty()) return;
  ParallelRange(tokens, vc * 4, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int32_t target = targets.data()[t];
      if (target < 0) continue;
      const float* l = logits.data() + t * vc;
      float* d = dlogits.data() + t * vc;
      const float lse = logsumexp.data()[t];
      const int64_t hit = target - v0;  // the one-hot's column, when in this chunk
      for (int64_t i = 0; i < vc; ++i)
        if (i != hit) d[i] += scale * std::exp(l[i] - lse);
      if (hit >= 0 && hit < vc) d[hit] += scale * (std::exp(l[hit] - lse) - 1.0f);  // one rounding
    }
  });
}

// probs[T,E] = softmax(logits); idx[T,K] = top-k of probs (descending, ties -> lower index);
// weights[T,K] = probs[idx] (/ their sum when norm_topk).
void RouterTopK(std::span<const float> logits, std::span<float> probs, std::span<int32_t> idx,
                std::span<float> weights, int64_t tokens, int64_t experts, int64_t top_k,
                bool norm_topk) {
  compute::internal::CheckRouter<float>(logits, probs, idx, weights, tokens, experts, top_k, false);
  ParallelRange(tokens, experts * (top_k + 4), [&](int64_t b, int64_t e) {
    std::vector<char> taken(static_cast<size_t>(experts));
    for (int64_t t = b; t < e; ++t) {
      const float* l = logits.data() + t * experts;
      float* p = probs.data() + t * experts;
      const float m = *std::max_element(l, l + experts);
      double sum = 0.0;
      for (int64_t x = 0; x < experts; ++x) sum += (p[x] = std::exp(l[x] - m));
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t x = 0; x < experts; ++x) p[x] *= inv;
      std::fill(taken.begin(), taken.end(), 0);
      int32_t* sel = idx.data() + t * top_k;
      float* wt = weights.data() + t * top_k;
      double wsum = 0.0;
      for (int64_t j = 0; j < top_k; ++j) {
        int64_t best = -1;
        for (int64_t x = 0; x < experts; ++x)
          if (!taken[static_cast<size_t>(x)] && (best < 0 || p[x] > p[best])) best = x;
        taken[static_cast<size_t>(best)] = 1;
        sel[j] = static_cast<int32_t>(best);
        wt[j] = p[best];
        wsum += p[best];
      }
      if (!norm_topk) continue;
      for (int64_t j = 0; j < top_k; ++j) wt[j] = static_cast<float>(wt[j] / wsum);
    }
  });
}

// dp[idx_j] = G_j (or (G_j - sum_k G_k w_k) / S when normalised, S = sum_k p[idx_k]);
// dlogits += p (dp - sum_e p_e dp_e), selection fixed.
void RouterTopKBackward(std::span<const float> dweights, std::span<const float> probs,
                        std::span<const int32_t> idx, std::span<float> dlogits, int64_t tokens,
                        int64_t experts, int64_t top_k, bool norm_topk) {
  compute::internal::CheckRouter<float>(dlogits, probs, idx, dweights, tokens, experts, top_k,
                                        true);
  if (dlogits.empty()) return;
  ParallelRange(tokens, experts + top_k, [&](int64_t b, int64_t e) {
    std::vector<double> dp(static_cast<size_t>(experts));  // d(loss)/d(probs), one token
    for (int64_t t = b; t < e; ++t) {
      const float* p = probs.data() + t * experts;
      const int32_t* sel = idx.data() + t * top_k;
      const float* gw = dweights.data() + t * top_k;
      float* d = dlogits.data() + t * experts;
      double s = 0.0, gdotp = 0.0;
      for (int64_t j = 0; j < top_k; ++j) {
        PQ_CHECK(sel[j] >= 0 && sel[j] < experts, "RouterTopKBackward: idx out of range");
        s += p[sel[j]];
        gdotp += static_cast<double>(gw[j]) * p[sel[j]];
      }
      const double shift = norm_topk ? gdotp / s : 0.0, div = norm_topk ? s : 1.0;
      std::fill(dp.begin(), dp.end(), 0.0);
      double pdp = 0.0;  // sum_e p_e dp_e (dp is nonzero only on the selection)
      for (int64_t j = 0; j < top_k; ++j) {
        dp[static_cast<size_t>(sel[j])] = (gw[j] - shift) / div;
        pdp += p[sel[j]] * dp[static_cast<size_t>(sel[j])];
      }
      for (int64_t x = 0; x < experts; ++x)
        d[x] = static_cast<float>(d[x] + p[x] * (dp[static_cast<size_t>(x)] - pdp));
    }
  });
}

}  // namespace pq::compute::cpu
