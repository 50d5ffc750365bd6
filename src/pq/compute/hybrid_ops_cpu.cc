// Fast CPU ops (float) of the hybrid Qwen3-Next / Qwen3.5 / Qwen3.6 layers (hybrid_ops.h),
// checked against `ref`. Elementwise and per-row ops are threaded over rows (reductions over
// rows, e.g. dw, over columns); the causal conv over channel blocks; the Gated DeltaNet
// recurrence over heads (each head in blocks of value columns, a float state block updated in
// place; the backward checkpoints it every C tokens and recomputes chunk by chunk). Norm
// statistics and reductions over tokens accumulate in double.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "pq/compute/cpu_util.h"
#include "pq/compute/hybrid_ops.h"
#include "pq/compute/op_checks.h"

namespace pq::compute::cpu {
namespace {

using internal::ParallelRange;
namespace checks = ::pq::compute::internal;

// Numerically stable logistic sigmoid (no overflow on either side).
inline float Sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

// sigmoid'(x) = s (1 - s) = e / (1 + e)^2, e = exp(-|x|): no cancellation in 1 - s.
inline float SigmoidGrad(float x) {
  const float e = std::exp(-std::abs(x)), d = 1.0f + e;
  return e / (d * d);
}

// silu'(x) = s (1 + x (1 - s)), with 1 - s = sigmoid(-x) formed without cancellation.
inline float SiluGrad(float x) {
  const float e = std::exp(-std::abs(x)), lo = e / (1.0f + e), hi = 1.0f / (1.0f + e);
  return x >= 0.0f ? hi * (1.0f + x * lo) : lo * (1.0f + x * hi);
}

// PyTorch's softplus (threshold 20) and its derivative (1 above the threshold).
constexpr float kSoftplusThreshold = 20.0f;
inline float Softplus(float x) { return x > kSoftplusThreshold ? x : std::log1p(std::exp(x)); }
inline float SoftplusGrad(float x) { return x > kSoftplusThreshold ? 1.0f : Sigmoid(x); }

// ---- CausalConv1dSilu: threaded over blocks of kConvBlock channels ---------------------

constexpr int64_t kConvBlock = 64;

struct ConvDims {
  int64_t t, c, k;
};

// wt[Kc, bw] = w[c0:c0+bw, :]^T: the block's taps, contiguous over channels.
std::vector<float> BlockTaps(std::span<const float> w, const ConvDims& d, int64_t c0, int64_t bw) {
  std::vector<float> wt(static_cast<size_t>(d.k * bw));
  for (int64_t c = 0; c < bw; ++c)
    for (int64_t j = 0; j < d.k; ++j) wt[static_cast<size_t>(j * bw + c)] = w[(c0 + c) * d.k + j];
  return wt;
}

// acc[bw] = pre-activation of token t for channels [c0, c0+bw).
void ConvRow(const float* x, const float* wt, const ConvDims& d, int64_t t, int64_t c0, int64_t bw,
             float* acc) {
  std::fill(acc, acc + bw, 0.0f);
  for (int64_t j = std::max<int64_t>(0, d.k - 1 - t); j < d.k; ++j) {
    const float* xs = x + (t - d.k + 1 + j) * d.c + c0;
    const float* wj = wt + j * bw;
    for (int64_t c = 0; c < bw; ++c) acc[c] += wj[c] * xs[c];
  }
}

// Calls fn(c0, bw) for every channel block, in parallel.
template <typename Fn>
void ForChannelBlocks(const ConvDims& d, int64_t work_per_channel, Fn fn) {
  const int64_t blocks = (d.c + kConvBlock - 1) / kConvBlock;
  ParallelRange(blocks, kConvBlock * work_per_channel, [&](int64_t b, int64_t e) {
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t c0 = blk * kConvBlock;
      fn(c0, std::min(kConvBlock, d.c - c0));
    }
  });
}

// dx[T, block] += sum_j w[j] dc[s+Kc-1-j] (index < T); dc[T, bw] of the block.
void ConvBackwardDx(const float* dc, const float* wt, const ConvDims& d, int64_t c0, int64_t bw,
                    float* dx) {
  for (int64_t s = 0; s < d.t; ++s) {
    float* dxs = dx + s * d.c + c0;
    for (int64_t j = std::max<int64_t>(0, s + d.k - d.t); j < d.k; ++j) {
      const float* dct = dc + (s + d.k - 1 - j) * bw;
      const float* wj = wt + j * bw;
      for (int64_t c = 0; c < bw; ++c) dxs[c] += wj[c] * dct[c];
    }
  }
}

// dw[block, Kc] += sum_t dc[t] x[t-Kc+1+j] (in double).
void ConvBackwardDw(const float* dc, const float* x, const ConvDims& d, int64_t c0, int64_t bw,
                    float* dw) {
  std::vector<double> acc(static_cast<size_t>(d.k * bw), 0.0);  // [Kc, bw]
  for (int64_t t = 0; t < d.t; ++t)
    for (int64_t j = std::max<int64_t>(0, d.k - 1 - t); j < d.k; ++j) {
      const float* xs = x + (t - d.k + 1 + j) * d.c + c0;
      const float* dct = dc + t * bw;
      double* aj = acc.data() + j * bw;
      for (int64_t c = 0; c < bw; ++c) aj[c] += static_cast<double>(dct[c] * xs[c]);
    }
  for (int64_t c = 0; c < bw; ++c)
    for (int64_t j = 0; j < d.k; ++j) {
      float& o = dw[(c0 + c) * d.k + j];
      o = static_cast<float>(o + acc[static_cast<size_t>(j * bw + c)]);
    }
}

// ---- GatedDeltaRule: vector kernels on one state row (length n) ------------------------

// y[n] += a x[n]
inline void Axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];
}

// x[n] *= a
inline void Scale(float a, float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] *= a;
}

// sum_j a[j] b[j] with 8 independent partial sums (vectorisable without reassociation).
inline float Dot(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 8;
  float acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[j + l] * b[j + l];
  float tail = 0.0f;
  for (; j < n; ++j) tail += a[j] * b[j];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

struct DeltaDims {
  int64_t t, h, dk, dv;
};

// State columns handled together: a [Dk, 64] float block (32 KiB at Dk = 128) stays in cache
// for the whole recurrence (64 measured a little faster than 32 or 128 columns).
// Columns of S evolve independently (u, δ, S, o are all per column), so each block runs the
// whole recurrence on its own; only dq, dk, dg, dβ sum over columns (partials, accumulated).
constexpr int64_t kColumnBlock = 64;
constexpr int64_t kCheckpointEvery = 64;  // C: state checkpoint interval of the backward

// One head h and one block of value columns [j0, j0 + bw) of the [T,H,*] inputs. The state
// block is [Dk, bw], row stride bw.
struct HeadBlock {
  const float *q, *k, *v, *g, *beta;
  int64_t h, j0, bw;
  DeltaDims d;
  int64_t Row(int64_t t) const { return t * d.h + h; }
  const float* Q(int64_t t) const { return q + Row(t) * d.dk; }
  const float* K(int64_t t) const { return k + Row(t) * d.dk; }
  const float* V(int64_t t) const { return v + Row(t) * d.dv + j0; }
  float Alpha(int64_t t) const { return std::exp(g[Row(t)]); }
  float Beta(int64_t t) const { return beta[Row(t)]; }
};

// Calls fn(block) for every column block of head h.
template <typename Fn>
void ForColumnBlocks(const float* q, const float* k, const float* v, const float* g,
                     const float* beta, int64_t h, const DeltaDims& d, Fn fn) {
  for (int64_t j0 = 0; j0 < d.dv; j0 += kColumnBlock)
    fn(HeadBlock{q, k, v, g, beta, h, j0, std::min(kColumnBlock, d.dv - j0), d});
}

// Step t: prev = S_{t-1}[Dk,bw] -> next = S_t (may alias prev). Writes u_t = α Sᵀ_{t-1} k_t
// and δ_t = β (v_t − u_t) [bw]; o_t = S_tᵀ q_t [bw] when `o` is not null.
void StepForward(const HeadBlock& in, int64_t t, const float* prev, float* next, float* u,
                 float* delta, float* o) {
  const int64_t dk = in.d.dk, bw = in.bw;
  const float alpha = in.Alpha(t), beta = in.Beta(t);
  const float *k = in.K(t), *v = in.V(t), *q = in.Q(t);
  std::fill(u, u + bw, 0.0f);
  for (int64_t i = 0; i < dk; ++i) Axpy(k[i], prev + i * bw, u, bw);
  for (int64_t j = 0; j < bw; ++j) {
    u[j] *= alpha;
    delta[j] = beta * (v[j] - u[j]);
  }
  if (o != nullptr) std::fill(o, o + bw, 0.0f);
  for (int64_t i = 0; i < dk; ++i) {
    const float* p = prev + i * bw;
    float* s = next + i * bw;
    const float ki = k[i];
    for (int64_t j = 0; j < bw; ++j) s[j] = alpha * p[j] + ki * delta[j];
    if (o != nullptr) Axpy(q[i], s, o, bw);
  }
}

// The output gradients (accumulated into; empty = skip).
struct DeltaGrads {
  std::span<float> dq, dk, dv, dg, dbeta;
};

// Scratch of one column block's backward: O((T/C + C) Dk bw) floats.
struct BackwardScratch {
  std::vector<float> ckpt;        // [ceil(T/C), Dk, bw]: S at the start of every chunk
  std::vector<float> states;      // [C+1, Dk, bw]: S_{t0} .. S_{t0+len} of the current chunk
  std::vector<float> u, delta;    // [C, bw]: u_t, δ_t of the current chunk
  std::vector<float> ds;          // [Dk, bw]: dL/dS_t
  std::vector<float> ddelta, du;  // [bw] of one step
  BackwardScratch(const DeltaDims& d, int64_t chunk);
};

BackwardScratch::BackwardScratch(const DeltaDims& d, int64_t chunk) {
  const int64_t bw = std::min(kColumnBlock, d.dv);
  const auto n = static_cast<size_t>(d.dk * bw);
  const auto chunks = static_cast<size_t>((d.t + chunk - 1) / chunk);
  ckpt.resize(chunks * n);
  states.resize(static_cast<size_t>(chunk + 1) * n);
  u.resize(static_cast<size_t>(chunk * bw));
  delta.resize(u.size());
  ds.resize(n);
  ddelta.resize(static_cast<size_t>(bw));
  du.resize(ddelta.size());
}

// Backward of step t (architectures.md §6.7) on one column block. prev = S_{t-1}, cur = S_t;
// u, delta of step t. On entry sc.ds = dL/dS_t from the future; on exit dL/dS_{t-1}. Adds the
// block's partial sums to dq, dk, dg, dβ and its columns of dv.
void StepBackward(const HeadBlock& in, int64_t t, const float* dout, const float* prev,
                  const float* cur, const float* u, const float* delta, BackwardScratch& sc,
                  const DeltaGrads& gr) {
  const int64_t dk = in.d.dk, bw = in.bw, row = in.Row(t);
  const float alpha = in.Alpha(t), beta = in.Beta(t);
  const float *q = in.Q(t), *k = in.K(t), *v = in.V(t), *d_o = dout + row * in.d.dv + in.j0;
  float *ds = sc.ds.data(), *ddelta = sc.ddelta.data(), *du = sc.du.data();
  float* dq = gr.dq.empty() ? nullptr : gr.dq.data() + row * dk;
  float* dkr = gr.dk.empty() ? nullptr : gr.dk.data() + row * dk;
  // Pass A, per row i of dS: dS += q doᵀ; dq = S_t do; dk = dS δ; dδ = dSᵀ k.
  std::fill(ddelta, ddelta + bw, 0.0f);
  for (int64_t i = 0; i < dk; ++i) {
    float* dsi = ds + i * bw;
    Axpy(q[i], d_o, dsi, bw);
    if (dq != nullptr) dq[i] += Dot(cur + i * bw, d_o, bw);
    if (dkr != nullptr) dkr[i] += Dot(dsi, delta, bw);
    Axpy(k[i], dsi, ddelta, bw);
  }
  // δ = β (v − u): dv = β dδ; du = −β dδ; dβ = dδ · (v − u).
  double dbeta = 0.0;
  for (int64_t j = 0; j < bw; ++j) {
    dbeta += static_cast<double>(ddelta[j] * (v[j] - u[j]));
    du[j] = -beta * ddelta[j];
    if (!gr.dv.empty()) gr.dv[row * in.d.dv + in.j0 + j] += beta * ddelta[j];
  }
  // Pass B, per row i: dS̃ = dS + k duᵀ; dk += S̃ du; dg = <dS̃, S̃>; dS_{t-1} = α dS̃.
  double dg = 0.0;
  for (int64_t i = 0; i < dk; ++i) {
    float* dsi = ds + i * bw;
    const float* pi = prev + i * bw;
    Axpy(k[i], du, dsi, bw);
    if (dkr != nullptr) dkr[i] += alpha * Dot(pi, du, bw);
    dg += static_cast<double>(Dot(dsi, pi, bw));
    Scale(alpha, dsi, bw);
  }
  if (!gr.dg.empty()) gr.dg[row] += static_cast<float>(static_cast<double>(alpha) * dg);
  if (!gr.dbeta.empty()) gr.dbeta[row] += static_cast<float>(dbeta);
}

// Forward recompute of one block: sc.ckpt[c] = S_{c C} for every chunk c (S_0 = 0).
void Checkpoints(const HeadBlock& in, int64_t chunk, BackwardScratch& sc) {
  const int64_t n = in.d.dk * in.bw, chunks = (in.d.t + chunk - 1) / chunk;
  float* s = sc.states.data();  // running state (scratch)
  std::fill(s, s + n, 0.0f);
  for (int64_t c = 0; c < chunks; ++c) {
    std::copy(s, s + n, sc.ckpt.data() + c * n);
    if (c + 1 == chunks) break;
    for (int64_t t = c * chunk; t < (c + 1) * chunk; ++t)
      StepForward(in, t, s, s, sc.u.data(), sc.delta.data(), nullptr);
  }
}

// Whole backward of one column block: checkpoints, then chunks in reverse, each recomputed
// from its checkpoint (S_{t-1} is never recovered by inverting the update).
void BackwardBlock(const HeadBlock& in, const float* dout, int64_t chunk, BackwardScratch& sc,
                   const DeltaGrads& gr) {
  const int64_t n = in.d.dk * in.bw, bw = in.bw, chunks = (in.d.t + chunk - 1) / chunk;
  Checkpoints(in, chunk, sc);
  std::fill(sc.ds.begin(), sc.ds.end(), 0.0f);  // dL/dS_T = 0
  float* st = sc.states.data();
  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * chunk, len = std::min(chunk, in.d.t - t0);
    std::copy(sc.ckpt.data() + c * n, sc.ckpt.data() + (c + 1) * n, st);
    for (int64_t m = 0; m < len; ++m)
      StepForward(in, t0 + m, st + m * n, st + (m + 1) * n, sc.u.data() + m * bw,
                  sc.delta.data() + m * bw, nullptr);
    for (int64_t m = len - 1; m >= 0; --m)
      StepBackward(in, t0 + m, dout, st + m * n, st + (m + 1) * n, sc.u.data() + m * bw,
                   sc.delta.data() + m * bw, sc, gr);
  }
}

}  // namespace

// ---- CausalConv1dSilu ------------------------------------------------------------------

// y[t,c] = silu(sum_j w[c,j] x[t-Kc+1+j, c]);  x, y[T,C], w[C,Kc]
void CausalConv1dSilu(std::span<const float> x, std::span<const float> w, std::span<float> y,
                      int64_t tokens, int64_t channels, int64_t kernel) {
  checks::CheckCausalConv<float>(x, w, y, tokens, channels, kernel);
  const ConvDims d{tokens, channels, kernel};
  ForChannelBlocks(d, tokens * kernel, [&](int64_t c0, int64_t bw) {
    const std::vector<float> wt = BlockTaps(w, d, c0, bw);
    std::vector<float> acc(static_cast<size_t>(bw));
    for (int64_t t = 0; t < tokens; ++t) {
      ConvRow(x.data(), wt.data(), d, t, c0, bw, acc.data());
      float* yt = y.data() + t * channels + c0;
      for (int64_t c = 0; c < bw; ++c)
        yt[c] = acc[static_cast<size_t>(c)] * Sigmoid(acc[static_cast<size_t>(c)]);
    }
  });
}

// dc = dy silu'(c) (pre-activation recomputed), then dx and dw from dc (see ref).
void CausalConv1dSiluBackward(std::span<const float> dy, std::span<const float> x,
                              std::span<const float> w, std::span<float> dx, std::span<float> dw,
                              int64_t tokens, int64_t channels, int64_t kernel) {
  checks::CheckCausalConvBackward<float>(dy, x, w, dx, dw, tokens, channels, kernel);
  if (dx.empty() && dw.empty()) return;
  const ConvDims d{tokens, channels, kernel};
  ForChannelBlocks(d, tokens * kernel * 3, [&](int64_t c0, int64_t bw) {
    const std::vector<float> wt = BlockTaps(w, d, c0, bw);
    std::vector<float> dc(static_cast<size_t>(tokens * bw));  // [T, bw]
    for (int64_t t = 0; t < tokens; ++t) {
      float* dct = dc.data() + t * bw;
      ConvRow(x.data(), wt.data(), d, t, c0, bw, dct);
      const float* dyt = dy.data() + t * channels + c0;
      for (int64_t c = 0; c < bw; ++c) dct[c] = dyt[c] * SiluGrad(dct[c]);
    }
    if (!dx.empty()) ConvBackwardDx(dc.data(), wt.data(), d, c0, bw, dx.data());
    if (!dw.empty()) ConvBackwardDw(dc.data(), x.data(), d, c0, bw, dw.data());
  });
}

// ---- L2Norm ----------------------------------------------------------------------------

// y = scale x inv,  inv = (sum x^2 + eps)^(-1/2);  x, y[R,Dh], inv[R]
void L2Norm(std::span<const float> x, float eps, float scale, std::span<float> y,
            std::span<float> inv, int64_t rows, int64_t dim) {
  checks::CheckL2Norm<float>(x, y, inv, rows, dim);
  ParallelRange(rows, dim, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x.data() + r * dim;
      double ss = 0.0;
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const double s = 1.0 / std::sqrt(ss + static_cast<double>(eps));
      inv[r] = static_cast<float>(s);
      const auto f = static_cast<float>(s * static_cast<double>(scale));
      for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = xr[i] * f;
    }
  });
}

// dx += scale inv (dy - yh (yh . dy)),  yh = x inv
void L2NormBackward(std::span<const float> dy, std::span<const float> x, std::span<const float> inv,
                    float scale, std::span<float> dx, int64_t rows, int64_t dim) {
  checks::CheckL2Norm<float>(x, dy, inv, rows, dim);
  PQ_CHECK_OPT_SIZE(dx, rows * dim, "L2NormBackward: dx[R,Dh]");
  if (dx.empty()) return;
  ParallelRange(rows, dim * 2, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float *xr = x.data() + r * dim, *gr = dy.data() + r * dim;
      const float s = inv[r], f = scale * s;
      double dot = 0.0;
      for (int64_t i = 0; i < dim; ++i) dot += static_cast<double>(xr[i] * s) * gr[i];
      const auto m = static_cast<float>(dot);
      for (int64_t i = 0; i < dim; ++i) dx[r * dim + i] += f * (gr[i] - (xr[i] * s) * m);
    }
  });
}

// ---- GatedRmsNorm ----------------------------------------------------------------------

// y = (w x rstd) silu(z),  rstd = 1/sqrt(mean(x^2) + eps);  x, z, y[R,Dh], w[Dh], rstd[R]
void GatedRmsNorm(std::span<const float> x, std::span<const float> z, std::span<const float> w,
                  float eps, std::span<float> y, std::span<float> rstd, int64_t rows, int64_t dim) {
  checks::CheckGatedRmsNorm<float>(x, z, w, y, rstd, rows, dim);
  ParallelRange(rows, dim * 4, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float *xr = x.data() + r * dim, *zr = z.data() + r * dim;
      double ss = 0.0;
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const auto rs = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
      rstd[r] = rs;
      for (int64_t i = 0; i < dim; ++i)
        y[r * dim + i] = (w[i] * (xr[i] * rs)) * (zr[i] * Sigmoid(zr[i]));
    }
  });
}

// dx += rstd (g' - xh mean(g' xh)), g' = dy s w;  dz += dy w xh silu'(z);  dw += sum dy xh s
void GatedRmsNormBackward(std::span<const float> dy, std::span<const float> x,
                          std::span<const float> z, std::span<const float> w,
                          std::span<const float> rstd, std::span<float> dx, std::span<float> dz,
                          std::span<float> dw, int64_t rows, int64_t dim) {
  checks::CheckGatedRmsNormBackward<float>(dy, x, z, w, rstd, dx, dz, dw, rows, dim);
  if (!dx.empty() || !dz.empty()) {
    ParallelRange(rows, dim * 8, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float *xr = x.data() + r * dim, *zr = z.data() + r * dim, *gr = dy.data() + r * dim;
        const float rs = rstd[r];
        double dot = 0.0;
        for (int64_t i = 0; i < dim; ++i)
          dot += static_cast<double>(gr[i] * (zr[i] * Sigmoid(zr[i])) * w[i]) * (xr[i] * rs);
        const auto mean = static_cast<float>(dot / static_cast<double>(dim));
        for (int64_t i = 0; i < dim; ++i) {
          const float xh = xr[i] * rs, gw = gr[i] * w[i];
          if (!dz.empty()) dz[r * dim + i] += gw * xh * SiluGrad(zr[i]);
          if (!dx.empty()) dx[r * dim + i] += rs * (gw * (zr[i] * Sigmoid(zr[i])) - xh * mean);
        }
      }
    });
  }
  if (dw.empty()) return;
  ParallelRange(dim, rows * 4, [&](int64_t b, int64_t e) {  // columns [b, e)
    std::vector<double> acc(static_cast<size_t>(e - b), 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = b; i < e; ++i) {
        const int64_t n = r * dim + i;
        acc[static_cast<size_t>(i - b)] +=
            static_cast<double>(dy[n] * (x[n] * rstd[r]) * (z[n] * Sigmoid(z[n])));
      }
    for (int64_t i = b; i < e; ++i)
      dw[i] = static_cast<float>(dw[i] + acc[static_cast<size_t>(i - b)]);
  });
}

// ---- DeltaGates ------------------------------------------------------------------------

// g = -exp(a_log[h]) softplus(a + dt_bias[h]),  beta = sigmoid(b);  a, b, g, beta[T,Hv]
void DeltaGates(std::span<const float> a, std::span<const float> b, std::span<const float> a_log,
                std::span<const float> dt_bias, std::span<float> g, std::span<float> beta,
                int64_t tokens, int64_t heads) {
  checks::CheckDeltaGates<float>(a, b, a_log, dt_bias, g, beta, tokens, heads);
  ParallelRange(tokens, heads * 16, [&](int64_t bt, int64_t et) {
    for (int64_t n = bt * heads; n < et * heads; ++n) {
      const int64_t h = n % heads;
      g[n] = -std::exp(a_log[h]) * Softplus(a[n] + dt_bias[h]);
      beta[n] = Sigmoid(b[n]);
    }
  });
}

// da += dg (-exp(a_log)) softplus'(a + dt_bias);  db += dbeta beta (1 - beta)
void DeltaGatesBackward(std::span<const float> dg, std::span<const float> dbeta,
                        std::span<const float> a, std::span<const float> b,
                        std::span<const float> a_log, std::span<const float> dt_bias,
                        std::span<float> da, std::span<float> db, int64_t tokens, int64_t heads) {
  checks::CheckDeltaGates<float>(a, b, a_log, dt_bias, dg, dbeta, tokens, heads);
  PQ_CHECK_OPT_SIZE(da, tokens * heads, "DeltaGatesBackward: da[T,Hv]");
  PQ_CHECK_OPT_SIZE(db, tokens * heads, "DeltaGatesBackward: db[T,Hv]");
  ParallelRange(tokens, heads * 16, [&](int64_t bt, int64_t et) {
    for (int64_t n = bt * heads; n < et * heads; ++n) {
      const int64_t h = n % heads;
      if (!da.empty()) da[n] += dg[n] * -std::exp(a_log[h]) * SoftplusGrad(a[n] + dt_bias[h]);
      if (!db.empty()) db[n] += dbeta[n] * SigmoidGrad(b[n]);
    }
  });
}

// ---- SigmoidGate -----------------------------------------------------------------------

// y[t,i] = x[t,i] sigmoid(gate[t, i / (N/G)]);  x, y[T,N], gate[T,G]
void SigmoidGate(std::span<const float> x, std::span<const float> gate, std::span<float> y,
                 int64_t tokens, int64_t n, int64_t groups) {
  checks::CheckSigmoidGate<float>(x, gate, y, tokens, n, groups);
  const int64_t run = n / groups;
  ParallelRange(tokens, n, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      for (int64_t gi = 0; gi < groups; ++gi) {
        const float s = Sigmoid(gate[t * groups + gi]);
        const int64_t o = t * n + gi * run;
        for (int64_t i = 0; i < run; ++i) y[o + i] = x[o + i] * s;
      }
  });
}

// dx += dy s;  dgate += s (1 - s) sum_group dy x  (sum in double)
void SigmoidGateBackward(std::span<const float> dy, std::span<const float> x,
                         std::span<const float> gate, std::span<float> dx, std::span<float> dgate,
                         int64_t tokens, int64_t n, int64_t groups) {
  checks::CheckSigmoidGate<float>(x, gate, dy, tokens, n, groups);
  PQ_CHECK_OPT_SIZE(dx, tokens * n, "SigmoidGateBackward: dx[T,N]");
  PQ_CHECK_OPT_SIZE(dgate, tokens * groups, "SigmoidGateBackward: dgate[T,G]");
  const int64_t run = n / groups;
  ParallelRange(tokens, n * 2, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      for (int64_t gi = 0; gi < groups; ++gi) {
        const float s = Sigmoid(gate[t * groups + gi]);
        const int64_t o = t * n + gi * run;
        if (!dx.empty())
          for (int64_t i = 0; i < run; ++i) dx[o + i] += dy[o + i] * s;
        if (dgate.empty()) continue;
        double dot = 0.0;
        for (int64_t i = 0; i < run; ++i) dot += static_cast<double>(dy[o + i]) * x[o + i];
        dgate[t * groups + gi] += static_cast<float>(dot) * SigmoidGrad(gate[t * groups + gi]);
      }
  });
}

// ---- RepeatHeads -----------------------------------------------------------------------

// y[t, j, :] = x[t, j / r, :];  x[T,Hk,Dh], y[T,Hk*r,Dh]
void RepeatHeads(std::span<const float> x, std::span<float> y, int64_t tokens, int64_t heads,
                 int64_t repeat, int64_t dim) {
  checks::CheckRepeatHeads<float>(x, y, tokens, heads, repeat, dim, false);
  const auto bytes = static_cast<size_t>(dim) * sizeof(float);
  ParallelRange(tokens * heads, repeat * dim, [&](int64_t b, int64_t e) {
    for (int64_t th = b; th < e; ++th)  // (token, key head) pairs
      for (int64_t m = 0; m < repeat; ++m)
        std::memcpy(y.data() + (th * repeat + m) * dim, x.data() + th * dim, bytes);
  });
}

// dx[t, h, :] += sum_{m < r} dy[t, h r + m, :]
void RepeatHeadsBackward(std::span<const float> dy, std::span<float> dx, int64_t tokens,
                         int64_t heads, int64_t repeat, int64_t dim) {
  checks::CheckRepeatHeads<float>(dx, dy, tokens, heads, repeat, dim, true);
  if (dx.empty()) return;
  ParallelRange(tokens * heads, repeat * dim, [&](int64_t b, int64_t e) {
    for (int64_t th = b; th < e; ++th) {
      float* d = dx.data() + th * dim;
      for (int64_t m = 0; m < repeat; ++m) Axpy(1.0f, dy.data() + (th * repeat + m) * dim, d, dim);
    }
  });
}

// ---- GatedDeltaRule --------------------------------------------------------------------

// Heads in parallel; per head, one float state block [Dk, bw] per column block, in place.
void GatedDeltaRule(std::span<const float> q, std::span<const float> k, std::span<const float> v,
                    std::span<const float> g, std::span<const float> beta, std::span<float> out,
                    std::span<float> state_out, int64_t tokens, int64_t heads, int64_t key_dim,
                    int64_t value_dim) {
  checks::CheckGatedDeltaRule<float>(q, k, v, g, beta, tokens, heads, key_dim, value_dim);
  const DeltaDims d{tokens, heads, key_dim, value_dim};
  PQ_CHECK_SIZE(out, d.t * d.h * d.dv, "GatedDeltaRule: out[T,H,Dv]");
  PQ_CHECK_OPT_SIZE(state_out, d.h * d.dk * d.dv, "GatedDeltaRule: state_out[H,Dk,Dv]");
  const int64_t bw_max = std::min(kColumnBlock, d.dv);
  ParallelRange(d.h, d.t * d.dk * d.dv * 4, [&](int64_t hb, int64_t he) {
    std::vector<float> s(static_cast<size_t>(d.dk * bw_max)), u(static_cast<size_t>(bw_max)),
        delta(u.size());
    for (int64_t h = hb; h < he; ++h) {
      ForColumnBlocks(q.data(), k.data(), v.data(), g.data(), beta.data(), h, d,
                      [&](const HeadBlock& in) {
                        std::fill(s.begin(), s.end(), 0.0f);
                        for (int64_t t = 0; t < d.t; ++t)
                          StepForward(in, t, s.data(), s.data(), u.data(), delta.data(),
                                      out.data() + in.Row(t) * d.dv + in.j0);
                        if (state_out.empty()) return;
                        for (int64_t i = 0; i < d.dk; ++i)  // S_T rows into [H, Dk, Dv]
                          std::copy_n(s.data() + i * in.bw, in.bw,
                                      state_out.data() + (h * d.dk + i) * d.dv + in.j0);
                      });
    }
  });
}

// Heads in parallel; per head and column block a checkpointed reverse sweep (BackwardBlock).
void GatedDeltaRuleBackward(std::span<const float> dout, std::span<const float> q,
                            std::span<const float> k, std::span<const float> v,
                            std::span<const float> g, std::span<const float> beta,
                            std::span<float> dq, std::span<float> dk, std::span<float> dv,
                            std::span<float> dg, std::span<float> dbeta, int64_t tokens,
                            int64_t heads, int64_t key_dim, int64_t value_dim) {
  checks::CheckGatedDeltaRule<float>(q, k, v, g, beta, tokens, heads, key_dim, value_dim);
  const DeltaDims d{tokens, heads, key_dim, value_dim};
  PQ_CHECK_SIZE(dout, d.t * d.h * d.dv, "GatedDeltaRuleBackward: dout[T,H,Dv]");
  PQ_CHECK_OPT_SIZE(dq, d.t * d.h * d.dk, "GatedDeltaRuleBackward: dq[T,H,Dk]");
  PQ_CHECK_OPT_SIZE(dk, d.t * d.h * d.dk, "GatedDeltaRuleBackward: dk[T,H,Dk]");
  PQ_CHECK_OPT_SIZE(dv, d.t * d.h * d.dv, "GatedDeltaRuleBackward: dv[T,H,Dv]");
  PQ_CHECK_OPT_SIZE(dg, d.t * d.h, "GatedDeltaRuleBackward: dg[T,H]");
  PQ_CHECK_OPT_SIZE(dbeta, d.t * d.h, "GatedDeltaRuleBackward: dbeta[T,H]");
  if (d.t == 0) return;
  const DeltaGrads gr{dq, dk, dv, dg, dbeta};
  const int64_t chunk = std::min(kCheckpointEvery, d.t);
  ParallelRange(d.h, d.t * d.dk * d.dv * 16, [&](int64_t hb, int64_t he) {
    BackwardScratch sc(d, chunk);
    for (int64_t h = hb; h < he; ++h)
      ForColumnBlocks(q.data(), k.data(), v.data(), g.data(), beta.data(), h, d,
                      [&](const HeadBlock& in) { BackwardBlock(in, dout.data(), chunk, sc, gr); });
  });
}

}  // namespace pq::compute::cpu
